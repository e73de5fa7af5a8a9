"""A sweep's Optuna study: storage, sampler and pruner from the spec, parameters, states and leases.

The study lives in an Optuna storage: by default an SQLite file beside the results store (one
host), `journal:PATH` (Optuna's JournalStorage with its file lock, for a shared filesystem), or
any RDB URL (`postgresql://...`). The spec's fingerprint and the budget are kept in the study's
user attributes, so running a name again with another spec is refused and `--trials` can grow.

A running trial holds a lease (`tuner_tui.runs.lease`) in its system attributes, renewed while
its worker lives; a trial whose lease expired is failed by the next worker and its parameters
are asked again, so a killed worker loses only its unfinished epoch.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from tuner_tui.engine.events import RunStatus
from tuner_tui.runs.lease import holder_gone, this_host, this_process
from tuner_tui.sweeps.spec import Distribution, SweepSpec
from tuner_tui.sweeps.stopping import search_done
from tuner_tui.sweeps.storages import NoStorage, StudyError, open_storage, shown_url, storage_problem

SPEC_ATTR = "tuner_tui.spec"
FINGERPRINT_ATTR = "tuner_tui.fingerprint"
BUDGET_ATTR = "tuner_tui.budget"
TARGET_ATTR = "tuner_tui.target"  # --target: stop asking trials once the best reaches it
HOLDER_ATTR = "tuner_tui.holder"  # {"worker", "host", "pid", "lease_expires_at"}: one write to hold a trial
LEGACY_LEASE_ATTR = "tuner_tui.lease_expires_at"  # studies held before: tuner_tui.worker, .host, .pid, this
REQUEUED_FROM = "requeued_from"  # user attribute of a trial that asks again a failed trial's parameters
RUN_UID_ATTR = "tuner_tui.run_uid"
FAULT_ATTR = "tuner_tui.fault"  # what ended a cancelled or interrupted trial (a signal, a worker gone)
OUTCOME_ATTR = "tuner_tui.outcome"  # the run's own status when Optuna's state says less (diverged, cancelled)
STOP_ATTR = "tuner_tui.stop_reason"  # why a sweep stopped asking trials before its budget (patience, target)
SURPLUS = "surplus"  # the outcome of a trial asked beyond the budget by a race between workers: never run
# Optuna states as tuner-tui statuses: one mapping, used by every reader.
TRIAL_STATUS: dict[TrialState, RunStatus] = {
    TrialState.RUNNING: RunStatus.RUNNING,
    TrialState.COMPLETE: RunStatus.COMPLETED,
    TrialState.PRUNED: RunStatus.PRUNED,
    TrialState.FAIL: RunStatus.FAILED,
}

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(spec: SweepSpec, *, reseed: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded with `spec.search.seed + reseed` (reseed: trials so far, so a
    resumed sweep continues the sequence instead of repeating it)."""
    seed = spec.search.seed + reseed
    name = spec.search.sampler
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, spec.search.trials // 5)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    grid = {field: [optuna_value(v) for v in d.grid() or []] for field, d in spec.space.items()}
    return optuna.samplers.GridSampler(grid, seed=seed)


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    """Rungs at the checks of a trial's validation rows (`reports_per_epoch` steps an epoch): ASHA
    (successive halving), median, Hyperband, or none."""
    name = spec.search.pruner
    if spec.search.multi_objective:
        return optuna.pruners.NopPruner()  # Optuna prunes only single-objective studies
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        steps = spec.search.epochs * spec.search.reports_per_epoch
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=steps, reduction_factor=3)
    return optuna.pruners.NopPruner()


def optuna_value(value: Any) -> Any:
    """A choice as Optuna can store it: layer-size lists become `256,128` strings."""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return value


def suggest(trial: Trial, field: str, distribution: Distribution) -> Any:
    """Ask the trial for one field's value from its distribution."""
    kind, values, step = distribution.kind, distribution.values, distribution.step
    if kind == "choice":
        return trial.suggest_categorical(field, [optuna_value(v) for v in values])
    if kind in ("int", "log_int"):
        return trial.suggest_int(field, values[0], values[1], step=int(step or 1), log=kind == "log_int")
    return trial.suggest_float(field, values[0], values[1], step=step, log=kind == "log_uniform")


@dataclass(frozen=True)
class Holder:
    """Who holds a running trial, and until when its lease runs: one system attribute of the trial."""

    worker: str
    host: str
    pid: int
    lease_expires_at: float

    def gone(self, now: float) -> str | None:
        """Why this holder is known to be gone (the same rule as for stored runs); None if it may live."""
        return holder_gone(self.host, self.pid, self.lease_expires_at, now)


def holder_of(trial: FrozenTrial) -> Holder | None:
    """The trial's holder; None for a trial asked but not yet held (or not by tuner-tui)."""
    attrs = trial.system_attrs
    value = attrs.get(HOLDER_ATTR)
    if value is None and LEGACY_LEASE_ATTR in attrs:  # held by a tuner-tui that wrote one attribute a field
        value = {field: attrs.get(f"tuner_tui.{field}") for field in ("worker", "host", "pid", "lease_expires_at")}
    if not isinstance(value, dict):
        return None
    try:
        return Holder(str(value["worker"]), str(value["host"]), int(value["pid"]), float(value["lease_expires_at"]))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class StudyRead:
    """The study as one read of it saw it, at `now`: what one pass of a worker's loop decides on (the
    budget, the trials finished and in flight, stale holders, an early stop) from one storage read."""

    trials: list[FrozenTrial]
    user_attrs: Mapping[str, Any]
    default_budget: int
    now: float

    @property
    def budget(self) -> int:
        return int(self.user_attrs.get(BUDGET_ATTR, self.default_budget))

    @property
    def target(self) -> float | None:
        value = self.user_attrs.get(TARGET_ATTR)
        return float(value) if value is not None else None

    def finished(self) -> int:
        """Completed and pruned trials: what the budget counts."""
        return sum(1 for t in self.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED))

    @cached_property
    def running(self) -> list[tuple[FrozenTrial, Holder | None, str | None]]:
        """Each running trial with its holder (None: asked, not yet held) and why that holder is gone
        (None while it may be alive, or not held yet: its asker is about to hold it)."""
        running = []
        for trial in self.trials:
            if trial.state is TrialState.RUNNING:
                holder = holder_of(trial)
                running.append((trial, holder, holder.gone(self.now) if holder is not None else None))
        return running

    def live(self) -> list[tuple[FrozenTrial, Holder | None]]:
        """The running trials whose holder may be alive (other workers' and ours), with it."""
        return [(trial, holder) for trial, holder, why in self.running if why is None]

    def in_flight(self) -> int:
        return len(self.live())

    def stale(self) -> list[tuple[FrozenTrial, str]]:
        """Running trials whose holder is known to be gone, with why."""
        return [(trial, why) for trial, _, why in self.running if why is not None]

    def share(self, worker: str) -> int:
        """The most trials `worker` should hold at once: what is left of the budget split evenly
        between it and the other workers holding trials, so that one worker filling a pack does
        not take the trials the others would train meanwhile."""
        holders = {worker} | {holder.worker for _, holder in self.live() if holder is not None}
        return max(1, math.ceil((self.budget - self.finished()) / len(holders)))


@dataclass
class SweepStudy:
    """An open study of one sweep, with the spec it runs."""

    study: optuna.Study
    spec: SweepSpec
    storage_url: str

    @property
    def name(self) -> str:
        return self.study.study_name

    def read(self, now: float) -> StudyRead:
        """The study's trials and attributes, read once."""
        return StudyRead(self.trials(), self.study.user_attrs, self.spec.search.trials, now)

    def done_early(self, read: StudyRead) -> str | None:
        """Why the search is done before its budget (patience, target), recorded in the study once; None if not."""
        search = self.spec.search
        if search.multi_objective:
            return None
        why = search_done(read.trials, search.direction, patience=search.patience, target=read.target)
        if why is not None and read.user_attrs.get(STOP_ATTR) != why:
            self.study.set_user_attr(STOP_ATTR, why)
        return why

    def trials(self, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states)

    def params_of(self, trial: Trial) -> dict[str, Any]:
        """Ask every field of the space; the values a config takes."""
        return {field: suggest(trial, field, d) for field, d in self.spec.space.items()}

    # Optuna's public API sets a trial's system attributes only through `Trial.set_system_attr`,
    # deprecated since 3.1, and not at all for the FrozenTrial of another process's trial (a dead
    # worker's, recovered here), so they are written through the study's storage by trial id: the
    # two private attributes below (`study._storage`, `trial._trial_id`) are the only ones tuner-tui
    # touches, and only in these methods.

    def set_trial_attr(self, trial: Trial | FrozenTrial, key: str, value: Any) -> None:
        """Set one of tuner-tui's system attributes on a trial (its holder, run, outcome, fault)."""
        self.study._storage.set_trial_system_attr(trial._trial_id, key, value)

    def fail_trial(self, trial: FrozenTrial) -> None:
        """Mark another process's running trial failed (RuntimeError or UpdateFinishedTrialError when
        another worker did so first)."""
        self.study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)

    def hold(self, trial: Trial, worker: str, expires_at: float) -> None:
        """Mark a trial as held by this process, with a lease until `expires_at` (renewed by calling
        this again)."""
        holder = Holder(worker, this_host(), this_process(), expires_at)
        self.set_trial_attr(trial, HOLDER_ATTR, asdict(holder))

    def recover_stale(self, read: StudyRead) -> list[int]:
        """Fail the running trials whose holder is gone and ask their parameters again; their numbers."""
        recovered = []
        for trial, why in read.stale():
            try:
                self.set_trial_attr(trial, FAULT_ATTR, why)
                self.set_trial_attr(trial, OUTCOME_ATTR, RunStatus.INTERRUPTED.value)
                self.fail_trial(trial)
            except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
                continue  # another worker recovered it first
            self.ask_again(trial)
            recovered.append(trial.number)
        return recovered

    def ask_again(self, trial: FrozenTrial) -> None:
        """Queue a failed or cancelled trial's parameters for a new trial (once per trial)."""
        if not trial.params or any(t.user_attrs.get(REQUEUED_FROM) == trial.number for t in self.trials()):
            return
        self.study.enqueue_trial(dict(trial.params), user_attrs={REQUEUED_FROM: trial.number})

    def surplus(self, number: int) -> bool:
        """Whether trial `number`, just asked, is beyond the budget: the trials before it, finished or
        held by a live worker, already cover it (two workers asked at the same moment)."""
        read = self.read(time.time())
        live = {trial.number for trial, _ in read.live()}
        covered = sum(1 for t in read.trials if t.number < number
                      and (t.state in (TrialState.COMPLETE, TrialState.PRUNED) or t.number in live))
        return covered >= read.budget


WORKER_SEED_STRIDE = 1_000_003  # seeds of different workers of one sweep never meet


def open_study(
    spec: SweepSpec, name: str, storage_url: str, *, budget: int | None, create: bool, worker_index: int = 0,
    target: float | None = None,
) -> SweepStudy:
    """Create or load the sweep `name`; StudyError when it ran before with another spec.

    The sampler's seed moves on with the trials already in the study (a resumed sweep continues
    its sequence instead of repeating it) and with `worker_index` (array tasks that start together
    do not propose the same parameters).
    """
    storage = open_storage(storage_url)
    existing = _load(storage, name)
    if existing is None and not create:
        raise StudyError(f"no sweep named {name!r} in {shown_url(storage_url)}")
    reseed = (len(existing.trials) if existing is not None else 0) + WORKER_SEED_STRIDE * worker_index
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, directions=spec.search.directions, load_if_exists=True,
            sampler=make_sampler(spec, reseed=reseed), pruner=make_pruner(spec),
        )
        if existing is None and study.metric_names is None:
            with warnings.catch_warnings():  # experimental in Optuna, and stable since 3.2
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(spec.search.metric_names)  # what viewers (optuna-dashboard) label axes by
    except Exception as error:  # storage failures are one line for the user
        raise storage_problem(storage_url, error) from None
    fingerprint = study.user_attrs.get(FINGERPRINT_ATTR)
    if fingerprint is not None and fingerprint != spec.fingerprint():
        raise StudyError(
            f"sweep {name!r} ran before with another spec or --set values; give --name NEW to start a new sweep"
        )
    if fingerprint is None:
        study.set_user_attr(FINGERPRINT_ATTR, spec.fingerprint())
        study.set_user_attr(SPEC_ATTR, spec.to_json())
    if budget is None:
        budget = int(study.user_attrs.get(BUDGET_ATTR, spec.search.trials))
    if budget != study.user_attrs.get(BUDGET_ATTR):
        study.set_user_attr(BUDGET_ATTR, budget)
    if target is not None and target != study.user_attrs.get(TARGET_ATTR):
        study.set_user_attr(TARGET_ATTR, target)
    return SweepStudy(study, spec, storage_url)


def load_study(name: str, storage_url: str) -> optuna.Study:
    """An existing study, opened read-only (readers: `sweep show`, `sweeps`, the app): nothing in
    its storage is created or written."""
    try:
        storage = open_storage(storage_url, read_only=True)
    except NoStorage as missing:
        raise StudyError(f"no sweep named {name!r} ({missing})") from None
    try:
        study = _load(storage, name)
    except Exception as error:
        raise storage_problem(storage_url, error) from None
    if study is None:
        raise StudyError(f"no sweep named {name!r} in {shown_url(storage_url)}")
    return study


def delete_study(name: str, storage_url: str) -> None:
    """Delete study `name` (a sweep whose submission failed); nothing when it is not there."""
    try:
        optuna.delete_study(study_name=name, storage=open_storage(storage_url))
    except (KeyError, StudyError):
        return


def list_study_names(storage_url: str) -> list[str]:
    """The studies in a storage, read-only."""
    storage = open_storage(storage_url, read_only=True)
    try:
        return optuna.study.get_all_study_names(storage)
    except Exception as error:
        raise storage_problem(storage_url, error) from None


def trial_status(trial: FrozenTrial) -> RunStatus:
    """A trial's state in tuner-tui's words (a diverged or cancelled run says so)."""
    outcome = trial.system_attrs.get(OUTCOME_ATTR)
    if outcome is not None and trial.state is not TrialState.RUNNING:
        return RunStatus(outcome)
    return TRIAL_STATUS.get(trial.state, RunStatus.RUNNING)


def worst_value(spec: SweepSpec) -> float:
    """The objective of a diverged network: the worst there is in its direction."""
    if spec.search.objective == "val_accuracy":
        return 0.0
    return -math.inf if spec.search.direction == "maximize" else math.inf


def _load(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def spec_of(study: optuna.Study) -> Mapping[str, Any] | None:
    """The spec a study was started with (its JSON form), if it was started by tuner-tui."""
    value = study.user_attrs.get(SPEC_ATTR)
    return value if isinstance(value, Mapping) else None
