"""The training child process: take one job from stdin, run it as `--no-ui` would, report on stdout.

Started by `tuner_tui.runs.training_process` (the parent's half, in the app) as a standby that has
imported torch before a run needs it. Events go back pickled on the original stdout; anything a
library prints goes to stderr instead, so it cannot corrupt them. A stop arrives on stdin; when
stdin closes (the app went away) the run stops on its own and is stored as cancelled.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

from tuner_tui.engine.events import Event
from tuner_tui.runs.store import ResultsStore
from tuner_tui.runs.training_process import (
    CANCEL,
    READY,
    STOP_GRACE_S,
    Clock,
    Rejected,
    RunTrace,
    TrainingJob,
    record_stopped_run,
    wait_on_clock,
)


def _send(stream: IO[bytes], message: object) -> None:
    pickle.dump(message, stream)
    stream.flush()


def watch_parent(
    commands: IO[bytes],
    cancel: threading.Event,
    run_over: threading.Event,
    on_abandoned: Callable[[], None],
    *,
    grace_s: float = STOP_GRACE_S,
    clock: Clock = time.monotonic,
) -> None:
    """Set `cancel` when the parent asks. When the parent has gone (stdin closed), set it too, give
    the run `grace_s` to end, and call `on_abandoned` if it has not (an orphan must not run on)."""
    while True:
        try:
            message = pickle.load(commands)
        except (EOFError, OSError, ValueError, pickle.UnpicklingError):  # ValueError: stdin closed under us
            break
        if message == CANCEL:
            cancel.set()
    cancel.set()
    if not wait_on_clock(run_over, grace_s, clock):
        on_abandoned()


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

    from tuner_tui.runs.session import prepare_and_record

    _send(events, READY)
    try:
        job = pickle.load(commands)
    except (EOFError, OSError, pickle.UnpicklingError):
        return 0  # the app went away before it needed this standby
    if not isinstance(job, TrainingJob):
        return 0
    os.environ.clear()
    os.environ.update(job.environ)
    os.chdir(job.cwd)  # a relative data root means the same folder as in the app
    if job.threads is not None:  # several runs side by side: one thread each (torch is imported by now)
        import torch

        torch.set_num_threads(job.threads)
    cancel, run_over = threading.Event(), threading.Event()
    trace = RunTrace(job.config, job.labels)

    def abandoned() -> None:
        with contextlib.suppress(Exception):  # nothing can be reported any more: store what we can
            record_stopped_run(
                job.store_path, os.getpid(), job.since, trace,
                f"the app went away and the run did not stop within {STOP_GRACE_S:g} s",
            )
        os._exit(0)

    threading.Thread(target=watch_parent, args=(commands, cancel, run_over, abandoned), daemon=True).start()

    def report(event: Event) -> None:
        trace.add(event)
        try:
            _send(events, event)
        except OSError:  # the app has gone: stop the run (it is stored as cancelled)
            cancel.set()

    try:
        with ResultsStore(job.store_path) as store:
            prepare_and_record(job.config, store, report, cancel=cancel, labels=job.labels, force=job.force)
    except Exception as error:
        with contextlib.suppress(OSError):  # nobody may be listening any more
            _send(events, Rejected(str(error), getattr(error, "field", None)))
    finally:
        run_over.set()
    return 0


if __name__ == "__main__":
    # Run the package's copy of this module, so what the child pickles names `tuner_tui.…`, not `__main__`.
    from tuner_tui.runs.training_child import child_main as package_child_main

    raise SystemExit(package_child_main())
