"""What a sweep looks like to a reader: its trials, the best so far, importances, its workers.

Built from the study (any storage) and the results store, with no server: `sweep show`,
`sweeps` and the app's sweep screen all read through `load_summary`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner_tui.engine.events import RunStatus
from tuner_tui.sweeps.study import (
    BUDGET_ATTR,
    FAULT_ATTR,
    OUTCOME_ATTR,
    REQUEUED_FROM,
    RUN_UID_ATTR,
    STOP_ATTR,
    SURPLUS,
    holder_of,
    spec_of,
    trial_status,
)


@dataclass(frozen=True)
class TrialRow:
    """One trial as readers show it."""

    number: int
    status: RunStatus
    params: Mapping[str, Any]
    value: float | None  # the final objective (completed), else the last reported one
    epochs: int  # rungs reached: epochs reported to the pruner
    intermediate: Mapping[int, float]
    worker: str | None
    run_uid: str | None
    requeued_from: int | None
    fault: str | None  # what ended a cancelled or interrupted trial
    started_at: float | None
    finished_at: float | None
    values: tuple[float, ...] | None = None  # every objective's final value (a completed trial)
    user_attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to finish (a finished trial), else None."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def held(self) -> bool:
        """Asked and held by a tuner-tui worker that has not started its run yet (waiting for a pack);
        a plain Optuna study's running trial has no worker, and reads running."""
        return self.status is RunStatus.RUNNING and self.run_uid is None and self.worker is not None

    @property
    def state(self) -> str:
        """The status as shown: a held trial reads `held`, not `running`."""
        return "held" if self.held else self.status.value


@dataclass(frozen=True)
class WorkerRow:
    """A worker (a process on a node, a cluster array task) and what it does now."""

    name: str
    trials: int
    current_trial: int | None
    state: str  # running | idle | gone


@dataclass(frozen=True)
class ParamAxis:
    """A parameter of the study as its distribution defines it: how a view should draw its axis."""

    name: str
    log: bool = False
    choices: tuple[Any, ...] | None = None  # a categorical parameter's choices, in order
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class SweepSummary:
    """A study as readers show it: a tuner-tui sweep or any Optuna study (then with no spec)."""

    name: str
    spec_name: str | None
    direction: str  # the first objective's
    objective: str  # the first objective's name
    budget: int | None
    trials: tuple[TrialRow, ...]
    workers: tuple[WorkerRow, ...]
    waiting: int = 0  # trials queued to be asked (a cancelled or interrupted trial's parameters, again)
    directions: tuple[str, ...] = ()  # every objective's direction (empty: just `direction`)
    objectives: tuple[str, ...] = ()  # every objective's name
    axes: tuple[ParamAxis, ...] = ()
    stop_reason: str | None = None  # why the sweep stopped asking trials (patience, target), if it did

    @property
    def multi_objective(self) -> bool:
        return len(self.directions) > 1

    def pareto(self) -> list[TrialRow]:
        """The completed trials no other completed trial dominates (all objectives at least as good,
        one better), by number; with one objective, the best trial."""
        if not self.multi_objective:
            best = self.best()
            return [best] if best is not None else []
        done = [t for t in self.trials if t.status is RunStatus.COMPLETED and t.values is not None
                and len(t.values) == len(self.directions) and all(math.isfinite(v) for v in t.values)]
        signs = [1.0 if d == "maximize" else -1.0 for d in self.directions]
        keys = {t.number: [s * v for s, v in zip(signs, t.values or (), strict=True)] for t in done}

        def dominated(trial: TrialRow) -> bool:
            mine = keys[trial.number]
            return any(all(o >= m for o, m in zip(keys[other.number], mine, strict=True)) and keys[other.number] != mine
                       for other in done)

        return sorted((t for t in done if not dominated(t)), key=lambda t: t.number)

    @property
    def finished(self) -> int:
        return sum(1 for t in self.trials if t.status in (RunStatus.COMPLETED, RunStatus.PRUNED, RunStatus.DIVERGED))

    def count(self, *statuses: RunStatus) -> int:
        return sum(1 for t in self.trials if t.status in statuses)

    @property
    def state(self) -> str:
        """running (a trial holds a live lease), finished (budget reached) or stopped."""
        if any(t.status is RunStatus.RUNNING for t in self.trials):
            return "running"
        if (self.budget is not None and self.finished >= self.budget) or self.stop_reason is not None:
            return "finished"
        return "stopped"

    def best(self) -> TrialRow | None:
        done = [t for t in self.trials if t.status is RunStatus.COMPLETED and t.value is not None]
        if not done:
            return None
        sign = 1.0 if self.direction == "maximize" else -1.0
        return max(done, key=lambda t: sign * (t.value or 0.0))

    def top(self, count: int = 10) -> list[TrialRow]:
        sign = -1.0 if self.direction == "maximize" else 1.0
        done = [t for t in self.trials if t.status is RunStatus.COMPLETED and t.value is not None]
        return sorted(done, key=lambda t: (sign * (t.value or 0.0), t.number))[:count]

    def best_so_far(self) -> list[tuple[int, float]]:
        """(trial number, best completed value up to it), in trial order: the search's progress curve."""
        curve: list[tuple[int, float]] = []
        best: float | None = None
        for trial in sorted(self.trials, key=lambda t: t.number):
            if trial.status is not RunStatus.COMPLETED or trial.value is None:
                continue
            better = best is None or (trial.value > best if self.direction == "maximize" else trial.value < best)
            if better:
                best = trial.value
            assert best is not None
            curve.append((trial.number, best))
        return curve

    def ladder(self) -> dict[int, int]:
        """Rung (epoch) → how many trials reached it: the pruning ladder."""
        reached: dict[int, int] = {}
        for trial in self.trials:  # epochs, not the pruner's steps (several an epoch)
            for epoch in range(1, trial.epochs + 1):
                reached[epoch] = reached.get(epoch, 0) + 1
        return dict(sorted(reached.items()))

    def interruptions(self) -> list[TrialRow]:
        """Trials that ended by a fault: cancelled by a signal, or interrupted (a worker gone)."""
        return [t for t in self.trials if t.status in (RunStatus.CANCELLED, RunStatus.INTERRUPTED)]


def load_summary(study: optuna.Study, *, clock: Callable[[], float] = time.time) -> SweepSummary:
    """Everything readers show of a study, read once."""
    now = clock()
    spec = spec_of(study) or {}
    search = spec.get("search", {}) if isinstance(spec, Mapping) else {}
    trials = study.get_trials(deepcopy=False)
    asked = [t for t in trials if t.state is not TrialState.WAITING and t.system_attrs.get(OUTCOME_ATTR) != SURPLUS]
    parts = search.get("reports_per_epoch", 1) if isinstance(search, Mapping) else 1
    rows = tuple(_row(trial, now, parts if isinstance(parts, int) and parts > 0 else 1) for trial in asked)
    budget = study.user_attrs.get(BUDGET_ATTR)
    directions = tuple("maximize" if d.name == "MAXIMIZE" else "minimize" for d in study.directions)
    names = _objective_names(study, search, len(directions))
    stop = study.user_attrs.get(STOP_ATTR)
    return SweepSummary(
        name=study.study_name,
        spec_name=spec.get("name") if isinstance(spec, Mapping) else None,
        direction=directions[0],
        objective=names[0],
        budget=int(budget) if budget is not None else None,
        trials=rows,
        workers=_workers(rows),
        waiting=sum(1 for t in trials if t.state is TrialState.WAITING),
        directions=directions,
        objectives=names,
        axes=_axes(asked),
        stop_reason=str(stop) if stop is not None else None,
    )


def _objective_names(study: optuna.Study, search: Mapping[str, Any], count: int) -> tuple[str, ...]:
    """The objectives' names: the spec's, else those the study was given (`set_metric_names`), else
    `value` (one objective) or `value 0`, `value 1`, ..."""
    objectives = search.get("objectives") if isinstance(search, Mapping) else None
    if isinstance(objectives, Mapping) and len(objectives) == count:
        return tuple(str(name) for name in objectives)
    if isinstance(search, Mapping) and "objective" in search and count == 1:
        return (str(search["objective"]),)
    metric_names = study.metric_names
    if metric_names is not None and len(metric_names) == count:
        return tuple(str(name) for name in metric_names)
    return ("value",) if count == 1 else tuple(f"value {i}" for i in range(count))


def _axes(trials: list[FrozenTrial]) -> tuple[ParamAxis, ...]:
    """Every parameter the trials were asked, with its (last seen) distribution, in first-seen order."""
    seen: dict[str, optuna.distributions.BaseDistribution] = {}
    for trial in trials:
        seen.update(trial.distributions)
    axes = []
    for name, distribution in seen.items():
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            axes.append(ParamAxis(name, choices=tuple(distribution.choices)))
        elif isinstance(distribution, optuna.distributions.FloatDistribution | optuna.distributions.IntDistribution):
            axes.append(ParamAxis(name, log=distribution.log, low=float(distribution.low),
                                  high=float(distribution.high)))
        else:
            axes.append(ParamAxis(name))
    return tuple(axes)


MIN_IMPORTANCE_TRIALS = 5  # PED-ANOVA compares the top quantile with the rest: it needs a few trials


def importances(study: optuna.Study) -> dict[str, float] | None:
    """Parameter importances by PED-ANOVA (fast, in Optuna itself) over completed trials, for the
    first objective; None with too few completed trials to tell."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(completed) < MIN_IMPORTANCE_TRIALS or not any(t.params for t in completed):
        return None
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    sign = -1.0 if study.directions[0] is optuna.study.StudyDirection.MAXIMIZE else 1.0
    target = None if len(study.directions) == 1 else (lambda t: sign * t.values[0])  # PED-ANOVA seeks low targets
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            weights = optuna.importance.get_param_importances(study, evaluator=evaluator, target=target)
    except (RuntimeError, ValueError, ZeroDivisionError):
        return None
    return {name: float(weight) for name, weight in weights.items()}


def _row(trial: FrozenTrial, now: float, parts: int = 1) -> TrialRow:
    """A trial as readers show it; `parts`: the pruner's steps an epoch (a trial reported `parts`
    times an epoch has finished epoch `step // parts` at step `step`)."""
    status = trial_status(trial)
    holder = holder_of(trial)
    if status is RunStatus.RUNNING and holder is not None and holder.gone(now):
        status = RunStatus.INTERRUPTED  # its worker is gone; the next worker records it
    intermediate = {int(step): float(v) for step, v in trial.intermediate_values.items() if not math.isnan(v)}
    values = tuple(float(v) for v in trial.values) if trial.state is TrialState.COMPLETE and trial.values else None
    value = values[0] if values else None
    if value is None and intermediate:
        value = intermediate[max(intermediate)]
    if trial.system_attrs.get(OUTCOME_ATTR) == RunStatus.DIVERGED.value:
        value = None
    return TrialRow(
        number=trial.number, status=status, params=dict(trial.params), value=value,
        epochs=max((step for step, v in intermediate.items() if math.isfinite(v)), default=0) // parts,
        intermediate=intermediate,
        worker=holder.worker if holder is not None else None, run_uid=trial.system_attrs.get(RUN_UID_ATTR),
        requeued_from=trial.user_attrs.get(REQUEUED_FROM),
        fault=trial.system_attrs.get(FAULT_ATTR),
        started_at=trial.datetime_start.timestamp() if trial.datetime_start else None,
        finished_at=trial.datetime_complete.timestamp() if trial.datetime_complete else None,
        values=values, user_attrs=dict(trial.user_attrs),
    )


def _workers(rows: tuple[TrialRow, ...]) -> tuple[WorkerRow, ...]:
    by_worker: dict[str, list[TrialRow]] = {}
    for row in rows:
        if row.worker:
            by_worker.setdefault(row.worker, []).append(row)
    workers = []
    for name, trials in sorted(by_worker.items()):
        running = sorted((t for t in trials if t.status is RunStatus.RUNNING), key=lambda t: t.held)  # training first
        last = max(trials, key=lambda t: t.number)
        if running:
            state = "running"
        elif last.status is RunStatus.INTERRUPTED:
            state = "gone"
        else:
            state = "idle"
        workers.append(WorkerRow(name, len(trials), running[0].number if running else None, state))
    return tuple(workers)
