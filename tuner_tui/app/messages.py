"""Messages that cross from worker threads to the screens (`post_message` is thread-safe), and the
tuning screen's word to the app that its run has ended."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

from tuner_tui.app.sweep_process import SweepExit
from tuner_tui.app.sweep_reading import SweepView
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import Event
from tuner_tui.runs.records import RunRecord
from tuner_tui.sweeps.locations import SweepLocation
from tuner_tui.usercode.events import UserEvent

if TYPE_CHECKING:
    from tuner_tui.app.study_reading import StudyView
    from tuner_tui.sweeps.study_listing import StudyListing


class RunEventMessage(Message):
    """An engine event (Started, Progress, EpochEnd, Finished) of the run in progress."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class UserRunEvent(Message):
    """An event of a run of the user's own code (UserStarted, MetricsReported, UserLogged, UserFinished)."""

    def __init__(self, event: UserEvent) -> None:
        super().__init__()
        self.event = event


class RunRejected(Message):
    """The run could not start: bad input found while preparing it (one line).

    `field` names the config field at fault when known (`memory`: the run would not fit)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__()
        self.reason = reason
        self.field = field


class RunEnded(Message):
    """The run in progress has ended, however it ended (posted by the tuning screen; the app listens)."""


class DatasetChecked(Message):
    """Whether the dataset of `config` would be found: `problem` is None when it would."""

    def __init__(self, config: RunConfig, problem: str | None) -> None:
        super().__init__()
        self.config = config
        self.problem = problem


class LoadConfig(Message):
    """Load this stored run's config into the tuning screen's form (from the browser or a run's detail)."""

    def __init__(self, record: RunRecord) -> None:
        super().__init__()
        self.record = record



class SweepRead(Message):
    """The sweep screen has read the sweep at `location`: `view`, or `error` (one line) while it cannot
    be read; every few reads also which sweeps there are (`locations`, else None); and the lines of
    cluster workers' journals that the read skipped (`skipped`, one line each)."""

    def __init__(
        self, location: SweepLocation | None, view: SweepView | None, locations: list[SweepLocation] | None,
        error: str | None, skipped: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.location = location
        self.view = view
        self.locations = locations
        self.error = error
        self.skipped = skipped


class StudyRead(Message):
    """A study view has read its study: `view`, or `error` (one line) while it cannot be read."""

    def __init__(self, view: StudyView | None, error: str | None) -> None:
        super().__init__()
        self.view = view
        self.error = error


class StudiesListed(Message):
    """The study picker has read its storage: the studies in it, or `error` (one line)."""

    def __init__(self, listings: list[StudyListing], error: str | None) -> None:
        super().__init__()
        self.listings = listings
        self.error = error


class SweepChildEnded(Message):
    """The sweep the app started has ended, however it ended."""

    def __init__(self, exit: SweepExit) -> None:
        super().__init__()
        self.exit = exit


class SlotReported(Message):
    """An engine event of run `index` of several started together."""

    def __init__(self, index: int, event: Event) -> None:
        super().__init__()
        self.index = index
        self.event = event


class SlotRejected(Message):
    """Run `index` of several could not start: bad input found while preparing it (one line)."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__()
        self.index = index
        self.reason = reason


class SlotsEnded(Message):
    """Every run of several started together has ended (posted by the presets screen; the app listens)."""
