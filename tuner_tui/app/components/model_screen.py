"""The tuning screen of a model file (`tuner-tui --preset model.toml`): its fields as a form, Start and
Stop, the run's metrics live, and its log.

The run goes through the same path as `--no-ui` (`tuner_tui.usercode.runner.run_user_code`): the
code runs in its own child process and this screen's worker thread only relays its events, drawn
at most four times a second; what the code prints goes to the log. A stop shows at once and raises
`Stop` at the code's next report; code that ignores it is killed after the grace period.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from functools import partial
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Button, Footer, Header
from textual.worker import Worker, WorkerState

from tuner_tui.app.components.metrics_view import MetricsLiveView
from tuner_tui.app.components.model_form import ModelForm, ModelFormState
from tuner_tui.app.components.run_log import RunLog
from tuner_tui.app.draw_pacer import DrawPacer
from tuner_tui.app.messages import RunEnded, RunRejected, UserRunEvent
from tuner_tui.engine.events import RunStatus
from tuner_tui.reports.progress import report_line
from tuner_tui.runs.records import RunLabels
from tuner_tui.runs.store import ResultsStore
from tuner_tui.usercode.config import UserRunConfig, user_config
from tuner_tui.usercode.events import MetricsReported, UserEvent, UserFinished, UserLogged, UserStarted
from tuner_tui.usercode.model_file import ModelFile
from tuner_tui.usercode.runner import STOP_GRACE_S, UserCodeRejected, run_user_code

DRAW_INTERVAL_S = 0.25


class ModelScreen(Screen):
    """Edit a model's fields, run its function, watch what it reports."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "start", "Start", priority=True),
        Binding("f6", "stop", "Stop", priority=True),
    ]
    running: reactive[bool] = reactive(False, init=False)

    def __init__(self, model: ModelFile, config: UserRunConfig, store: ResultsStore) -> None:
        super().__init__(id="tuning")
        self.model = model
        self.config = config
        self.store = store
        self.form_state: ModelFormState | None = None
        self.cancel_event = threading.Event()
        self.undrawn: list[UserEvent] = []
        self.draws = DrawPacer(self, self._draw, DRAW_INTERVAL_S)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≋")
        with Horizontal(id="tuning-body"):
            with VerticalScroll(id="form-column") as column:
                column.border_title = f"{self.model.title} · {self.model.train}"
                yield ModelForm(self.model, self.config.fields, id="model-form")
                with Horizontal(id="run-buttons"):
                    yield Button("Start F5", id="start", variant="success", compact=True, action="screen.start")
                    yield Button(
                        "Stop F6", id="stop", variant="error", compact=True, disabled=True, action="screen.stop"
                    )
            with Vertical(id="right-column"):
                live = MetricsLiveView(id="live")
                live.border_title = "Run"
                yield live
                log = RunLog(id="run-log")
                log.border_title = "Log"
                yield log
        yield Footer()

    @property
    def form(self) -> ModelForm:
        return self.query_one(ModelForm)

    @property
    def live(self) -> MetricsLiveView:
        return self.query_one(MetricsLiveView)

    @property
    def log_view(self) -> RunLog:
        return self.query_one(RunLog)

    def on_model_form_changed(self, message: ModelForm.Changed) -> None:
        self.form_state = message.state
        self._enable_buttons()

    def watch_running(self, running: bool) -> None:
        self._enable_buttons()

    def _enable_buttons(self) -> None:
        valid = self.form_state is not None and self.form_state.values is not None
        self.query_one("#start", Button).disabled = self.running or not valid
        self.query_one("#stop", Button).disabled = not self.running

    def load_values(self, config: UserRunConfig, run_id: int) -> None:
        """A stored run's fields into the form (its validation share is not the form's)."""
        self.form.load(config.fields)
        self.notify(f"loaded the fields of run {run_id}", markup=False)

    # --- running ----------------------------------------------------------------------

    def action_start(self) -> None:
        """Start the form's values (F5)."""
        state = self.form_state
        if self.running:
            return
        if state is None or state.values is None:
            fields = ", ".join(state.errors) if state else "the form"
            self.notify(f"cannot start: fix {fields}", severity="error", markup=False)
            return
        config = user_config(self.model, {}, base=state.values,
                             where={"device": self.config.device, "data_root": self.config.data_root})
        label = self.model.name if config.fields == self.model.defaults() else f"{self.model.name} (edited)"
        self.cancel_event = cancel = threading.Event()
        self.undrawn = []
        self.running = True
        headline, _ = self.model.headline
        self.live.show_preparing(self.model.title, headline)
        self.log_view.add_line(f"start: {config.summary()}", now=True)
        self.run_worker(partial(self._run, config, cancel, RunLabels(preset=label)), name="user-run",
                        group="user-run", thread=True, exclusive=True, exit_on_error=False)

    def action_stop(self) -> None:
        """Stop the run (F6): at once on screen, for good within the grace period."""
        if self.running and not self.cancel_event.is_set():
            self.cancel_event.set()
            self.live.show_stopping(STOP_GRACE_S)
            self.log_view.add_line("stopping…", now=True)

    def _run(self, config: UserRunConfig, cancel: threading.Event, labels: RunLabels) -> None:
        """The worker: the code's child process; its direct writes to stderr go to a file, not the terminal."""
        with tempfile.TemporaryFile() as stderr:
            try:
                run_user_code(config, self.store, self._relay, cancel=cancel, labels=labels, stderr=stderr)
            except UserCodeRejected as rejected:
                self.post_message(RunRejected(rejected.reason))

    def _relay(self, event: UserEvent) -> None:
        self.post_message(UserRunEvent(event))

    def on_user_run_event(self, message: UserRunEvent) -> None:
        self.undrawn.append(message.event)
        if isinstance(message.event, UserStarted | UserFinished):
            self.draws.now()
        else:
            self.draws.request()

    def on_run_rejected(self, message: RunRejected) -> None:
        self.log_view.add_line(f"not started: {message.reason}", now=True)
        self.live.show_outcome(f"not started · {message.reason}")
        self.notify(message.reason, severity="error", markup=False)
        self._ended()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.group == "user-run":
            event.stop()
            self.log_view.add_line(f"failed: {event.worker.error}", now=True)
            self.live.show_outcome(f"failed · {event.worker.error}")
            self._ended()

    def _draw(self) -> None:
        events, self.undrawn = self.undrawn, []
        for event in events:
            if isinstance(event, UserStarted):
                self.live.show_started(event)
                self.log_view.add_line(f"{event.title} ({event.origin.function}) on {event.device_name}", now=True)
            elif isinstance(event, MetricsReported):
                self.live.add_report(event)
                self.log_view.add_line(report_line(event))
            elif isinstance(event, UserLogged):
                self.log_view.add_line(event.text)
            elif isinstance(event, UserFinished):
                self.live.show_finished(event)
                self.log_view.add_line(f"{event.status.value}: {event.message}", now=True)
                if event.status is not RunStatus.COMPLETED:
                    self.notify(f"run {event.status.value}: {event.message}", severity="warning", markup=False)
                self._ended()
        with contextlib.suppress(Exception):  # the screen may be closing
            self.live.draw()

    def _ended(self) -> None:
        self.running = False
        self.post_message(RunEnded())
