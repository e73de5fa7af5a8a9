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

With `pack` > 1, trials train in packs (`tuner_tui.runs.pack_session`): the trials of a pack share
a dataset, batch size and conventions (a `PackKey`); a trial asked for a pack whose key differs
waits, held, in its key's queue for a later pack; a slot freed at an epoch boundary (its trial
completed, diverged or was pruned) is given at once to the next trial of the pack's key. Each
trial is told as soon as its run ends, so the sampler and the budget see it while the pack goes on.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import Trial, TrialState

from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import EpochEnd, Event, Finished, Progress, RunStatus, ValidationCheck
from tuner_tui.engine.pack_runner import PackEvent, PackKey
from tuner_tui.engine.runner import TrialSettings, prepare_run
from tuner_tui.runs.lease import Heartbeat
from tuner_tui.runs.pack_session import PackEntry, run_pack
from tuner_tui.runs.records import RunLabels, new_run_uid
from tuner_tui.runs.session import CachedLoader, RunWriter, execute_and_record
from tuner_tui.sweeps.study import (
    FAULT_ATTR,
    OUTCOME_ATTR,
    REQUEUED_FROM,
    RUN_UID_ATTR,
    SURPLUS,
    SweepStudy,
    worst_value,
)
from tuner_tui.usercode.config import UserRunConfig
from tuner_tui.usercode.events import MetricsReported, UserEvent
from tuner_tui.usercode.objective import OBJECTIVE_METRIC, SUGGESTIONS
from tuner_tui.usercode.protocol import Answer, Ask
from tuner_tui.usercode.runner import UserCodeRejected, UserOutcome, run_user_code

MAX_CONSECUTIVE_FAILURES = 5  # a sweep whose trials keep crashing stops instead of burning its budget
STRAGGLER_POLL_S = 5.0


@dataclass(frozen=True)
class TrialStarted:
    number: int
    params: dict[str, Any]
    config: RunConfig | UserRunConfig
    requeued_from: int | None = None


@dataclass(frozen=True)
class TrialRunEvent:
    """An engine event of a trial's run (Started, Progress, EpochEnd, Finished)."""

    number: int
    event: Event | UserEvent


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
    stopped_by: str = "budget"  # budget | timeout | signal | failures | grid | patience | target
    store_errors: list[str] = field(default_factory=list)


def objective_of(sweep: SweepStudy, epoch: EpochEnd) -> float | None:
    """The epoch's objective (validation accuracy or mean cross-entropy)."""
    return epoch.val_accuracy if sweep.spec.search.objective == "val_accuracy" else epoch.val_loss


def recorded_metrics(finished: Finished) -> dict[str, float]:
    """What a built-in run recorded that objectives may name (`spec.RECORDED_METRICS`); a figure the
    run lacks (no validation rows, no memory reading) is left out."""
    last = finished.epochs[-1] if finished.epochs else None
    resources = finished.resources
    figures: dict[str, float | int | None] = {
        "val_accuracy": last.val_accuracy if last else None, "val_loss": last.val_loss if last else None,
        "train_accuracy": finished.train_accuracy, "train_loss": finished.train_loss,
        "train_time_s": resources.train_time_s, "total_time_s": resources.total_time_s,
        "peak_memory_bytes": resources.peak_memory_bytes, "params": finished.params,
    }
    return {name: float(value) for name, value in figures.items() if value is not None}


def objective_values(sweep: SweepStudy, metrics: Mapping[str, float]) -> list[float] | None:
    """Every objective's value among a finished run's metrics; None when one is missing."""
    values = [metrics.get(name) for name in sweep.spec.search.metric_names]
    if any(value is None or math.isnan(value) for value in values):
        return None
    return [float(value) for value in values if value is not None]


def reported_objective(sweep: SweepStudy, metrics: Mapping[str, float]) -> float | None:
    """A user run's objective among the metrics it reported (None when it did not report it)."""
    value = metrics.get(sweep.spec.search.objective)
    return None if value is None or math.isnan(value) else value


@dataclass
class _Context:
    """What every trial of this worker's sweep needs."""

    sweep: SweepStudy
    recorder: RunWriter
    on_event: Callable[[SweepEvent], None]
    cancel: threading.Event
    worker: WorkerInfo
    loader: CachedLoader
    outcome: SweepOutcome
    fault: Callable[[], str | None] | None
    step_seconds: dict[tuple[object, ...], float] = field(default_factory=dict)  # by trial shape, measured


class _HeldTrial:
    """A trial this worker asked and holds (its lease renewed) until it is told."""

    def __init__(self, ctx: _Context, trial: Trial) -> None:
        self.ctx, self.trial = ctx, trial
        self.heartbeat = Heartbeat(lambda expiry: ctx.sweep.hold(trial, ctx.worker.name, expiry))
        ctx.sweep.hold(trial, ctx.worker.name, self.heartbeat.expiry())  # before anything can fail
        self.heartbeat.start()
        self.params = ctx.sweep.params_of(trial)
        self.config = ctx.sweep.spec.trial_config(self.params)
        self.uid = new_run_uid()

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def builtin_config(self) -> RunConfig:
        """The config of a trial of the built-in network (packs train only those)."""
        assert isinstance(self.config, RunConfig), "a trial of user code is never packed"
        return self.config

    @property
    def labels(self) -> RunLabels:
        return RunLabels(sweep=self.ctx.sweep.name, trial=self.number, array_task=self.ctx.worker.array_task)

    def start(self) -> None:
        """Its run is about to train: say so, and link the trial to the run before it can end."""
        self.ctx.sweep.set_trial_attr(self.trial, RUN_UID_ATTR, self.uid)
        self.ctx.on_event(
            TrialStarted(self.number, self.params, self.config, self.trial.user_attrs.get(REQUEUED_FROM))
        )

    def report(self, report: EpochEnd | ValidationCheck) -> bool:
        """Report the objective at its step (`reports_per_epoch` steps an epoch: a check within an
        epoch, or its end); True when the pruner stops the trial."""
        parts = self.ctx.sweep.spec.search.reports_per_epoch
        if self.ctx.sweep.spec.search.multi_objective:
            return False  # Optuna keeps no intermediate values of a study with several objectives
        if isinstance(report, ValidationCheck):
            objective = self.ctx.sweep.spec.search.objective
            value: float | None = report.val_accuracy if objective == "val_accuracy" else report.val_loss
            step = (report.epoch - 1) * parts + report.part
        else:
            value, step = objective_of(self.ctx.sweep, report), report.epoch * parts
        if value is None:
            return False
        self.trial.report(value, step)
        return self.trial.should_prune()

    def report_metrics(self, report: MetricsReported) -> bool:
        """A user run's report: its objective at the report's epoch; True when the pruner stops it."""
        value = reported_objective(self.ctx.sweep, report.metrics)
        if value is None or self.ctx.sweep.spec.search.multi_objective:
            return False
        self.trial.report(value, report.epoch)
        return self.trial.should_prune()

    def ended_user(self, outcome: UserOutcome) -> TrialEnded:
        """Tell the study how a user run ended (its objective: the final metrics, else the last report)."""
        finished = outcome.finished
        metrics = {"train_time_s": finished.train_time_s, "total_time_s": finished.total_time_s, **finished.metrics}
        values = objective_values(self.ctx.sweep, metrics)
        status, message = finished.status, finished.message
        if status is RunStatus.COMPLETED and values is None:
            status = RunStatus.FAILED
            missing = [n for n in self.ctx.sweep.spec.search.metric_names if n not in metrics]
            message = f"the code never reported {', '.join(missing) or self.ctx.sweep.spec.search.objective}"
        if status is RunStatus.CANCELLED:
            fault = (self.ctx.fault() if self.ctx.fault else None) or "stopped"
            self.ctx.sweep.set_trial_attr(self.trial, FAULT_ATTR, fault)
        return self.tell(status, values, len(finished.reports), outcome.run_id, message)

    def ended(self, finished: Finished, run_id: int | None) -> TrialEnded:
        """Tell the study how the trial's run ended."""
        values = objective_values(self.ctx.sweep, recorded_metrics(finished))
        if finished.status is RunStatus.CANCELLED:
            fault = (self.ctx.fault() if self.ctx.fault else None) or "stopped"
            self.ctx.sweep.set_trial_attr(self.trial, FAULT_ATTR, fault)
        return self.tell(finished.status, values, len(finished.epochs), run_id, finished.message)

    def tell(
        self, status: RunStatus, values: list[float] | None, epochs: int, run_id: int | None, message: str
    ) -> TrialEnded:
        """Tell the study how the trial ended (`values`: every objective's, for a completed trial)."""
        self.heartbeat.stop()
        sweep, trial = self.ctx.sweep, self.trial
        study = sweep.study
        value = values[0] if values else None
        if status is RunStatus.COMPLETED and values is not None:
            study.tell(trial, values)
        elif status is RunStatus.PRUNED:
            study.tell(trial, state=TrialState.PRUNED)
        elif status is RunStatus.DIVERGED and sweep.spec.search.multi_objective:
            sweep.set_trial_attr(trial, OUTCOME_ATTR, status.value)
            study.tell(trial, state=TrialState.PRUNED)
        elif status is RunStatus.DIVERGED:
            trial.report(worst_value(sweep.spec), (epochs + 1) * sweep.spec.search.reports_per_epoch)
            sweep.set_trial_attr(trial, OUTCOME_ATTR, status.value)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            sweep.set_trial_attr(trial, OUTCOME_ATTR, status.value)
            frozen = study.tell(trial, state=TrialState.FAIL)
            if status is RunStatus.CANCELLED:
                sweep.ask_again(frozen)
        ended = TrialEnded(self.number, status, value, epochs, run_id, message)
        self.ctx.outcome.trials_run += 1
        self.ctx.on_event(ended)
        return ended

    def give_back(self, why: str) -> None:
        """A held trial that never trained (the worker stops): failed, and asked again."""
        self.ctx.sweep.set_trial_attr(self.trial, FAULT_ATTR, why)
        self.tell(RunStatus.CANCELLED, None, 0, None, why)


def run_sweep(
    sweep: SweepStudy,
    recorder: RunWriter,
    on_event: Callable[[SweepEvent], None],
    *,
    cancel: threading.Event,
    deadline: float | None = None,
    worker: WorkerInfo | None = None,
    loader: CachedLoader | None = None,
    clock: Callable[[], float] = time.time,
    stop_reason: Callable[[], str | None] | None = None,
    poll_s: float = STRAGGLER_POLL_S,
    pack: Callable[[int], int] | None = None,
) -> SweepOutcome:
    """Run trials until the budget is reached, the deadline passes or `cancel` is set: one at a
    time, or in packs of `pack(batch size)` trials where that is more than one.

    When the budget is covered by finished trials and trials other workers still hold, this worker
    waits (checking every `poll_s`) rather than leave: a held trial may yet fail and be asked again.
    `stop_reason` names what set `cancel` (e.g. `SIGTERM`), recorded with the trial it cancelled.
    Bad input in the base config (a dataset not found) raises before any trial is asked.
    """
    loader = loader or CachedLoader()
    if isinstance(sweep.spec.base, RunConfig):
        prepare_run(sweep.spec.base, load=loader)  # bad input surfaces here, once
    else:
        pack = None  # packs are the built-in engine's: a user's code trains one trial at a time
    outcome = SweepOutcome()
    ctx = _Context(sweep, recorder, on_event, cancel, worker or WorkerInfo(), loader, outcome, stop_reason)
    queues: dict[PackKey, deque[_HeldTrial]] = {}
    failures = 0
    grid_size = _grid_size(sweep)
    try:
        while True:
            read = sweep.read(clock())  # one read of the study for this pass's decisions
            if sweep.recover_stale(read):
                read = sweep.read(clock())
            finished, flying = read.finished(), read.in_flight()
            stop = _reason_to_stop(cancel, deadline, clock, finished, read.budget, grid_size, failures)
            early = sweep.done_early(read) if stop is None else None
            if early is not None:
                stop = early.split(":", 1)[0]  # patience | target
            if stop is not None:
                outcome.stopped_by = stop
                break
            queued = any(queues.values())
            if finished + flying >= read.budget and not queued:
                # Other workers hold the last trials; one of them may still fail and be asked again.
                cancel.wait(poll_s)
                continue
            ended = _run_one(ctx) if pack is None else _run_pack(ctx, queues, pack)
            if ended:
                failed = all(e.status is RunStatus.FAILED for e in ended)
                failures = failures + 1 if failed else 0
    finally:
        for queue in queues.values():
            while queue:
                held = queue.popleft()
                with contextlib.suppress(Exception):  # the storage may be what failed; its lease then expires
                    held.give_back("the worker stopped before this trial trained")
    return outcome


def _reason_to_stop(
    cancel: threading.Event, deadline: float | None, clock: Callable[[], float], finished: int, budget: int,
    grid_size: float | None, failures: int,
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


def _ask(ctx: _Context) -> _HeldTrial | None:
    """Ask and hold one trial; None when the budget turned out to be covered already."""
    trial = ctx.sweep.study.ask()
    if ctx.sweep.surplus(trial.number):  # another worker asked the budget's last trial at the same time
        ctx.sweep.set_trial_attr(trial, OUTCOME_ATTR, SURPLUS)
        ctx.sweep.study.tell(trial, state=TrialState.FAIL)
        return None
    try:
        return _HeldTrial(ctx, trial)
    except Exception as error:  # parameters the config refuses: a failed trial
        ctx.sweep.study.tell(trial, state=TrialState.FAIL)
        ctx.on_event(TrialEnded(trial.number, RunStatus.FAILED, None, 0, None, f"{type(error).__name__}: {error}"))
        return None


def _run_one(ctx: _Context, held: _HeldTrial | None = None) -> list[TrialEnded]:
    """Train one trial alone (`held`, or a newly asked one)."""
    held = held or _ask(ctx)
    if held is None:
        return []
    held.start()
    if isinstance(held.config, UserRunConfig):
        return [_run_user(ctx, held, held.config)]
    try:
        prepared = prepare_run(held.config, load=ctx.loader)
    except Exception as error:  # a trial that cannot even start is a failed trial
        return [held.tell(RunStatus.FAILED, None, 0, None, f"{type(error).__name__}: {error}")]
    shape = _shape(held.config)
    settings = TrialSettings(ctx.sweep.spec.search.reports_per_epoch, ctx.step_seconds.get(shape))

    def relay(event: Event) -> None:
        if isinstance(event, Progress) and event.step:  # the trial's own measure of its steps, for the next
            ctx.step_seconds[shape] = event.elapsed_s / ((event.epoch - 1) * event.steps_per_epoch + event.step)
        ctx.on_event(TrialRunEvent(held.number, event))

    recorded = execute_and_record(
        prepared, ctx.recorder, relay, cancel=ctx.cancel, labels=held.labels, judge=held.report, uid=held.uid,
        trial=settings,
    )
    if recorded.store_error is not None:
        ctx.outcome.store_errors.append(recorded.store_error)
    return [held.ended(recorded.finished, recorded.run_id)]


def _shape(config: RunConfig) -> tuple[object, ...]:
    """What a step's time depends on: a trial of the same shape on the same device takes as long."""
    return (config.dataset, config.hidden, config.batch_size, config.engine, config.conventions, config.device)


def _run_user(ctx: _Context, held: _HeldTrial, config: UserRunConfig) -> TrialEnded:
    """Train one trial of user code in its child process, the pruner judging each report; a plain
    Optuna objective's trial answered through the held trial."""
    target = ctx.sweep.spec.objective_target
    try:
        outcome = run_user_code(
            config, ctx.recorder, lambda event: ctx.on_event(TrialRunEvent(held.number, event)), cancel=ctx.cancel,
            labels=held.labels, judge=held.report_metrics, uid=held.uid, objective=target,
            host=TrialHost(held.trial) if target else None, trial_number=held.number,
        )
    except UserCodeRejected as rejected:
        return held.tell(RunStatus.FAILED, None, 0, None, rejected.reason)
    if outcome.store_error is not None:
        ctx.outcome.store_errors.append(outcome.store_error)
    return held.ended_user(outcome)


class TrialHost:
    """A plain Optuna objective's trial, answered here: its suggestions, reports and params."""

    ALLOWED = (*SUGGESTIONS, "set_user_attr")

    def __init__(self, trial: Trial) -> None:
        self.trial = trial

    def answer(self, ask: Ask) -> Answer:
        if ask.method not in self.ALLOWED:
            return Answer(error=f"trial.{ask.method} is not available to an objective run by tuner-tui")
        try:
            return Answer(getattr(self.trial, ask.method)(*ask.args, **ask.kwargs))
        except (ValueError, TypeError) as error:
            return Answer(error=str(error))

    def report(self, report: MetricsReported) -> bool:
        value = report.metrics.get(OBJECTIVE_METRIC)
        if value is None:
            return False
        self.trial.report(value, report.epoch)
        return self.trial.should_prune()

    def params(self) -> Mapping[str, Any]:
        return dict(self.trial.params)


def _run_pack(
    ctx: _Context, queues: dict[PackKey, deque[_HeldTrial]], pack: Callable[[int], int]
) -> list[TrialEnded]:
    """Train one pack of up to `pack(batch size)` trials that share a key, recycling freed slots
    (or one trial alone, where packing its batch size does not pay)."""
    # The key of the longest-held trial first: a held trial waits for a pack, not for other keys.
    key = min((k for k, queue in queues.items() if queue), key=lambda k: queues[k][0].number, default=None)
    if key is None:
        first = _ask(ctx)
        if first is None:
            return []
        key = PackKey.of(first.builtin_config)
        queues.setdefault(key, deque()).append(first)
    size = pack(key.batch_size)
    if size <= 1:
        return _run_one(ctx, queues[key].popleft())

    def next_trial(wanted: PackKey) -> _HeldTrial | None:
        """The next trial for a slot of `wanted`: a queued one, else newly asked ones (those of
        another key are queued for a later pack), while this worker holds fewer than `2 * size`
        trials and fewer than its share of what is left of the budget."""
        queue = queues.setdefault(wanted, deque())
        while not queue and not ctx.cancel.is_set():
            read = ctx.sweep.read(time.time())
            holding = sum(map(len, queues.values())) + sum(1 for m in members if not m.heartbeat.stopped)
            if holding >= min(2 * size, read.share(ctx.worker.name)):
                break
            if read.finished() + read.in_flight() >= read.budget:
                break
            held = _ask(ctx)
            if held is None:
                break
            queues.setdefault(PackKey.of(held.builtin_config), deque()).append(held)
        return queue.popleft() if queue else None

    members: list[_HeldTrial] = []
    while len(members) < size and (held := next_trial(key)) is not None:
        members.append(held)
    ended: list[TrialEnded] = []

    def next_entry(wanted: PackKey) -> PackEntry | None:
        held = next_trial(wanted)
        if held is None:
            return None
        members.append(held)
        held.start()
        return PackEntry(held.builtin_config, held.labels, held.uid)

    def on_slot(tagged: PackEvent) -> None:
        held = members[tagged.run]
        ctx.on_event(TrialRunEvent(held.number, tagged.event))
        if isinstance(tagged.event, Finished):
            ended.append(held.ended(tagged.event, None))

    for held in members:
        held.start()
    try:
        results = run_pack(
            [PackEntry(h.builtin_config, h.labels, h.uid) for h in members], ctx.recorder, on_slot, cancel=ctx.cancel,
            judge=lambda run, epoch: members[run].report(epoch), next_entry=next_entry, load=ctx.loader,
        )
    except Exception as error:  # the pack could not even start: its trials failed
        message = f"{type(error).__name__}: {error}"
        return [h.tell(RunStatus.FAILED, None, 0, None, message) for h in members if not h.heartbeat.stopped]
    ctx.outcome.store_errors += [r.store_error for r in results if r.store_error is not None]
    return ended


def _grid_size(sweep: SweepStudy) -> float | None:
    if sweep.spec.search.sampler != "grid":
        return None
    return math.prod(d.grid_size() or 0 for d in sweep.spec.space.values())
