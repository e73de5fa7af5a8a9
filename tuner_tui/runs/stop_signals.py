"""Stop on SIGINT, SIGTERM and SIGHUP alike: set a cancel flag, remember which signal came.

Ctrl-C, SLURM's `scancel` and time limit (SIGTERM), and a dropped SSH session (SIGHUP) all mean
"stop now, keep what is done": the training loop sees the flag within a step, the run is stored
as cancelled with its finished epochs, and the process exits with 128 + the signal's number.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class StopSignals:
    """A context that turns the stop signals into `cancel.set()` while it is active.

    Only the main thread can install handlers; elsewhere (a test's worker thread) it does nothing.
    """

    def __init__(self, cancel: threading.Event | None = None) -> None:
        self.cancel = cancel or threading.Event()
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        self.cancel.set()

    def describe(self) -> str | None:
        """The signal that came, by name (`SIGTERM`), or None."""
        return None if self.received is None else signal.Signals(self.received).name

    def exit_code(self) -> int | None:
        """128 + the first signal's number, or None when none came."""
        return None if self.received is None else 128 + self.received
