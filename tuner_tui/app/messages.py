"""Messages that cross from the training worker thread to the app (`post_message` is thread-safe)."""

from __future__ import annotations

from textual.message import Message

from engine.events import Event


class RunEventMessage(Message):
    """An engine event (Started, Progress, EpochEnd, Finished) of the run in progress."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class RunRejected(Message):
    """The run could not start: bad input found while preparing it (one line)."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason
