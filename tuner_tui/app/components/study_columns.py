"""The study views' tables of trials: trial, state, every objective, duration, then one column per
parameter; the Pareto front's table leaves out state and duration (its trials all completed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from tuner_tui.app.components.record_table import TableColumn
from tuner_tui.app.components.sweep_plots import param_text
from tuner_tui.formatting import format_number, format_seconds

if TYPE_CHECKING:  # optuna loads with the first read, off the UI thread
    from tuner_tui.sweeps.summary import SweepSummary, TrialRow


def objective_value(trial: TrialRow, index: int) -> float | None:
    """The trial's value of objective `index`: its final one, or for the first objective of an
    unfinished trial the last it reported."""
    if trial.values is not None and index < len(trial.values):
        return trial.values[index]
    return trial.value if index == 0 else None


def study_signature(summary: SweepSummary) -> tuple[str, ...]:
    """What decides the tables' columns: the objectives and the parameters."""
    return (*summary.objectives, "|", *(axis.name for axis in summary.axes))


def _objective_columns(summary: SweepSummary) -> list[TableColumn[TrialRow]]:
    columns = []
    for index, (name, direction) in enumerate(zip(summary.objectives, summary.directions, strict=True)):
        best: Literal["high", "low"] = "high" if direction == "maximize" else "low"

        def cell(trial: TrialRow, index: int = index) -> str:
            value = objective_value(trial, index)
            return format_number(value) if value is not None else ""

        def value(trial: TrialRow, index: int = index) -> float | None:
            return objective_value(trial, index)

        columns.append(TableColumn(f"objective:{index}", name, cell=cell, value=value, numeric=True, best=best))
    return columns


def _param_columns(summary: SweepSummary) -> list[TableColumn[TrialRow]]:
    columns = []
    for axis in summary.axes:
        numeric = axis.choices is None

        def cell(trial: TrialRow, name: str = axis.name) -> str:
            return param_text(trial.params[name]) if name in trial.params else ""

        def value(trial: TrialRow, name: str = axis.name, numeric: bool = numeric) -> object:
            if name not in trial.params:
                return None
            return trial.params[name] if numeric else param_text(trial.params[name])

        columns.append(TableColumn(f"param:{axis.name}", axis.name, cell=cell, value=value, numeric=numeric))
    return columns


def study_columns(summary: SweepSummary) -> tuple[TableColumn[TrialRow], ...]:
    """Every trial: number, state, objectives, duration, parameters."""
    return (
        TableColumn("trial", "trial", cell=lambda t: str(t.number), value=lambda t: t.number, numeric=True),
        TableColumn("state", "state", cell=lambda t: t.state, value=lambda t: t.state),
        *_objective_columns(summary),
        TableColumn("duration", "duration", cell=lambda t: format_seconds(t.duration_s) if t.duration_s is not None
                    else "", value=lambda t: t.duration_s, numeric=True),
        *_param_columns(summary),
    )


def front_columns(summary: SweepSummary) -> tuple[TableColumn[TrialRow], ...]:
    """The Pareto front's trials: number, objectives, parameters."""
    return (
        TableColumn("trial", "trial", cell=lambda t: str(t.number), value=lambda t: t.number, numeric=True),
        *_objective_columns(summary),
        *_param_columns(summary),
    )
