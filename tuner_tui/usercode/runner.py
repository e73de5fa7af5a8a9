"""Running a user's code: in a child process (`tuner_tui.usercode.child`), recorded here.

The parent starts the child, sends it the job, and records what it reports as it arrives: a
`running` row with a lease when it starts, each report committed at once, the end in one
transaction. Each report waits for a verdict, which a sweep's pruner gives (`judge`), so a pruned
trial stops before it trains on. A stop (`cancel`: Stop in the app, a signal, a worker stopping)
is sent at once and raises `tuner_tui.Stop` at the code's next report; a child that has not ended
`grace_s` later is killed and the run stored `cancelled` with what it reported. A child that dies
on its own is stored `failed`. The child never touches the store or a study, so nothing it does
can corrupt them.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol

from tuner_tui.engine.events import RunStatus
from tuner_tui.runs.child_commands import USER_CODE_CHILD
from tuner_tui.runs.lease import Heartbeat
from tuner_tui.runs.records import RunLabels, new_run_uid
from tuner_tui.runs.sqlite_access import StoreError
from tuner_tui.usercode.config import UserRunConfig
from tuner_tui.usercode.events import MetricsReported, UserEvent, UserFinished, UserLogged, UserStarted
from tuner_tui.usercode.protocol import Answer, Ask, Halt, Rejected, UserJob, Verdict

if TYPE_CHECKING:  # the session module imports the engine (and torch): the app must start without it
    from tuner_tui.runs.session import RunWriter

STOP_GRACE_S = 5.0  # as for built-in runs: a run asked to stop that has not ended after this is killed
MAX_LOG_LINES = 2000

ReportJudge = Callable[[MetricsReported], bool]  # True: prune the run (a sweep's pruner decides)


class UserCodeRejected(Exception):
    """The code could not be started (its module or function): bad input; `trace` is the user's own
    traceback when their module raised on import."""

    def __init__(self, reason: str, trace: str = "") -> None:
        super().__init__(reason)
        self.reason, self.trace = reason, trace


class ObjectiveHost(Protocol):
    """The parent's side of a plain Optuna objective's trial: suggestions, reports, its params."""

    def answer(self, ask: Ask) -> Answer: ...

    def report(self, report: MetricsReported) -> bool: ...

    def params(self) -> Mapping[str, Any]: ...


@dataclass
class UserOutcome:
    """How a run of user code ended and where it was stored (`run_id` None: the store failed)."""

    finished: UserFinished
    run_id: int | None
    uid: str
    store_error: str | None = None


@dataclass
class _Recording:
    """Writes a user run's events to `writer` as they come; a failed write is kept, never raised."""

    writer: RunWriter
    labels: RunLabels
    uid: str
    run_id: int | None = None
    store_error: str | None = None
    started: UserStarted | None = None
    reports: list[MetricsReported] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    heartbeat: Heartbeat | None = None
    began: float = field(default_factory=time.monotonic)

    def _write(self, action: Callable[[], object]) -> None:
        if self.store_error is not None:
            return
        try:
            action()
        except StoreError as error:
            self.store_error = str(error)

    def start(self, event: UserStarted) -> None:
        self.started = event

        def start() -> None:
            self.run_id = self.writer.start_user_run(event, labels=self.labels, uid=self.uid)
            run_id = self.run_id
            self.heartbeat = Heartbeat(lambda expiry: self.writer.renew_lease(run_id, expiry)).start()

        self._write(start)

    def report(self, event: MetricsReported) -> None:
        self.reports.append(event)
        if self.run_id is not None:
            run_id = self.run_id
            self._write(lambda: self.writer.record_report(run_id, event))

    def logged(self, event: UserLogged) -> None:
        self.log.append(event.text)
        del self.log[:-MAX_LOG_LINES]

    def finish(self, finished: UserFinished, config: UserRunConfig | None) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.run_id is not None:
            run_id = self.run_id
            self._write(lambda: self.writer.finish_user_run(run_id, finished, config=config))

    def ended_without_word(self, status: RunStatus, message: str) -> UserFinished:
        """The end of a run whose process was killed or died: what it reported, as `status`."""
        last: dict[str, float] = {}
        for report in self.reports:
            last.update(report.metrics)
        seconds = time.monotonic() - self.began
        return UserFinished(status, message, last, tuple(self.reports), sum(r.seconds for r in self.reports),
                            seconds, "\n".join(self.log))


class _Stopper(threading.Thread):
    """Tells the child to stop when `cancel` is set, and kills it if it has not ended `grace_s` later."""

    def __init__(self, send: Callable[[object], None], child: subprocess.Popen[bytes], cancel: threading.Event,
                 done: threading.Event, grace_s: float) -> None:
        super().__init__(daemon=True, name="user-code-stopper")
        self.send, self.child, self.cancel, self.done, self.grace_s = send, child, cancel, done, grace_s
        self.killed = False

    def run(self) -> None:
        while not self.cancel.wait(0.05):
            if self.done.is_set():
                return
        if self.done.is_set():
            return
        with contextlib.suppress(OSError, ValueError):
            self.send(Halt("cancelled"))
        if not self.done.wait(self.grace_s):
            self.killed = True
            with contextlib.suppress(OSError):
                self.child.kill()


def run_user_code(
    config: UserRunConfig,
    writer: RunWriter,
    on_event: Callable[[UserEvent], None],
    *,
    cancel: threading.Event,
    labels: RunLabels | None = None,
    judge: ReportJudge | None = None,
    uid: str | None = None,
    grace_s: float = STOP_GRACE_S,
    stderr: IO[bytes] | int | None = None,
    threads: int | None = None,
    objective: str | None = None,
    host: ObjectiveHost | None = None,
    trial_number: int | None = None,
) -> UserOutcome:
    """Run `config`'s function (or the Optuna `objective`, answering its trial through `host`) in a
    child process, recording it through `writer` and calling `on_event` for each event after that.

    UserCodeRejected when the code cannot be started (nothing is recorded); otherwise never raises.
    """
    recording = _Recording(writer, labels or RunLabels(), uid or new_run_uid())
    child = subprocess.Popen(list(USER_CODE_CHILD), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
    assert child.stdin is not None and child.stdout is not None
    commands, events = child.stdin, child.stdout
    lock = threading.Lock()

    def send(message: object) -> None:
        with lock:
            pickle.dump(message, commands)
            commands.flush()

    done = threading.Event()
    stopper = _Stopper(send, child, cancel, done, grace_s)
    finished: UserFinished | None = None
    try:
        send(UserJob(config, dict(os.environ), os.getcwd(), threads, objective, trial_number))
        stopper.start()
        while finished is None:
            try:
                message = pickle.load(events)
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            if isinstance(message, Rejected):
                raise UserCodeRejected(message.reason, message.trace)
            if isinstance(message, UserStarted):
                recording.start(message)
            elif isinstance(message, MetricsReported):
                recording.report(message)
                on_event(message)
                _answer_report(send, message, cancel, judge, host)
                continue
            elif isinstance(message, UserLogged):
                recording.logged(message)
            elif isinstance(message, Ask):
                send(host.answer(message) if host is not None else Answer(error="not an Optuna objective"))
                continue
            elif isinstance(message, UserFinished):
                finished = message
                params = host.params() if host is not None else None
                recording.finish(message, _with_params(config, params))
            on_event(message)
        if finished is None:
            code = child.wait()
            if stopper.killed:
                why = f"cancelled: it did not stop within {grace_s:g} s and was killed"
                finished = recording.ended_without_word(RunStatus.CANCELLED, why)
            elif cancel.is_set():
                finished = recording.ended_without_word(RunStatus.CANCELLED, "cancelled")
            else:
                why = f"failed: the process running the code ended (exit code {code}) before the run finished"
                finished = recording.ended_without_word(RunStatus.FAILED, why)
            if recording.started is None:
                raise UserCodeRejected(finished.message)
            params = host.params() if host is not None else None
            recording.finish(finished, _with_params(config, params))
            on_event(finished)
    finally:
        done.set()
        for pipe in (commands, events):
            with contextlib.suppress(OSError):
                pipe.close()
        try:
            child.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if recording.heartbeat is not None:
            recording.heartbeat.stop()
    return UserOutcome(finished, recording.run_id, recording.uid, recording.store_error)


def _answer_report(
    send: Callable[[object], None], report: MetricsReported, cancel: threading.Event, judge: ReportJudge | None,
    host: ObjectiveHost | None,
) -> None:
    """The verdict on a report: stop when cancelled; prune when the sweep's pruner says so (a plain
    objective is only told, as `trial.should_prune()` tells it)."""
    if cancel.is_set():
        send(Verdict(stop="cancelled"))
        return
    if host is not None:
        send(Verdict(prune=host.report(report)))
        return
    prune = judge(report) if judge is not None else False
    send(Verdict(stop="pruned" if prune else None))


def _with_params(config: UserRunConfig, params: Mapping[str, Any] | None) -> UserRunConfig | None:
    """An objective's trial config once its params are known (None: nothing to add)."""
    if params is None:
        return None
    return UserRunConfig(config.model, tuple(params.items()), config.device, config.data_root, config.validation)
