"""Training in a child process, so that the app's drawing and the training loop share no GIL.

The child (`python -m tuner_tui.runs.training_process`) runs the same path as `--no-ui`
(`run_recorded`, writing the same store itself) and sends every event back, pickled, on its
stdout; the parent relays them and forwards a stop request on the child's stdin. A child is
started ahead of time as a standby that has already imported torch (`warm_up()`, and again after
each run), so a run does not wait for that import. A child whose parent goes away (stdin closed)
stops: an orphaned run is stored as cancelled, an unused standby just exits.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from engine.config import RunConfig
from engine.events import Event, Finished
from tuner_tui.runs.store import ResultsStore, RunLabels

CANCEL = "cancel"
READY = "ready"
CANCEL_POLL_S = 0.05


class TrainingRunner(Protocol):
    """How the app runs a config: in a child process (`training_process`), or a scripted fake in tests.

    Calls `on_event` for every event after the store has seen it; raises RunRejectedError for bad
    input found while preparing. It may have a `warm_up()`, called off the UI thread.
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
    """The child found bad input while preparing the run (the message is one line)."""


class TrainingProcessError(Exception):
    """The training process ended without reporting how the run ended."""


@dataclass(frozen=True)
class _Rejected:
    reason: str


@dataclass(frozen=True)
class _Job:
    config: RunConfig
    store_path: str
    labels: RunLabels
    force: bool
    environ: dict[str, str]
    cwd: str


class _Child:
    """A started child process, its pipes, and a file that collects its output."""

    def __init__(self) -> None:
        self.output = tempfile.TemporaryFile()
        # -P: the child's import path holds the installed packages only, never the directory the app
        # was started in (a stray platformdirs.py there must not run).
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "tuner_tui.runs.training_process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.output,
        )
        self._ready = False

    def wait_ready(self) -> None:
        """Block until the child has imported torch and the engine."""
        if not self._ready:
            message = self.receive()
            if message != READY:
                raise self.failure()
            self._ready = True

    def send(self, message: object) -> None:
        pickle.dump(message, self.process.stdin)
        self.process.stdin.flush()

    def receive(self) -> Any:
        """The next message, or None when the child has closed its end."""
        try:
            return pickle.load(self.process.stdout)
        except (EOFError, pickle.UnpicklingError, OSError):
            return None

    def failure(self) -> TrainingProcessError:
        """Why the child ended early: exit code and the last line it wrote."""
        code = self.process.wait()
        self.output.seek(0)
        lines = self.output.read().decode(errors="replace").strip().splitlines()
        last_words = f": {lines[-1].strip()}" if lines else ""
        return TrainingProcessError(f"the training process ended (exit code {code}) before the run finished{last_words}")

    def close(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.output.close()


_standby: _Child | None = None
_runs_in_progress = 0  # a standby's torch import is not started while a run could feel it
_standby_lock = threading.Lock()


def warm_up(*, wait: bool = False) -> None:
    """Start a standby child (it imports torch) so the next run does not wait for that.

    Does nothing while a run is in progress (the run starts the next standby when it ends). With
    `wait`, return only once the standby is ready (benchmarks keep its import out of their timings).
    """
    global _standby
    with _standby_lock:
        if _runs_in_progress:
            return
        if _standby is not None and _standby.process.poll() is not None:
            _standby.close()
            _standby = None
        if _standby is None:
            _standby = _Child()
        if wait:
            _standby.wait_ready()


def _take_standby() -> _Child:
    global _standby, _runs_in_progress
    with _standby_lock:
        child, _standby = _standby, None
        _runs_in_progress += 1
    try:
        if child is not None and child.process.poll() is not None:
            child.close()  # a standby that died waiting
            child = None
        return child or _Child()
    except BaseException:
        _run_ended()
        raise


def _run_ended() -> None:
    global _runs_in_progress
    with _standby_lock:
        _runs_in_progress -= 1


def run_in_child_process(
    config: RunConfig,
    store_path: Path,
    on_event: Callable[[Event], None],
    cancel: threading.Event,
    *,
    labels: RunLabels | None = None,
    force: bool = False,
) -> Finished:
    """Run `config` in a child process that records it in the store at `store_path`.

    Calls `on_event` (on this thread) for every event, after the store has seen it. Raises
    RunRejectedError for bad input, and TrainingProcessError when the child dies without
    finishing the run (its store row, if it had one, is then marked interrupted).
    """
    child = _take_standby()
    done = threading.Event()
    try:
        child.wait_ready()
        child.send(_Job(config, str(store_path), labels or RunLabels(), force, dict(os.environ), os.getcwd()))
        threading.Thread(target=_forward_cancel, args=(child, cancel, done), daemon=True).start()
        while True:
            message = child.receive()
            if isinstance(message, _Rejected):
                raise RunRejectedError(message.reason)
            if message is None:
                failure = child.failure()  # reaps the child: a zombie would still count as alive
                _mark_interrupted(store_path)
                raise failure
            on_event(message)
            if isinstance(message, Finished):
                return message
    finally:
        done.set()
        child.close()
        _run_ended()
        warm_up()


def _forward_cancel(child: _Child, cancel: threading.Event, done: threading.Event) -> None:
    while not done.is_set():
        if cancel.wait(CANCEL_POLL_S):
            try:
                child.send(CANCEL)
            except OSError:
                pass  # the child has gone; the relay sees that
            return


def _mark_interrupted(store_path: Path) -> None:
    from tuner_tui.runs.store import ResultsStore

    ResultsStore(store_path).close()  # opening a store marks the rows of dead processes interrupted


# --- the child --------------------------------------------------------------------------


def _send(stream: IO[bytes], message: object) -> None:
    pickle.dump(message, stream)
    stream.flush()


def _wait_for_cancel(commands: IO[bytes], cancel: threading.Event) -> None:
    """Set `cancel` when the parent asks, or when it has gone (an orphaned run stops itself)."""
    try:
        pickle.load(commands)
    except (EOFError, OSError, pickle.UnpicklingError):
        pass
    cancel.set()


def child_main() -> int:
    """Import the engine, say ready, take one job from stdin, run it, report on stdout."""
    events = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the events
    commands = sys.stdin.buffer
    # A closed terminal or a Ctrl+C reaches the whole process group; the child ends through its
    # parent instead (stdin closes), so that its run is stored as cancelled, not cut off.
    for name in ("SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)

    from tuner_tui.runs.session import run_recorded
    from tuner_tui.runs.store import ResultsStore

    _send(events, READY)
    try:
        job: _Job = pickle.load(commands)
    except (EOFError, OSError, pickle.UnpicklingError):
        return 0  # the app went away before it needed this standby
    os.environ.clear()
    os.environ.update(job.environ)
    os.chdir(job.cwd)  # a relative data root means the same folder as in the app
    cancel = threading.Event()
    threading.Thread(target=_wait_for_cancel, args=(commands, cancel), daemon=True).start()

    def report(event: Event) -> None:
        try:
            _send(events, event)
        except OSError:  # the app has gone: stop the run (it is stored as cancelled)
            cancel.set()

    try:
        with ResultsStore(job.store_path) as store:
            run_recorded(job.config, store, report, cancel=cancel, labels=job.labels, force=job.force)
    except Exception as error:
        try:
            _send(events, _Rejected(str(error)))
        except OSError:
            pass  # nobody is listening any more
    return 0


if __name__ == "__main__":
    # Run the package's copy of this module, so what the child pickles names `tuner_tui.…`, not `__main__`.
    from tuner_tui.runs.training_process import child_main as package_child_main

    raise SystemExit(package_child_main())
