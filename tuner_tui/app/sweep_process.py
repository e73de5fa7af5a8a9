"""A sweep started from the app: the headless command (`tuner-tui sweep SPEC --no-ui`) in a child process.

The child is the same path as a sweep started in a terminal, so the app and the CLI can never
disagree about what a sweep does; the app watches it by reading the store and the study
(`tuner_tui.app.sweep_reading`), as it watches any sweep. A stop is a SIGTERM: the sweep stops
within a step, stores its running trials as cancelled and exits 143; a child still alive
`STOP_GRACE_S` later is killed. The child gets a SIGTERM when the thread that started it ends,
even by SIGKILL of the app (`PR_SET_PDEATHSIG`), so no sweep outlives the app; its stderr goes to
a file, never to the app's terminal.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from tuner_tui.runs.parallel import stop_with_parent

STOP_GRACE_S = 30.0  # a sweep stops within a step; this only bounds a stuck one
POLL_S = 0.2
LAST_LINES = 5


@dataclass(frozen=True)
class SweepExit:
    """How a sweep child ended: its exit code and the last lines it wrote on stderr."""

    code: int
    last_lines: tuple[str, ...]
    stopped: bool  # a stop was asked for
    killed: bool  # it did not stop within the grace period

    @property
    def errors(self) -> list[str]:
        """Its `tuner-tui: error: …` lines, without the prefix (what made a bad-input exit)."""
        prefix = "tuner-tui: error: "
        return [line.removeprefix(prefix) for line in self.last_lines if line.startswith(prefix)]


def run_sweep_child(argv: Sequence[str], cancel: threading.Event, *, grace_s: float = STOP_GRACE_S) -> SweepExit:
    """Run `argv` until it ends; `cancel` sends it a SIGTERM, and a kill `grace_s` later.

    Call it on a thread that lives as long as the child: the child is stopped when that thread ends.
    """
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
            preexec_fn=stop_with_parent,  # noqa: PLW1509 - one async-safe prctl call
        )
        killed = False
        try:
            while child.poll() is None:
                if cancel.wait(POLL_S):
                    killed = _stop(child, grace_s)
                    break
        finally:
            if child.poll() is None:  # this thread is leaving (the app is closing): stop the sweep
                killed = _stop(child, grace_s) or killed
        errors.seek(0)
        lines = errors.read().decode(errors="replace").strip().splitlines()
    return SweepExit(child.returncode, tuple(line.strip() for line in lines[-LAST_LINES:]), cancel.is_set(), killed)


def _stop(child: subprocess.Popen[bytes], grace_s: float) -> bool:
    """SIGTERM, then a kill if the child is still there after `grace_s`; whether it was killed."""
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=grace_s)
        return False
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        return True
