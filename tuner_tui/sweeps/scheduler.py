"""Running a sweep: ask trials of the study, train each one as a recorded run, tell the outcome.

Every trial is an ordinary run through `tuner_tui.runs.session` (the same path as `--no-ui`),
labelled with its sweep and trial number. Each epoch's objective, measured on the validation rows
held out of the training set, is reported to the pruner; a pruned trial is stored as `pruned`
with the epochs it ran. Outcomes are told to Optuna as:

- completed → COMPLETE with the last epoch's objective;
- pruned → PRUNED (Optuna ranks it by its last reported value);
- diverged → PRUNED after reporting the worst value (accuracy 0, or an infinite loss) at the
  epoch it reached: Optuna's samplers ignore failed trials, and a sampler that never hears of a
  diverging region keeps proposing it; told as pruned with the worst value, it learns to avoid it;
- cancelled (a stop signal) → FAIL, and its parameters are asked again on resume;
- failed (a crash) → FAIL.

The budget counts finished (completed or pruned) trials, including those of other workers and
earlier runs, so rerunning after a kill resumes and never repeats a finished trial. A trial left
running by a dead worker is found through its lease, failed, and its parameters asked again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, Trial, TrialState

from engine.config import RunConfig
from engine.datasets import LoadedDataset, load_dataset
from engine.events import EpochEnd, Event, RunStatus
from engine.runner import prepare_run
from tuner_tui.runs.lease import Heartbeat
from tuner_tui.runs.session import RunRecorder, execute_and_record
from tuner_tui.runs.store import RunLabels
from tuner_tui.sweeps.study import (
    FAULT_ATTR,
    OUTCOME_ATTR,
    REQUEUED_FROM,
    RUN_UID_ATTR,
    SURPLUS,
    SweepStudy,
    worst_value,
)

MAX_CONSECUTIVE_FAILURES = 5  # a sweep whose trials keep crashing stops instead of burning its budget
STRAGGLER_POLL_S = 5.0


@dataclass(frozen=True)
class TrialStarted:
    number: int
    params: dict[str, Any]
    config: RunConfig
    requeued_from: int | None = None


@dataclass(frozen=True)
class TrialRunEvent:
    """An engine event of a trial's run (Started, Progress, EpochEnd, Finished)."""

    number: int
    event: Event


@dataclass(frozen=True)
class TrialEnded:
    number: int
    status: RunStatus
    value: float | None
    epochs: int
    run_id: int | None
    message: str


SweepEvent = TrialStarted | TrialRunEvent | TrialEnded


@dataclass(frozen=True)
class WorkerInfo:
    """Who runs the trials: shown by `sweep show` (node, cluster task) and stored with each run."""

    name: str = "local"
    array_task: str | None = None


@dataclass
class SweepOutcome:
    """What this worker did, and why it stopped."""

    trials_run: int = 0
    stopped_by: str = "budget"  # budget | timeout | signal | failures | grid
    store_errors: list[str] = field(default_factory=list)


class CachedLoader:
    """Loads each dataset once for all the trials of a sweep (they differ in hyperparameters only)."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str | None], LoadedDataset] = {}

    def __call__(self, name: str, data_root: str | None = None) -> LoadedDataset:
        key = (name, data_root)
        if key not in self._loaded:
            self._loaded[key] = load_dataset(name, data_root)
        return self._loaded[key]


def objective_of(sweep: SweepStudy, epoch: EpochEnd) -> float | None:
    """The epoch's objective (validation accuracy or mean cross-entropy)."""
    return epoch.val_accuracy if sweep.spec.search.objective == "val_accuracy" else epoch.val_loss


def run_sweep(
    sweep: SweepStudy,
    recorder: RunRecorder,
    on_event: Callable[[SweepEvent], None],
    *,
    cancel: threading.Event,
    deadline: float | None = None,
    worker: WorkerInfo | None = None,
    loader: CachedLoader | None = None,
    clock: Callable[[], float] = time.time,
    stop_reason: Callable[[], str | None] | None = None,
    poll_s: float = STRAGGLER_POLL_S,
) -> SweepOutcome:
    """Run trials until the budget is reached, the deadline passes or `cancel` is set.

    When the budget is covered by finished trials and trials other workers still hold, this worker
    waits (checking every `poll_s`) rather than leave: a held trial may yet fail and be asked again.
    `stop_reason` names what set `cancel` (e.g. `SIGTERM`), recorded with the trial it cancelled.
    Bad input in the base config (a dataset not found) raises before any trial is asked.
    """
    worker = worker or WorkerInfo()
    loader = loader or CachedLoader()
    prepare_run(sweep.spec.base, load=loader)  # bad input surfaces here, once
    outcome = SweepOutcome()
    failures = 0
    grid_size = _grid_size(sweep)
    while True:
        sweep.recover_stale(clock())
        finished, flying = sweep.finished_count(), sweep.in_flight(clock())
        stop = _reason_to_stop(cancel, deadline, clock, finished, sweep.budget, grid_size, failures)
        if stop is not None:
            outcome.stopped_by = stop
            break
        if finished + flying >= sweep.budget:
            # Other workers hold the last trials; one of them may still fail and be asked again.
            cancel.wait(poll_s)
            continue
        ended = _run_trial(
            sweep, recorder, on_event, cancel=cancel, worker=worker, loader=loader, outcome=outcome,
            fault=stop_reason,
        )
        if ended is not None:
            outcome.trials_run += 1
            failures = failures + 1 if ended.status is RunStatus.FAILED else 0
    return outcome


def _reason_to_stop(
    cancel: threading.Event, deadline: float | None, clock: Callable[[], float], finished: int, budget: int,
    grid_size: int | None, failures: int,
) -> str | None:
    if cancel.is_set():
        return "signal"
    if finished >= budget:
        return "budget"
    if deadline is not None and clock() >= deadline:
        return "timeout"
    if grid_size is not None and finished >= grid_size:
        return "grid"
    if failures >= MAX_CONSECUTIVE_FAILURES:
        return "failures"
    return None


def _run_trial(
    sweep: SweepStudy,
    recorder: RunRecorder,
    on_event: Callable[[SweepEvent], None],
    *,
    cancel: threading.Event,
    worker: WorkerInfo,
    loader: CachedLoader,
    outcome: SweepOutcome,
    fault: Callable[[], str | None] | None,
) -> TrialEnded | None:
    """Ask one trial and run it; None when the budget turned out to be covered already."""
    trial = sweep.study.ask()
    storage, trial_id = sweep.study._storage, trial._trial_id
    heartbeat = Heartbeat(lambda expiry: sweep.renew_lease(trial_id, expiry))
    sweep.hold(trial_id, worker.name, heartbeat.expiry())  # held before anything can fail
    if sweep.surplus(trial.number):  # another worker asked the last trial of the budget at the same time
        storage.set_trial_system_attr(trial_id, OUTCOME_ATTR, SURPLUS)
        sweep.study.tell(trial, state=TrialState.FAIL)
        return None
    heartbeat.start()
    try:
        params = sweep.params_of(trial)
        config = sweep.spec.trial_config(params)
        on_event(TrialStarted(trial.number, params, config, trial.user_attrs.get(REQUEUED_FROM)))
        prepared = prepare_run(config, load=loader)
        recorded = execute_and_record(
            prepared, recorder, lambda event: on_event(TrialRunEvent(trial.number, event)), cancel=cancel,
            labels=RunLabels(sweep=sweep.name, trial=trial.number, array_task=worker.array_task),
            judge=lambda epoch: _report(sweep, trial, epoch),
        )
    except Exception as error:  # a trial that cannot even start is a failed trial
        heartbeat.stop()
        return _tell(sweep, trial, on_event, RunStatus.FAILED, None, 0, None, f"{type(error).__name__}: {error}")
    heartbeat.stop()
    if recorded.store_error is not None:
        outcome.store_errors.append(recorded.store_error)
    finished = recorded.finished
    storage.set_trial_system_attr(trial_id, RUN_UID_ATTR, recorded.uid)
    value = objective_of(sweep, finished.epochs[-1]) if finished.epochs else None
    if finished.status is RunStatus.CANCELLED:
        storage.set_trial_system_attr(trial_id, FAULT_ATTR, (fault() if fault else None) or "stopped")
    return _tell(
        sweep, trial, on_event, finished.status, value, len(finished.epochs), recorded.run_id, finished.message
    )


def _report(sweep: SweepStudy, trial: Trial, epoch: EpochEnd) -> bool:
    """Report an epoch's objective at its rung; True when the pruner stops the trial."""
    value = objective_of(sweep, epoch)
    if value is None:
        return False
    trial.report(value, epoch.epoch)
    return trial.should_prune()


def _tell(
    sweep: SweepStudy,
    trial: Trial,
    on_event: Callable[[SweepEvent], None],
    status: RunStatus,
    value: float | None,
    epochs: int,
    run_id: int | None,
    message: str,
) -> TrialEnded:
    study, storage = sweep.study, sweep.study._storage
    if status is RunStatus.COMPLETED and value is not None:
        study.tell(trial, value)
    elif status is RunStatus.PRUNED:
        study.tell(trial, state=TrialState.PRUNED)
    elif status is RunStatus.DIVERGED:
        trial.report(worst_value(sweep.spec), epochs + 1)
        storage.set_trial_system_attr(trial._trial_id, OUTCOME_ATTR, status.value)
        study.tell(trial, state=TrialState.PRUNED)
    else:
        storage.set_trial_system_attr(trial._trial_id, OUTCOME_ATTR, status.value)
        frozen = study.tell(trial, state=TrialState.FAIL)
        if status is RunStatus.CANCELLED:
            sweep.ask_again(frozen)
    ended = TrialEnded(trial.number, status, value, epochs, run_id, message)
    on_event(ended)
    return ended


def _grid_size(sweep: SweepStudy) -> int | None:
    if sweep.spec.search.sampler != "grid":
        return None
    size = 1
    for distribution in sweep.spec.space.values():
        size *= len(distribution.grid() or [])
    return size


def best_trial(trials: list[FrozenTrial], direction: str) -> FrozenTrial | None:
    """The completed trial with the best value."""
    done = [t for t in trials if t.state is TrialState.COMPLETE and t.value is not None]
    if not done:
        return None
    return max(done, key=lambda t: t.value) if direction == "maximize" else min(done, key=lambda t: t.value)  # type: ignore[arg-type,return-value]
