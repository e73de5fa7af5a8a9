"""Read-only views of any Optuna study (`tuner-tui watch`, or v on the sweeps screen): the trials,
learning curves, importances, parallel coordinates, a slice per parameter and the Pareto front.

The study is read off the UI thread about once a second (`tuner_tui.app.study_reading`), so a study
that runs elsewhere shows its new trials and its running trials' curves as they come. Keys switch
views; Enter on a trial opens its detail.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import ContentSwitcher, DataTable, Footer, Header, Label
from textual.worker import Worker, WorkerState

from tuner_tui.app.components.record_table import RecordTable, TableColumn
from tuner_tui.app.components.study_columns import front_columns, study_columns, study_signature
from tuner_tui.app.components.study_plots import (
    ImportancePlot,
    LearningCurvesPlot,
    ParallelCoordinatesPlot,
    ParetoPlot,
)
from tuner_tui.app.components.sweep_plots import ParamPlot
from tuner_tui.app.components.trial_columns import trial_key
from tuner_tui.app.components.trial_detail import STUDY_CSS, TrialDetailScreen
from tuner_tui.app.messages import StudyRead
from tuner_tui.app.parallel_coordinates import TOP_LINES
from tuner_tui.app.study_reading import StudyReader, StudyView
from tuner_tui.engine.events import RunStatus
from tuner_tui.formatting import error_line, format_number

if TYPE_CHECKING:  # optuna loads with the first read, off the UI thread
    from tuner_tui.sweeps.summary import SweepSummary, TrialRow

POLL_S = 1.0
VIEWS = ("trials", "curves", "importance", "coords", "slice", "pareto")


class StudyScreen(Screen):
    """Any Optuna study, read-only, in views switched by keys."""

    CSS_PATH = STUDY_CSS

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "view('trials')", "Trials"),
        Binding("l", "view('curves')", "Curves"),
        Binding("i", "view('importance')", "Importance"),
        Binding("c", "view('coords')", "Coords"),
        Binding("s", "view('slice')", "Slice"),
        Binding("p", "next_param", "Next param"),
        Binding("f", "view('pareto')", "Pareto"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, storage_url: str, study_name: str, *, top: int = TOP_LINES) -> None:
        """`top`: how many of the best trials parallel coordinates draw solid."""
        super().__init__(id="study")
        self.reader = StudyReader(storage_url, study_name)
        self.top = top
        self.view: StudyView | None = None
        self.read_error: str | None = None
        self.reading = False
        self.signature: tuple[str, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≋")
        yield Label("", id="study-status")
        with ContentSwitcher(initial="trials", id="study-views"):
            yield RecordTable((), trial_key, fixed_columns=2, id="trials")
            yield LearningCurvesPlot(id="curves")
            yield ImportancePlot(id="importance")
            yield ParallelCoordinatesPlot(top=self.top, id="coords")
            yield ParamPlot(id="slice")
            with Vertical(id="pareto"):
                yield ParetoPlot(id="pareto-plot")
                yield RecordTable((), trial_key, fixed_columns=2, id="front-table")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"{self.reader.location.name} · read-only"
        self.trials_table.focus()
        self.set_interval(POLL_S, self.poll)
        self._show_status()
        self.poll()

    @property
    def trials_table(self) -> RecordTable[TrialRow]:
        return self.query_one("#trials", RecordTable)

    @property
    def front_table(self) -> RecordTable[TrialRow]:
        return self.query_one("#front-table", RecordTable)

    @property
    def current_view(self) -> str:
        return self.query_one(ContentSwitcher).current or VIEWS[0]

    # --- reading ----------------------------------------------------------------------------------

    def poll(self) -> None:
        """Read the study again (off the UI thread), unless a read is under way or the screen is hidden."""
        if self.reading or not self.is_attached or not self.is_active:
            return
        self.reading = True
        self.run_worker(partial(self._read, self.reader), name="read", group="study-read", thread=True,
                        exit_on_error=False)

    def on_screen_resume(self) -> None:
        self.poll()

    def _read(self, reader: StudyReader) -> None:
        """The worker: the study now, or why it cannot be read (one line)."""
        from tuner_tui.sweeps.storages import StudyError

        try:
            self.post_message(StudyRead(reader.read(), None))
        except StudyError as problem:
            self.post_message(StudyRead(None, str(problem)))
        except Exception as problem:  # a storage busy or failing mid-read: say so, read again next time
            self.post_message(StudyRead(None, error_line(problem)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.group == "study-read":
            event.stop()
            self.reading = False
            self.read_error = f"cannot read the study: {event.worker.error}"
            self._show_status()

    def on_study_read(self, message: StudyRead) -> None:
        self.reading = False
        self.read_error = message.error
        if message.view is not None and message.view != self.view:  # unchanged: nothing to redraw
            self.show_view(message.view)
        self._show_status()

    def show_view(self, view: StudyView) -> None:
        """Fill every view from `view`."""
        first = self.view is None
        self.view = view
        if first:
            from tuner_tui.sweeps.storages import shown_url

            location = self.reader.location
            self.sub_title = f"{location.name} · {shown_url(location.storage)} · read-only"
        summary = view.summary
        signature = study_signature(summary)
        if signature != self.signature:
            self.signature = signature
            _set_columns(self.trials_table, study_columns(summary))
            _set_columns(self.front_table, front_columns(summary))
        best = summary.best()
        self.trials_table.show(sorted(summary.trials, key=lambda t: -t.number),
                               best=[trial_key(best)] if best else [])
        self.front_table.show(summary.pareto() if summary.multi_objective else [])
        for table in (self.trials_table, self.front_table):
            redraw_when_measured(self, table)
        for plot in (self.query_one(LearningCurvesPlot), self.query_one(ImportancePlot),
                     self.query_one(ParallelCoordinatesPlot), self.query_one(ParetoPlot)):
            plot.show(view)
        self.query_one(ParamPlot).show(view.sweep)
        if first:
            self.refresh_bindings()

    # --- views --------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Pareto only for several objectives, the next parameter only on the slice, Back only over another screen."""
        if action == "view" and parameters == ("pareto",):
            return self.view is not None and self.view.summary.multi_objective
        if action == "next_param":
            return self.current_view == "slice"
        if action == "back":
            return len(self.app.screen_stack) > 1
        return True

    def action_view(self, name: str) -> None:
        """Show view `name` (one of VIEWS)."""
        self.query_one(ContentSwitcher).current = name
        if name == "trials":
            self.trials_table.focus()
        elif name == "pareto":
            self.front_table.focus()
        self.refresh_bindings()
        self._show_status()

    def action_next_param(self) -> None:
        """The slice of the next parameter."""
        self.query_one(ParamPlot).next_param(self.view.sweep if self.view is not None else None)

    def action_back(self) -> None:
        self.app.pop_screen()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a trial: its detail."""
        event.stop()
        table = event.data_table
        trial = table.current() if isinstance(table, RecordTable) else None
        if trial is not None and self.view is not None:
            self.app.push_screen(TrialDetailScreen(trial, self.view.summary))

    # --- the status line ------------------------------------------------------------------------------

    def _show_status(self) -> None:
        self.query_one("#study-status", Label).update(Text(self.status_text()))

    def status_text(self) -> str:
        """The study's state in one line (or why it cannot be read)."""
        if self.view is None:
            return self.read_error or "reading…"
        text = study_status(self.view.summary)
        return f"{text} · {self.read_error}" if self.read_error else text


def study_status(summary: SweepSummary) -> str:
    """`maximize · 9 trials: 5 completed · 2 pruned · 1 failed · 1 running · best #4: 0.8602`."""
    counts = [(RunStatus.COMPLETED, "completed"), (RunStatus.PRUNED, "pruned"), (RunStatus.FAILED, "failed"),
              (RunStatus.RUNNING, "running")]
    parts = [f"{len(summary.trials)} trials"]
    parts += [f"{summary.count(status)} {word}" for status, word in counts if summary.count(status)]
    others = len(summary.trials) - sum(summary.count(status) for status, _ in counts)
    if others:
        parts.append(f"{others} other")
    if summary.multi_objective:
        parts.append(f"{len(summary.pareto())} on the Pareto front")
    else:
        best = summary.best()
        if best is not None and best.value is not None:
            parts.append(f"best #{best.number}: {format_number(best.value)}")
    return " · ".join([", ".join(summary.directions), *parts])


def redraw_when_measured(screen: Screen, table: DataTable[Text]) -> None:
    """Draw `table` again after it has been filled and measured: a DataTable measures its columns when
    idle, and lines it drew before that keep the old widths (Textual 8.2), squeezing every column."""
    screen.call_after_refresh(table.notify_style_update)


def _set_columns(table: RecordTable[TrialRow], columns: Sequence[TableColumn[TrialRow]]) -> None:
    """Give `table` new columns (a study's objectives and parameters are known once it is read)."""
    table.table_columns = {column.key: column for column in columns}
    table.sort_key = None
