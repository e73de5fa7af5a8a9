"""The sweep screen's trial table: trial, state, epoch (rungs reached), the objective, then one column
per searched parameter (they differ from sweep to sweep), then the worker that ran the trial."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from tuner_tui.app.components.record_table import TableColumn
from tuner_tui.app.components.sweep_plots import param_text
from tuner_tui.app.sweep_reading import SweepView
from tuner_tui.engine.events import RunStatus
from tuner_tui.formatting import format_number

if TYPE_CHECKING:
    from tuner_tui.sweeps.summary import TrialRow

KEY_COLUMNS = 2  # the marks and the trial number stay put while the other columns scroll sideways


def trial_key(trial: TrialRow) -> str:
    return str(trial.number)


def epochs_reached(trial: TrialRow, most: int | None) -> int:
    """The epochs a trial reached: all of them when it completed, else the rungs it reported (the
    last epoch is told to the study, not reported to the pruner)."""
    return most if most and trial.status is RunStatus.COMPLETED else trial.epochs


def epoch_cell(trial: TrialRow, most: int | None) -> str:
    """The epochs a trial reached, of the most a trial trains: `2/5`."""
    reached = epochs_reached(trial, most)
    return f"{reached}/{most}" if most else str(reached)


def state_cell(trial: TrialRow) -> str:
    again = f" (#{trial.requeued_from} again)" if trial.requeued_from is not None else ""
    return trial.state + again


def trial_columns(view: SweepView) -> tuple[TableColumn[TrialRow], ...]:
    """The columns for `view`'s sweep: its objective and its parameters."""
    summary = view.summary
    best: Literal["high", "low"] = "high" if summary.direction == "maximize" else "low"
    params = list(view.kinds) or sorted({key for t in summary.trials for key in t.params})
    columns: list[TableColumn[TrialRow]] = [
        TableColumn("trial", "trial", cell=lambda t: str(t.number), value=lambda t: t.number, numeric=True),
        TableColumn("state", "state", cell=state_cell, value=lambda t: t.state),
        TableColumn(
            "epoch", "epoch", cell=lambda t: epoch_cell(t, view.epochs), value=lambda t: epochs_reached(t, view.epochs),
            numeric=True,
            best="high",
        ),
        TableColumn(
            "value", summary.objective, cell=lambda t: format_number(t.value) if t.value is not None else "",
            value=lambda t: t.value, numeric=True, best=best,
        ),
    ]
    columns += [_param_column(param, view) for param in params]
    columns.append(TableColumn("worker", "worker", cell=lambda t: t.worker or "", value=lambda t: t.worker))
    return tuple(columns)


def columns_signature(view: SweepView) -> tuple[str, ...]:
    """What decides the table's columns: the sweep, its objective and its parameters."""
    return (view.location.name, view.summary.objective, *view.kinds)


def _param_column(param: str, view: SweepView) -> TableColumn[TrialRow]:
    numeric = view.kinds.get(param, "choice") != "choice" or _all_numbers(view.choices.get(param, ()))

    def cell(trial: TrialRow) -> str:
        return param_text(trial.params[param]) if param in trial.params else ""

    def value(trial: TrialRow) -> object:
        return trial.params.get(param) if numeric else (cell(trial) or None)

    return TableColumn(f"param:{param}", param, cell=cell, value=value, numeric=numeric)


def _all_numbers(values: Sequence[object]) -> bool:
    return bool(values) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
