"""Training in a child process, so that the app's drawing and the training loop share no GIL.

The child (`tuner_tui.runs.training_child`) runs the same path as `--no-ui`
(`prepare_and_record`, writing the same store itself) and sends every event back, pickled, on its
stdout; the parent relays them and forwards a stop request on the child's stdin. A child is
started ahead of time as a standby that has already imported torch (`warm_up()`, and again after
each run), so a run does not wait for that import.

A stop always stops. Loading data, timing the test pass or one huge step can keep a run from
seeing its stop for minutes, so a child that has not ended `STOP_GRACE_S` after it was asked is
killed, and the parent stores the run as `cancelled` with the epochs it finished (a run stopped
before it started is stored as `cancelled` with none). A child whose parent goes away (its stdin
closes) stops the same way, on its own: an orphaned run is stored as cancelled and the child
exits within the grace period; an unused standby just exits. Children still alive when the app's
interpreter exits are told to stop and then killed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import EpochEnd, Event, Finished, Progress, Resources, RunStatus, Started
from tuner_tui.runs.child_commands import TRAINING_CHILD
from tuner_tui.runs.records import EpochRecord, RunLabels, RunRecord, StartColumns
from tuner_tui.runs.store import ResultsStore

CANCEL = "cancel"
READY = "ready"
POLL_S = 0.05
STOP_GRACE_S = 5.0  # a run asked to stop (or orphaned) that has not ended after this is killed
Clock = Callable[[], float]


class TrainingRunner(Protocol):
    """How the app runs a config: in a child process (`training_process`), or a scripted fake in tests.

    Calls `on_event` for every event after the store has seen it; raises RunRejectedError for bad
    input found while preparing (`force` skips the check that the run fits in memory). A stop set
    on `cancel` ends the run within a grace period, whatever it is doing. It may have a
    `warm_up()`, called off the UI thread.
    """

    def __call__(
        self,
        config: RunConfig,
        store: ResultsStore,
        on_event: Callable[[Event], None],
        cancel: threading.Event,
        *,
        labels: RunLabels | None = None,
        force: bool = False,
    ) -> object: ...


class RunRejectedError(Exception):
    """The child found bad input while preparing the run (the message is one line).

    `field` names the config field at fault (`memory` for a run that would not fit), when known.
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


class TrainingProcessError(Exception):
    """The training process ended without reporting how the run ended."""


@dataclass(frozen=True)
class Rejected:
    reason: str
    field: str | None = None


@dataclass(frozen=True)
class TrainingJob:
    config: RunConfig
    store_path: str
    labels: RunLabels
    force: bool
    environ: dict[str, str]
    cwd: str
    since: float  # wall time before the job was sent: the child's run row starts after it
    threads: int | None = None  # torch's CPU threads for the run (None: torch's default)


def wait_on_clock(done: threading.Event, seconds: float, clock: Clock, poll_s: float = POLL_S) -> bool:
    """Wait until `done` is set or `seconds` have passed on `clock`; returns whether `done` was set."""
    deadline = clock() + seconds
    while not done.wait(poll_s):
        if clock() >= deadline:
            return done.is_set()
    return True


class _Child:
    """A started child process, its pipes, and a file that collects its output."""

    def __init__(self, command: Sequence[str]) -> None:
        # Lives as long as the child (closed in close()); a `with` block cannot span that.
        self.output = tempfile.TemporaryFile()  # noqa: SIM115
        # -P: the child's import path holds the installed packages only, never the directory the app
        # was started in (a stray platformdirs.py there must not run).
        self.process = subprocess.Popen(
            list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.output
        )
        if self.process.stdin is None or self.process.stdout is None:
            raise TrainingProcessError("the training process has no pipes")
        self.commands: IO[bytes] = self.process.stdin
        self.events: IO[bytes] = self.process.stdout
        self._ready = False
        self.has_job = False
        _LIVE_CHILDREN.add(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self) -> bool:
        """Block until the child has imported torch and the engine; False when it ended instead."""
        if not self._ready:
            self._ready = self.receive() == READY
        return self._ready

    def send(self, message: object) -> None:
        pickle.dump(message, self.commands)
        self.commands.flush()

    def send_job(self, job: TrainingJob) -> None:
        self.has_job = True
        self.send(job)

    def ask_to_stop(self) -> None:
        with contextlib.suppress(OSError):  # the child has gone; the relay sees that
            self.send(CANCEL)

    def receive(self) -> Any:
        """The next message, or None when the child has closed its end."""
        try:
            return pickle.load(self.events)
        except (EOFError, pickle.UnpicklingError, OSError):
            return None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()

    def failure(self) -> TrainingProcessError:
        """Why the child ended early: exit code and the last line it wrote."""
        code = self.process.wait()
        self.output.seek(0)
        lines = self.output.read().decode(errors="replace").strip().splitlines()
        last_words = f": {lines[-1].strip()}" if lines else ""
        return TrainingProcessError(
            f"the training process ended (exit code {code}) before the run finished{last_words}"
        )

    def close(self, grace_s: float = STOP_GRACE_S) -> None:
        """Close its pipes (a child on its own stops), wait `grace_s` for it, then kill it."""
        for pipe in (self.commands, self.events):
            with contextlib.suppress(OSError):
                pipe.close()
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.output.close()
        _LIVE_CHILDREN.discard(self)


_LIVE_CHILDREN: set[_Child] = set()


@atexit.register
def _end_children() -> None:
    """No child outlives the app: a standby is killed; a run is told its parent is going (it stores
    itself as cancelled) and killed if still there after the grace period."""
    for child in list(_LIVE_CHILDREN):
        if not child.has_job:
            child.kill()
        child.close()


class _Standby:
    """At most one child waiting with torch imported; none is started while a run is in progress."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.child: _Child | None = None
        self.runs_in_progress = 0

    def warm_up(self, *, wait: bool) -> None:
        with self.lock:
            if self.runs_in_progress:
                return
            if self.child is not None and self.child.process.poll() is not None:
                self.child.close()
                self.child = None
            if self.child is None:
                self.child = _Child(TRAINING_CHILD)
            if wait:
                self.child.wait_ready()

    def take(self) -> _Child:
        """The standby (or a new child) for a run; call `run_ended()` after it."""
        with self.lock:
            child, self.child = self.child, None
            self.runs_in_progress += 1
        try:
            if child is not None and child.process.poll() is not None:
                child.close()  # a standby that died waiting
                child = None
            return child or _Child(TRAINING_CHILD)
        except BaseException:
            self.run_ended()
            raise

    def run_ended(self) -> None:
        with self.lock:
            self.runs_in_progress -= 1


_STANDBY = _Standby()


def warm_up(*, wait: bool = False) -> None:
    """Start a standby child (it imports torch) so the next run does not wait for that.

    Does nothing while a run is in progress (the run starts the next standby when it ends). With
    `wait`, return only once the standby is ready (benchmarks keep its import out of their timings).
    """
    _STANDBY.warm_up(wait=wait)


# --- what a stopped run leaves in the store ------------------------------------------------


@dataclass
class RunTrace:
    """What a run has reported so far: enough to store it as cancelled when its process is killed."""

    config: RunConfig
    labels: RunLabels
    started: Started | None = None
    epochs: list[EpochEnd] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    began: float = field(default_factory=time.monotonic)

    def add(self, event: Event) -> None:
        if isinstance(event, Started):
            self.started = event
        elif isinstance(event, Progress):
            self.losses.append(event.recent_loss)
        elif isinstance(event, EpochEnd):
            self.epochs.append(event)

    def cancelled(self, why: str, stored: RunRecord | None) -> Finished:
        """The run as cancelled now, with the epochs the store kept (or the ones reported); `why`
        is added to its message when not empty."""
        epochs = [_epoch_event(e) for e in stored.epochs] if stored is not None else self.epochs
        last = epochs[-1] if epochs else None
        began = self.started is not None or stored is not None
        where = f"in epoch {len(epochs) + 1}" if began else "before training started"
        params = self.started.params if self.started else (stored.params if stored else _params(self.config))
        return Finished(
            status=RunStatus.CANCELLED, message=f"stopped {where}" + (f" ({why})" if why else ""),
            train_loss=last.train_loss if last else None, train_accuracy=last.train_accuracy if last else None,
            test_accuracy=last.test_accuracy if last else None, params=params,
            resources=Resources(
                train_time_s=sum(e.seconds for e in epochs), total_time_s=time.monotonic() - self.began
            ),
            epochs=tuple(epochs), loss_curve=tuple(self.losses),
        )


def _params(config: RunConfig) -> int:
    from tuner_tui.engine.architecture import count_parameters
    from tuner_tui.engine.dataset_specs import DATASET_SPECS

    spec = DATASET_SPECS[config.dataset]
    return count_parameters(spec.features, config.hidden, spec.classes)


def record_stopped_run(store_path: str | Path, pid: int, since: float, trace: RunTrace, why: str) -> Finished:
    """Store as cancelled the run that process `pid` started after `since` (a row is made if it had
    none yet), unless it already ended there; returns how it ended."""
    with ResultsStore(store_path) as store:
        # A killed child's row is already marked interrupted by opening the store: it is ours to finish.
        row = next((r for r in store.list_runs(limit=100) if r.pid == pid and r.started_at >= since), None)
        if row is not None and row.status not in (RunStatus.RUNNING, RunStatus.INTERRUPTED):
            return _finished_from(row)
        finished = trace.cancelled(why, row)
        if row is None:
            started = trace.started
            start = StartColumns(
                device_name=started.device_name if started else trace.config.device, params=finished.params,
                data_source=started.data_source if started else None,
            )
            run_id = store.start_run(trace.config, start, labels=trace.labels)
        else:
            run_id = row.id
        store.finish_run(run_id, finished)
        return finished


def _finished_from(record: RunRecord) -> Finished:
    """The Finished of a run the store has already seen end."""
    return Finished(
        status=record.status, message=record.message, train_loss=record.train_loss,
        train_accuracy=record.train_accuracy, test_accuracy=record.test_accuracy, params=record.params,
        resources=Resources(train_time_s=record.train_time_s or 0.0, total_time_s=record.total_time_s or 0.0),
        epochs=tuple(_epoch_event(e) for e in record.epochs), loss_curve=record.loss_curve,
        diverged_step=record.diverged_step,
    )


# --- the parent ---------------------------------------------------------------------------


class _Stopper(threading.Thread):
    """Forwards a stop to the child, and kills it when it has not ended `grace_s` later on `clock`.

    A stop that comes before the job was sent kills the child at once: it holds nothing yet.
    """

    def __init__(
        self, child: _Child, cancel: threading.Event, done: threading.Event, grace_s: float, clock: Clock
    ) -> None:
        super().__init__(daemon=True)
        self.child, self.cancel, self.done = child, cancel, done
        self.grace_s, self.clock = grace_s, clock
        self.lock = threading.Lock()
        self.killed = False

    def send_job(self, job: TrainingJob) -> bool:
        """Send the job unless the run was stopped before; whether it was sent."""
        with self.lock:
            if self.cancel.is_set():
                return False
            self.child.send_job(job)
            return True

    def run(self) -> None:
        while not self.cancel.wait(POLL_S):
            if self.done.is_set():
                return
        with self.lock:
            if self.done.is_set():
                return
            if not self.child.has_job:
                self._kill()
                return
        self.child.ask_to_stop()
        if not wait_on_clock(self.done, self.grace_s, self.clock):
            self._kill()

    def _kill(self) -> None:
        self.killed = True
        self.child.kill()


def run_in_child_process(
    config: RunConfig,
    store_path: str | Path,
    on_event: Callable[[Event], None],
    cancel: threading.Event,
    *,
    labels: RunLabels | None = None,
    force: bool = False,
    stop_grace_s: float = STOP_GRACE_S,
    clock: Clock = time.monotonic,
    child_command: Sequence[str] | None = None,
    threads: int | None = None,
) -> Finished:
    """Run `config` in a child process that records it in the store at `store_path`.

    Calls `on_event` (on this thread) for every event, after the store has seen it. A stop set on
    `cancel` is forwarded; a child still running `stop_grace_s` later (on `clock`) is killed and the
    run stored as cancelled. Raises RunRejectedError for bad input, and TrainingProcessError when
    the child dies on its own without finishing the run (its row, if it had one, is then marked
    interrupted). `child_command` replaces the training process (tests run a stand-in); `threads`
    sets torch's CPU threads in the child (runs side by side take one each).
    """
    labels = labels or RunLabels()
    child = _STANDBY.take() if child_command is None else _Child(child_command)
    done = threading.Event()
    stopper = _Stopper(child, cancel, done, stop_grace_s, clock)
    trace = RunTrace(config, labels)
    since = time.time()
    try:
        stopper.start()
        job = TrainingJob(config, str(store_path), labels, force, dict(os.environ), os.getcwd(), since, threads)
        if child.wait_ready() and _sent(stopper, job):
            while (message := child.receive()) is not None:
                if isinstance(message, Rejected):
                    raise RunRejectedError(message.reason, message.field)
                trace.add(message)
                on_event(message)
                if isinstance(message, Finished):
                    return message
        failure = child.failure()  # reaps the child: a zombie would still count as alive
        if not (stopper.killed or cancel.is_set()):
            _mark_interrupted(store_path)
            raise failure
        if stopper.killed and child.has_job:
            why = f"the training process did not stop within {stop_grace_s:g} s and was killed"
        else:
            why = "" if not child.has_job else str(failure)
        finished = record_stopped_run(store_path, child.pid, since, trace, why)
        on_event(finished)
        return finished
    finally:
        done.set()
        child.close()
        if child_command is None:
            _STANDBY.run_ended()
            warm_up()


def _sent(stopper: _Stopper, job: TrainingJob) -> bool:
    try:
        return stopper.send_job(job)
    except OSError:
        return False  # the child has gone: the caller finds out how


def _mark_interrupted(store_path: str | Path) -> None:
    ResultsStore(store_path).close()  # opening a store marks the rows of dead processes interrupted


def _epoch_event(record: EpochRecord) -> EpochEnd:
    """A stored epoch of a built-in run as the event it was recorded from (a user run's metrics aside)."""
    return EpochEnd(**{key: value for key, value in vars(record).items() if key != "metrics"})
