"""The run's log: the start, one line per epoch, and how the run ended."""

from __future__ import annotations

from rich.text import Text
from textual.events import Resize
from textual.widgets import RichLog

from tuner_tui.app.draw_pacer import DrawPacer

# Each write to a log costs a layout pass of the whole screen (its scrollable height changes),
# several times the cost of any other frame. A fast CPU run ends a few epochs a second: their
# lines are written together, at most once a second.
WRITE_INTERVAL_S = 1.0
KEPT_LINES = 2000  # what is kept to wrap again after a resize


class RunLog(RichLog):
    """A RichLog whose lines are added with `add_line`, written at most once per second, as plain
    text, and wrapped again to the new width when the log is resized."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, wrap=True, markup=False, highlight=False, min_width=1, max_lines=KEPT_LINES)
        self.unwritten: list[str] = []
        self.written: list[str] = []
        self.wrapped_at = 0
        self.writes = DrawPacer(self, self._write_unwritten, WRITE_INTERVAL_S)

    def add_line(self, line: str, *, now: bool = False) -> None:
        """Add a line (it may hold newlines); `now` writes it, and any before it, at once."""
        self.unwritten.append(line)
        if now:
            self.writes.now()
        else:
            self.writes.request()

    def _write_unwritten(self) -> None:
        lines, self.unwritten = self.unwritten, []
        if lines:
            self.written = [*self.written, *lines][-KEPT_LINES:]
            self.write(Text("\n".join(lines)))

    def on_resize(self, event: Resize) -> None:
        """Wrap what was written again at the new width (a RichLog keeps lines as first wrapped)."""
        width = event.size.width
        if width and self.wrapped_at and width != self.wrapped_at and self.written:
            self.clear()
            self.write(Text("\n".join(self.written)))
        if width:
            self.wrapped_at = width
