"""Draw at most a few times a second, however often updates arrive.

Every frame Textual draws costs the UI process CPU; during a CPU run on a small machine that CPU
comes out of training. A `DrawPacer` turns a stream of requests into at most one draw per
interval: at once if the last draw is old enough, else once at the end of the interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.message_pump import MessagePump
from textual.timer import Timer


class DrawPacer:
    """Calls `draw` for `request()`s at most once per `interval_s`; `now()` draws at once."""

    def __init__(self, host: MessagePump, draw: Callable[[], None], interval_s: float) -> None:
        self.host = host
        self.draw = draw
        self.interval_s = interval_s
        self.last_draw = float("-inf")
        self.pending: Timer | None = None

    def request(self) -> None:
        """Draw now if the interval since the last draw has passed, else at its end."""
        if self.pending is not None:
            return
        wait = self.last_draw + self.interval_s - time.monotonic()
        if wait <= 0:
            self.now()
        else:
            self.pending = self.host.set_timer(wait, self.now)

    def now(self) -> None:
        """Draw at once (a pending draw is dropped: this one covers it)."""
        self.cancel()
        self.last_draw = time.monotonic()
        self.draw()

    def cancel(self) -> None:
        """Drop a pending draw."""
        if self.pending is not None:
            self.pending.stop()
            self.pending = None
