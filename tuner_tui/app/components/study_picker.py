"""The studies of a storage to pick from (`tuner-tui watch STORAGE` without `--study`): name,
directions, trials by state, best value and last change; Enter opens the study's views."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label

from tuner_tui.app.components.record_table import RecordTable, TableColumn
from tuner_tui.app.components.study_screen import STUDY_CSS, StudyScreen, redraw_when_measured
from tuner_tui.app.messages import StudiesListed
from tuner_tui.formatting import format_number, format_seconds

if TYPE_CHECKING:  # optuna loads with the first listing, off the UI thread
    from tuner_tui.sweeps.study_listing import StudyListing

STATE_ORDER = ("complete", "pruned", "fail", "running", "waiting")


def states_text(states: dict[str, int]) -> str:
    """`5 complete · 2 pruned · 1 fail`, in a fixed order."""
    order = [*STATE_ORDER, *sorted(set(states) - set(STATE_ORDER))]
    return " · ".join(f"{states[state]} {state}" for state in order if states.get(state))


def ago_text(moment: float | None, now: float) -> str:
    """How long ago `moment` was: `42.0 s ago`, `3 min 05 s ago`."""
    return "" if moment is None else f"{format_seconds(max(0.0, now - moment))} ago"


def listing_columns(now: float) -> tuple[TableColumn[StudyListing], ...]:
    return (
        TableColumn("name", "study", cell=lambda s: s.name, value=lambda s: s.name),
        TableColumn("directions", "directions", cell=lambda s: ", ".join(s.directions), value=lambda s: s.directions),
        TableColumn("trials", "trials", cell=lambda s: str(s.trials), value=lambda s: s.trials, numeric=True),
        TableColumn("best", "best", cell=lambda s: format_number(s.best) if s.best is not None else "",
                    value=lambda s: s.best, numeric=True),
        TableColumn("last", "last change", cell=lambda s: ago_text(s.last_change, now), value=lambda s: s.last_change),
        TableColumn("states", "by state", cell=lambda s: states_text(s.states),
                    value=lambda s: s.states.get("complete")),
    )


class StudyPickerScreen(Screen):
    """The studies in a storage, listed once when shown; Enter opens one. `open_only`: open the study
    straight away when the storage holds exactly one."""

    CSS_PATH = STUDY_CSS

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "reload", "Reload"),
    ]

    def __init__(self, storage_url: str, *, open_only: bool = False, clock: Callable[[], float] = time.time) -> None:
        """`clock`: now, for how long ago each study last changed."""
        super().__init__(id="study-picker")
        self.storage_url = storage_url
        self.open_only = open_only
        self.clock = clock
        self.listings: list[StudyListing] = []
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≋")
        yield Label("reading…", id="picker-status")
        yield RecordTable(listing_columns(self.clock()), lambda s: s.name, fixed_columns=2, id="studies")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.table.focus()
        self.action_reload()

    @property
    def table(self) -> RecordTable[StudyListing]:
        return self.query_one("#studies", RecordTable)

    def action_reload(self) -> None:
        """Read the list of studies again (off the UI thread)."""
        self.run_worker(self._list, name="list", group="study-list", thread=True, exclusive=True, exit_on_error=False)

    def _list(self) -> None:
        from tuner_tui.formatting import error_line
        from tuner_tui.sweeps.storages import StudyError
        from tuner_tui.sweeps.study_listing import list_studies

        try:
            self.post_message(StudiesListed(list_studies(self.storage_url), None))
        except StudyError as problem:
            self.post_message(StudiesListed([], str(problem)))
        except Exception as problem:  # any failure is one line, never a traceback
            self.post_message(StudiesListed([], error_line(problem)))

    def on_studies_listed(self, message: StudiesListed) -> None:
        from tuner_tui.sweeps.storages import shown_url

        self.sub_title = f"studies in {shown_url(self.storage_url)} · read-only"
        self.listings, self.error = message.listings, message.error
        self.table.table_columns = {column.key: column for column in listing_columns(self.clock())}
        self.table.show(self.listings)
        redraw_when_measured(self, self.table)
        status = self.query_one("#picker-status", Label)
        if self.error is not None:
            status.update(Text(self.error))
        elif not self.listings:
            status.update(Text(f"no studies in {shown_url(self.storage_url)}"))
        else:
            count = len(self.listings)
            status.update(Text(f"{count} {'study' if count == 1 else 'studies'} · Enter opens one"))
        if self.open_only and len(self.listings) == 1:
            self.open_only = False
            self.open(self.listings[0])

    def open(self, listing: StudyListing) -> None:
        self.app.push_screen(StudyScreen(self.storage_url, listing.name))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        listing = self.table.current()
        if listing is not None:
            self.open(listing)
