"""The tuning screen: config form and buttons on the left; estimates, live view and log on the right."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header

from engine.config import RunConfig
from tuner_tui.app.components.config_form import ConfigForm, FormState
from tuner_tui.app.components.estimates_panel import EstimatesPanel
from tuner_tui.app.components.live_view import LiveView
from tuner_tui.app.components.run_log import RunLog


class TuningScreen(Screen):
    """Layout only; the app owns the run and drives these widgets."""

    def __init__(self, config: RunConfig, preset_names: list[str], preset_name: str | None) -> None:
        super().__init__(id="tuning")
        self._config = config
        self._preset_names = preset_names
        self._preset_name = preset_name
        self.form_state: FormState | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≋")
        with Horizontal(id="tuning-body"):
            with VerticalScroll(id="form-column") as column:
                column.border_title = "Config"
                yield ConfigForm(self._config, self._preset_names, self._preset_name, id="config-form")
                with Horizontal(id="run-buttons"):
                    yield Button("Start F5", id="start", variant="success", compact=True, action="app.start")
                    yield Button("Stop F6", id="stop", variant="error", compact=True, disabled=True, action="app.stop")
            with Vertical(id="right-column"):
                estimates = EstimatesPanel(id="estimates")
                estimates.border_title = "Estimates"
                yield estimates
                live = LiveView(id="live")
                live.border_title = "Run"
                yield live
                log = RunLog(id="run-log")
                log.border_title = "Log"
                yield log
        yield Footer()

    @property
    def form(self) -> ConfigForm:
        return self.query_one(ConfigForm)

    @property
    def live(self) -> LiveView:
        return self.query_one(LiveView)

    @property
    def log_view(self) -> RunLog:
        return self.query_one(RunLog)

    def set_running(self, running: bool) -> None:
        """Enable Start only when idle and the form is valid; Stop only while running."""
        valid = self.form_state is not None and self.form_state.config is not None
        self.query_one("#start", Button).disabled = running or not valid
        self.query_one("#stop", Button).disabled = not running
