"""Leases: a writer that is alive renews a deadline; a reader that sees the deadline passed knows
the writer died, wherever it ran.

One mechanism for runs in the results store, trials in a sweep's study and cluster workers: each
holds a lease (an absolute expiry time) that a `Heartbeat` renews while it lives. A process killed
without a word stops renewing, and once its lease has expired every reader, on any host, can say so.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable

LEASE_SECONDS = 90.0  # how long a renewal vouches for the writer
RENEW_SECONDS = 15.0  # how often a live writer renews (several renewals fit in one lease)


def lease_expired(expires_at: float | None, now: float) -> bool:
    """Whether a lease that runs until `expires_at` is over at `now` (no lease: never expires)."""
    return expires_at is not None and now > expires_at


def this_host() -> str:
    return socket.gethostname()


def this_process() -> int:
    return os.getpid()


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_gone(hostname: str | None, pid: int | None, expires_at: float | None, now: float) -> str | None:
    """Why the holder of a lease is known to be gone, or None while it may be alive.

    On the holder's own host a dead pid tells at once; anywhere, an expired lease tells.
    """
    if hostname == this_host() and pid is not None and not process_alive(pid):
        return f"process {pid} ended before it finished"
    if lease_expired(expires_at, now):
        return f"no sign of life from {hostname} (pid {pid}) since its lease expired"
    return None


class Heartbeat:
    """Calls `renew(new_expiry)` every `interval_s` on a daemon thread until `stop()`.

    A failed renewal is passed to `on_error` (default: ignored) and tried again next beat: a
    briefly locked store must not kill a run. `clock` can be injected in tests.
    """

    def __init__(
        self,
        renew: Callable[[float], None],
        *,
        lease_s: float = LEASE_SECONDS,
        interval_s: float = RENEW_SECONDS,
        clock: Callable[[], float] = time.time,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.renew = renew
        self.lease_s = lease_s
        self.interval_s = interval_s
        self.clock = clock
        self.on_error = on_error
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def expiry(self) -> float:
        """The deadline a renewal made now would set."""
        return self.clock() + self.lease_s

    def beat(self) -> None:
        """Renew once, now."""
        try:
            self.renew(self.expiry())
        except Exception as error:
            if self.on_error is not None:
                self.on_error(error)

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._loop, name="lease-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self.beat()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
