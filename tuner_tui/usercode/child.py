"""The child process a user's code runs in: `python -P -m tuner_tui.usercode.child`.

It takes one `UserJob` on stdin, imports the function the model file names (only from that file,
or the named module from the installed environment), calls it with the config and a `Run`, and
sends the run's events back pickled on its original stdout. Whatever the code prints (Python's
stdout and stderr) becomes log lines; what it writes to the file descriptors directly goes to
stderr, never into the events. It never opens the results store or a study: the parent records.

The child ignores SIGINT, SIGTERM and SIGHUP (they reach the whole process group, from a terminal or
`scancel`): the parent, which got them too, tells it to stop and kills it after a grace period; it
dies with its parent (`PR_SET_PDEATHSIG`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import pickle
import queue
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from tuner_tui.engine.events import RunStatus
from tuner_tui.usercode.api import Dataset, Stop
from tuner_tui.usercode.config import UserRunConfig
from tuner_tui.usercode.events import MetricsReported, UserFinished, UserLogged, UserStarted
from tuner_tui.usercode.model_file import ModelFile, load_model_file
from tuner_tui.usercode.protocol import Answer, Halt, Rejected, UserJob, Verdict

ORPHAN_GRACE_S = 10.0  # the parent went away: the code gets this long to reach a report and stop
_METRIC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_PR_SET_PDEATHSIG = 1


class _Channel:
    """The child's end of the pipes: events out, commands in (read by a watcher thread)."""

    def __init__(self, events: IO[bytes], commands: IO[bytes]) -> None:
        self.events = events
        self.commands = commands
        self.lock = threading.Lock()
        self.replies: queue.Queue[Verdict | Answer | None] = queue.Queue()
        self.halt: str | None = None

    def send(self, message: object) -> None:
        with self.lock:
            pickle.dump(message, self.events)
            self.events.flush()

    def watch(self) -> None:
        """Take the parent's commands until it closes the pipe (it has gone: stop, then exit)."""
        while True:
            try:
                message = pickle.load(self.commands)
            except (EOFError, OSError, ValueError, pickle.UnpicklingError):
                break
            if isinstance(message, Halt):
                self.halt = self.halt or message.reason
            elif isinstance(message, Verdict | Answer):
                self.replies.put(message)
        self.halt = self.halt or "cancelled"
        self.replies.put(None)
        time.sleep(ORPHAN_GRACE_S)
        os._exit(0)

    def reply(self) -> Verdict | Answer:
        answer = self.replies.get()
        if answer is None:
            raise Stop("cancelled")
        return answer


class _LogStream(io.TextIOBase):
    """sys.stdout / sys.stderr for the user's code: each whole line becomes a log line of the run."""

    def __init__(self, channel: _Channel) -> None:
        self.channel = channel
        self.pending = ""
        self.lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self.lock:
            self.pending += text
            *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.channel.send(UserLogged(line))
        return len(text)

    def flush(self) -> None:
        with self.lock:
            line, self.pending = self.pending, ""
        if line:
            self.channel.send(UserLogged(line))


class ChildRun:
    """The `Run` a user's function is given (see `tuner_tui.usercode.api.Run`)."""

    def __init__(self, channel: _Channel, config: UserRunConfig, device: str) -> None:
        self._channel = channel
        self._config = config
        self._device = device
        self._last = time.perf_counter()
        self.reports: list[MetricsReported] = []
        self.train_seconds = 0.0
        self.prune_answer = False
        self.stopped: str | None = None  # why a report raised Stop (the code may catch it and return)

    @property
    def config(self) -> Mapping[str, object]:
        return self._config.fields

    @property
    def device(self) -> str:
        return self._device

    @property
    def data_root(self) -> str | None:
        return self._config.data_root

    def report(self, epoch: int, **metrics: float) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise TypeError(f"run.report: epoch must be a whole number, got {epoch!r}")
        clean = checked_metrics(metrics, "run.report")
        if self._channel.halt:
            self.stopped = self._channel.halt
            raise Stop(self.stopped)
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        self.train_seconds += seconds
        reported = MetricsReported(epoch, clean, seconds, self._config.epochs)
        self.reports.append(reported)
        self._channel.send(reported)
        verdict = self._channel.reply()
        if isinstance(verdict, Verdict):
            self.prune_answer = verdict.prune
            if verdict.stop:
                self.stopped = verdict.stop
                raise Stop(verdict.stop)

    def log(self, text: str) -> None:
        for line in str(text).splitlines() or [""]:
            self._channel.send(UserLogged(line))

    def load_dataset(self, name: str) -> Dataset:
        from tuner_tui.usercode.datasets import load_for_user

        return load_for_user(name, self._config.data_root, self._config.validation)


def checked_metrics(metrics: Mapping[str, Any], where: str) -> dict[str, float]:
    """Metric names as identifiers and values as numbers (NaN and inf kept: a diverged loss says so)."""
    clean: dict[str, float] = {}
    for name, raw in metrics.items():
        if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
            raise TypeError(f"{where}: metric names are identifiers, got {name!r}")
        value = raw.item() if hasattr(raw, "item") and callable(raw.item) else raw  # a 0-d tensor, a numpy number
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{where}: {name} must be a number, got {type(value).__name__}")
        clean[name] = float(value)
    return clean


def _import_function(model: ModelFile) -> tuple[Callable[..., Any], str | None]:
    """The model file's function and the file its module came from; Rejected on failure."""
    target = model.train.rsplit(":", 1)[0]
    file = model.function_file
    try:
        module = _module_from_file(file) if file is not None else importlib.import_module(target)
    except Exception as error:
        trace = traceback.format_exc()
        raise _Refused(f"{model.path}: train: importing {target} raised {_error_line(error)}", trace) from None
    function = getattr(module, model.function_name, None)
    if function is None:
        raise _Refused(f"{model.path}: train: {target} has no function {model.function_name!r}")
    if not callable(function):
        raise _Refused(f"{model.path}: train: {target}:{model.function_name} is not callable")
    return function, getattr(module, "__file__", None)


def _module_from_file(file: Path) -> ModuleType:
    """Import a `.py` file under its own name (its folder first on the path, for its own imports)."""
    folder = str(file.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = file.stem if file.stem not in sys.modules and file.stem.isidentifier() else f"_tuner_tui_user_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _Refused(Exception):
    def __init__(self, reason: str, trace: str = "") -> None:
        super().__init__(reason)
        self.reason, self.trace = reason, trace


def _error_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1]}" if text else type(error).__name__


def _finish(channel: _Channel, run: ChildRun, status: RunStatus, message: str, log: str,
            returned: Mapping[str, float], started: float) -> None:
    last: dict[str, float] = {}
    for reported in run.reports:
        last.update(reported.metrics)
    channel.send(UserFinished(
        status=status, message=message, metrics={**last, **returned}, reports=tuple(run.reports),
        train_time_s=time.perf_counter() - started, total_time_s=time.perf_counter() - started, log=log,
        returned=dict(returned),
    ))


def _call(channel: _Channel, job: UserJob, run: ChildRun, function: Callable[..., Any], trial: Any) -> None:
    """Call the user's function and send how it ended."""
    started = time.perf_counter()
    try:
        result = function(trial) if job.objective else function(job.config.fields, run)
        returned = _returned(result, objective=job.objective is not None)
    except Stop as stop:
        status = RunStatus.PRUNED if stop.reason == "pruned" else RunStatus.CANCELLED
        where = f"after epoch {run.reports[-1].epoch}" if run.reports else "before its first report"
        _finish(channel, run, status, f"{stop.reason} {where}", "", {}, started)
        return
    except BaseException as error:  # the user's code failed: its last line, and its traceback in the log
        if _is_trial_pruned(error):
            where = f"after step {run.reports[-1].epoch}" if run.reports else "before its first report"
            _finish(channel, run, RunStatus.PRUNED, f"pruned {where}", "", {}, started)
            return
        # The user's frames only: the first frame is this module calling their function.
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__.tb_next
                                                   if error.__traceback__ else None))
        for line in trace.rstrip().splitlines():
            channel.send(UserLogged(line))
        _finish(channel, run, RunStatus.FAILED, _error_line(error), trace, {}, started)
        return
    if run.stopped:  # it caught Stop and returned: the run still ended the way it was told
        status = RunStatus.PRUNED if run.stopped == "pruned" else RunStatus.CANCELLED
        _finish(channel, run, status, f"{run.stopped} after epoch {run.reports[-1].epoch}", "", returned, started)
        return
    epochs = len(run.reports)
    _finish(channel, run, RunStatus.COMPLETED, f"{epochs} report{'' if epochs == 1 else 's'}", "", returned, started)


def _returned(result: Any, *, objective: bool) -> dict[str, float]:
    if objective:
        if hasattr(result, "item") and callable(result.item):
            result = result.item()
        if isinstance(result, bool) or not isinstance(result, int | float):
            raise TypeError(f"the objective must return a number, got {type(result).__name__}")
        return {"value": float(result)}
    if result is None:
        return {}
    if not isinstance(result, Mapping):
        raise TypeError(f"the training function must return a dict of metrics or None, got {type(result).__name__}")
    return checked_metrics(result, "the returned metrics")


def _is_trial_pruned(error: BaseException) -> bool:
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(error, optuna.TrialPruned)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def child_main() -> int:
    """Take one job, run it, report; the exit code is 0 whatever the code did (the events say)."""
    events = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # what the code writes to fd 1 cannot corrupt the events
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    _die_with_parent()
    commands = sys.stdin.buffer
    try:
        job = pickle.load(commands)
    except (EOFError, OSError, pickle.UnpicklingError):
        return 0
    if not isinstance(job, UserJob):
        return 0
    channel = _Channel(events, commands)
    os.environ.clear()
    os.environ.update(job.environ)
    os.chdir(job.cwd)
    try:
        if job.objective:
            from tuner_tui.usercode.objective import objective_model

            model = objective_model(job.objective)
        else:
            model = load_model_file(job.config.model)
        function, module_file = _import_function(model)
        from tuner_tui.usercode.devices import resolve_user_device

        device, device_name = resolve_user_device(job.config.device)
        if job.threads is not None:
            import torch

            torch.set_num_threads(job.threads)
    except _Refused as refused:
        channel.send(Rejected(refused.reason, refused.trace))
        return 0
    except Exception as error:  # a model file changed since it was checked, or a device that is not there
        channel.send(Rejected(_error_line(error)))
        return 0
    from tuner_tui.usercode.origin import code_origin

    headline, direction = model.headline
    channel.send(UserStarted(job.config, device_name, code_origin(model, module_file), model.title,
                             headline, direction))
    threading.Thread(target=channel.watch, daemon=True, name="parent-watch").start()
    run = ChildRun(channel, job.config, device)
    trial = None
    if job.objective:
        from tuner_tui.usercode.objective import TrialProxy

        trial = TrialProxy(run, channel, job.trial_number or 0)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = _LogStream(channel)
    try:
        _call(channel, job, run, function, trial)
    finally:
        sys.stdout.flush()
        sys.stdout, sys.stderr = stdout, stderr
    # Leave now: the parent has the run's end, and the thread reading its commands is still blocked
    # on stdin, which interpreter shutdown would trip over.
    with contextlib.suppress(OSError):
        events.flush()
    os._exit(0)


if __name__ == "__main__":
    # Run the package's copy of this module, so what the child pickles names `tuner_tui.…`, not `__main__`.
    from tuner_tui.usercode.child import child_main as package_child_main

    raise SystemExit(package_child_main())
