"""What the sweep commands print: a sweep's trials as they start and end (stderr), `sweep show`'s
tables, `sweeps` and the spec list (Rich, no Textual). User text (names, parameters, faults) is
printed as text: never markup, control characters shown as `\ufffd`."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuner_tui.engine.events import RunStatus
from tuner_tui.formatting import format_percent, format_seconds, plural
from tuner_tui.reports.run_tables import plain
from tuner_tui.runs.records import RunRecord
from tuner_tui.sweeps.scheduler import SweepEvent, TrialEnded, TrialStarted
from tuner_tui.sweeps.spec import SweepSpec
from tuner_tui.sweeps.summary import SweepSummary


class SweepReporter:
    """One line per trial on stderr: its parameters when it starts, its outcome when it ends."""

    def __init__(self, console: Console, budget: int) -> None:
        self.console = console
        self.budget = budget
        self.started = time.monotonic()

    def __call__(self, event: SweepEvent) -> None:
        if isinstance(event, TrialStarted):
            again = f" (again, for trial {event.requeued_from})" if event.requeued_from is not None else ""
            asked = params_text(event.params) or "started (its code asks its own parameters)"
            self._print(f"trial {event.number}{again}: {asked}")
        elif isinstance(event, TrialEnded):
            value = f" · value {event.value:.4g}" if event.value is not None else ""
            self._print(f"trial {event.number}: {event.status.value} after {plural(event.epochs, 'epoch')}{value}")

    def header(self, name: str, finished: int) -> None:
        self._print(f"sweep {name}: {finished} of {self.budget} trials finished before this run")

    def footer(self, summary: SweepSummary, stopped_by: str) -> None:
        best = summary.best()
        best_text = f"best trial {best.number}: {best.value:.4g} ({params_text(best.params)})" if best else "no best"
        self._print(
            f"sweep {summary.name}: {summary.finished} of {summary.budget} trials finished "
            f"({summary.stop_reason or stopped_by}) in {format_seconds(time.monotonic() - self.started)}; {best_text}"
        )

    def _print(self, text: str) -> None:
        self.console.print(plain(text), soft_wrap=True)


def params_text(params: Mapping[str, Any]) -> str:
    return " · ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                      for key, value in params.items())


def show_renderables(
    summary: SweepSummary, weights: Mapping[str, float] | None, best_run: RunRecord | None = None
) -> list[Any]:
    """`sweep show`'s text: the counts, the best trial (with its run's test accuracy), the top
    trials, the importances, the workers and the interrupted trials."""
    best = summary.best()
    stopped = [f"{summary.count(status)} {status.value}" for status in (RunStatus.CANCELLED, RunStatus.INTERRUPTED)
               if summary.count(status)]
    budget = "" if summary.budget is None else f" of {summary.budget}"  # a plain Optuna study has none
    objectives = ", ".join(f"{name} ({way})" for name, way in zip(summary.objectives, summary.directions, strict=False))
    head = (
        f"sweep {summary.name} ({summary.state}): {summary.finished}{budget} trials finished · "
        f"{summary.count(RunStatus.COMPLETED)} completed · {summary.count(RunStatus.PRUNED, RunStatus.DIVERGED)} "
        f"pruned · {summary.count(RunStatus.FAILED)} failed · "
        + "".join(f"{count} · " for count in stopped)
        + (f"objectives {objectives}" if summary.multi_objective else
           f"objective {summary.objective} ({summary.direction})")
        + (f" · {summary.waiting} to be asked again" if summary.waiting else "")
    )
    out: list[Any] = [plain(head)]
    if summary.stop_reason is not None:
        out.append(plain(f"stopped before its budget: {summary.stop_reason}"))
    if best is not None:
        shown = f"best: trial {best.number}, {summary.objective} {best.value:.4g}"
        if best_run is not None and best_run.test_accuracy is not None:
            shown += f" · test accuracy {format_percent(best_run.test_accuracy)} (run {best_run.id})"
        out.append(plain(f"{shown} · {params_text(best.params)}"))
    if summary.multi_objective:
        out.append(_front_table(summary))
    top = Table(title="top trials", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    top.add_column("trial", justify="right")
    top.add_column(summary.objective, justify="right")
    names = sorted({key for t in summary.trials for key in t.params})
    for key in names:
        top.add_column(key, justify="right")
    for trial in summary.top():
        top.add_row(str(trial.number), f"{trial.value:.4g}", *(_cell(trial.params.get(key)) for key in names))
    out.append(top)
    if weights:
        table = Table(title="parameter importances (PED-ANOVA)", title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("parameter")
        table.add_column("importance", justify="right")
        for key, weight in weights.items():
            table.add_row(plain(key), f"{weight:.3f}")
        out.append(table)
    if summary.workers:
        table = Table(title="workers", title_justify="left", box=box.SIMPLE_HEAD)
        for title in ("worker", "trials", "current trial", "state"):
            table.add_column(title)
        for worker in summary.workers:
            current = "" if worker.current_trial is None else str(worker.current_trial)
            table.add_row(plain(worker.name), str(worker.trials), current, worker.state)
        out.append(table)
    faults = summary.interruptions()
    if faults:
        table = Table(title="interrupted trials", title_justify="left", box=box.SIMPLE_HEAD)
        for title in ("trial", "status", "fault", "worker", "epochs", "asked again"):
            table.add_column(title)
        again = {t.requeued_from: t.number for t in summary.trials if t.requeued_from is not None}
        for trial in faults:
            table.add_row(
                str(trial.number), trial.status.value, plain(trial.fault or ""), plain(trial.worker or ""),
                str(trial.epochs), f"as trial {again[trial.number]}" if trial.number in again else "",
            )
        out.append(table)
    return out


def _front_table(summary: SweepSummary) -> Table:
    """The Pareto front's trials: every objective's value and the parameters."""
    table = Table(title="Pareto front", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("trial", justify="right")
    for name, way in zip(summary.objectives, summary.directions, strict=True):
        table.add_column(plain(f"{name} ({way})"), justify="right")
    table.add_column("parameters")
    for trial in summary.pareto():
        table.add_row(str(trial.number), *(_cell(v) for v in trial.values or ()), plain(params_text(trial.params)))
    return table


def _cell(value: Any) -> Text:
    if isinstance(value, float):
        return plain(f"{value:.4g}")
    return plain("" if value is None else str(value))




def sweeps_table(summaries: Sequence[SweepSummary]) -> Table:
    """`tuner-tui sweeps`: a line per sweep with its spec, progress, best and state."""
    table = Table(title="sweeps", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for title in ("name", "spec", "trials", "best", "state"):
        table.add_column(title, justify="right" if title in ("trials", "best") else "left")
    for summary in summaries:
        best = summary.best()
        table.add_row(
            plain(summary.name), plain(summary.spec_name or ""), f"{summary.finished}/{summary.budget}",
            f"{best.value:.4g}" if best is not None and best.value is not None else "–", summary.state,
        )
    return table


def specs_table(specs: Sequence[SweepSpec]) -> Table:
    """The shipped and user sweep specs, for `tuner-tui presets`."""
    table = Table(title="sweep specs", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for title in ("name", "base", "searches", "sampler", "pruner", "epochs", "trials", "source"):
        table.add_column(title, overflow="fold")
    for spec in specs:
        search = spec.search
        table.add_row(
            plain(spec.name), plain(spec.base_preset or getattr(spec.base, "dataset", "")),
            plain(", ".join(spec.space)),
            search.sampler, search.pruner, str(search.epochs), str(search.trials),
            plain("shipped" if spec.shipped else spec.source),
        )
    return table
