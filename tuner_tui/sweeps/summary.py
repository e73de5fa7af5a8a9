"""What a sweep looks like to a reader: its trials, the best so far, importances, its workers.

Built from the study (any storage) and the results store, with no server: `sweep show`,
`sweeps` and the app's sweep screen all read through `load_summary`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    SURPLUS,
    WORKER_ATTR,
    spec_of,
    trial_holder_gone,
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

    @property
    def held(self) -> bool:
        """Asked and held by a worker that has not started its run yet (waiting for a pack)."""
        return self.status is RunStatus.RUNNING and self.run_uid is None

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
class SweepSummary:
    name: str
    spec_name: str | None
    direction: str
    objective: str
    budget: int | None
    trials: tuple[TrialRow, ...]
    workers: tuple[WorkerRow, ...]
    waiting: int = 0  # trials queued to be asked (a cancelled or interrupted trial's parameters, again)

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
        if self.budget is not None and self.finished >= self.budget:
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
        for trial in self.trials:
            for rung in trial.intermediate:
                reached[rung] = reached.get(rung, 0) + 1
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
    return SweepSummary(
        name=study.study_name,
        spec_name=spec.get("name") if isinstance(spec, Mapping) else None,
        direction="maximize" if study.direction.name == "MAXIMIZE" else "minimize",
        objective=str(search.get("objective", "value")),
        budget=int(budget) if budget is not None else None,
        trials=rows,
        workers=_workers(rows),
        waiting=sum(1 for t in trials if t.state is TrialState.WAITING),
    )


def importances(study: optuna.Study) -> dict[str, float] | None:
    """Optuna's parameter importances (fANOVA) over completed trials; None with fewer than two."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(completed) < 2:
        return None
    try:
        return optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):
        return None


def _row(trial: FrozenTrial, now: float, parts: int = 1) -> TrialRow:
    """A trial as readers show it; `parts`: the pruner's steps an epoch (a trial reported `parts`
    times an epoch has finished epoch `step // parts` at step `step`)."""
    status = trial_status(trial)
    if status is RunStatus.RUNNING and trial_holder_gone(trial, now):
        status = RunStatus.INTERRUPTED  # its worker is gone; the next worker records it
    intermediate = {int(step): float(v) for step, v in trial.intermediate_values.items() if not math.isnan(v)}
    value = trial.value if trial.state is TrialState.COMPLETE else None
    if value is None and intermediate:
        value = intermediate[max(intermediate)]
    if trial.system_attrs.get(OUTCOME_ATTR) == RunStatus.DIVERGED.value:
        value = None
    return TrialRow(
        number=trial.number, status=status, params=dict(trial.params), value=value,
        epochs=max((step for step, v in intermediate.items() if math.isfinite(v)), default=0) // parts,
        intermediate=intermediate,
        worker=trial.system_attrs.get(WORKER_ATTR), run_uid=trial.system_attrs.get(RUN_UID_ATTR),
        requeued_from=trial.user_attrs.get(REQUEUED_FROM),
        fault=trial.system_attrs.get(FAULT_ATTR),
        started_at=trial.datetime_start.timestamp() if trial.datetime_start else None,
        finished_at=trial.datetime_complete.timestamp() if trial.datetime_complete else None,
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
