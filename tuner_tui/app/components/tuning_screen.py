"""The tuning screen: config form and buttons on the left; estimates, live view and log on the right.

It owns the run (through its `RunController`), the checks shown before Start, and the estimates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Button, Footer, Header
from textual.worker import Worker, WorkerState

from tuner_tui.app.checks import dataset_problem, device_problem, memory_problem
from tuner_tui.app.components.config_form import ConfigForm, FormState
from tuner_tui.app.components.confirm import ConfirmScreen
from tuner_tui.app.components.estimates_panel import DeviceContext, EstimatesPanel
from tuner_tui.app.components.live_view import LiveView
from tuner_tui.app.components.run_log import RunLog
from tuner_tui.app.device_choices import GpuLister, device_choices
from tuner_tui.app.field_words import field_list
from tuner_tui.app.messages import DatasetChecked, RunEventMessage, RunRejected
from tuner_tui.app.run_controller import RunController
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import Started
from tuner_tui.engine.gpu import GpuSnapshot
from tuner_tui.runs.presets import preset_label
from tuner_tui.runs.records import RunLabels
from tuner_tui.runs.store import ResultsStore
from tuner_tui.runs.system_info import SystemInfo
from tuner_tui.runs.training_process import TrainingRunner

GPU_REFRESH_S = 1.0
WARM_UP_DELAY_S = 0.5  # torch's import holds the GIL for a second or two: only after the first frame


@dataclass(frozen=True)
class Machine:
    """What the tuning screen needs of the machine: the runner, the store, system facts, the GPU list."""

    runner: TrainingRunner
    store: ResultsStore
    system: SystemInfo
    list_gpus: GpuLister
    watch_gpu: bool = True


class TuningScreen(Screen):
    """Edit a config, check it, run it, watch it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "start", "Start", priority=True),
        Binding("f6", "stop", "Stop", priority=True),
        Binding("f3", "app.save_preset", "Save preset", priority=True),
    ]
    running: reactive[bool] = reactive(False, init=False)

    def __init__(
        self, config: RunConfig, preset_names: list[str], preset_name: str | None, machine: Machine,
        preset_config: RunConfig | None = None,
    ) -> None:
        super().__init__(id="tuning")
        self._config = config
        self._preset_config = preset_config
        self._preset_names = preset_names
        self._preset_name = preset_name
        self.machine = machine
        self.controller = RunController(self, machine.runner, machine.store)
        self.form_state: FormState | None = None
        self.gpu_count: int | None = None  # known once the GPUs have been listed
        self.gpu: GpuSnapshot = machine.system.gpu_probe.snapshot()  # the last reading: GPU line and checks
        self.checks_ready = False  # the dataset check imports torch: not before the first frame
        self.dataset_checked: tuple[RunConfig, str | None] | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≋")
        with Horizontal(id="tuning-body"):
            with VerticalScroll(id="form-column") as column:
                column.border_title = "Config"
                yield ConfigForm(
                    self._config, self._preset_names, self._preset_name, self._preset_config, id="config-form"
                )
                with Horizontal(id="run-buttons"):
                    yield Button("Start F5", id="start", variant="success", compact=True, action="screen.start")
                    yield Button(
                        "Stop F6", id="stop", variant="error", compact=True, disabled=True, action="screen.stop"
                    )
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

    def on_mount(self) -> None:
        self.live.show_gpu(self.gpu)
        if self.machine.watch_gpu:
            self.set_interval(GPU_REFRESH_S, self._refresh_gpu)
        self.set_timer(WARM_UP_DELAY_S, self._warm_up)

    @property
    def form(self) -> ConfigForm:
        return self.query_one(ConfigForm)

    @property
    def live(self) -> LiveView:
        return self.query_one(LiveView)

    @property
    def log_view(self) -> RunLog:
        return self.query_one(RunLog)

    @property
    def estimates(self) -> EstimatesPanel:
        return self.query_one(EstimatesPanel)

    # --- running ----------------------------------------------------------------------

    def watch_running(self, running: bool) -> None:
        self._enable_buttons()

    def _enable_buttons(self) -> None:
        """Start only when idle and the form is valid; Stop only while running."""
        valid = self.form_state is not None and self.form_state.config is not None
        self.query_one("#start", Button).disabled = self.running or not valid
        self.query_one("#stop", Button).disabled = not self.running

    def action_start(self, force: bool = False) -> None:
        """Start the form's config (F5)."""
        state = self.form_state
        if self.running:
            return
        if state is None or state.config is None:
            fields = field_list(tuple(state.errors)) if state else "the form"
            self.notify(f"cannot start: fix {fields}", severity="error", markup=False)
            return
        form = self.form
        label = preset_label(form.preset_name, form.preset_config, state.config)
        self.controller.start(state.config, RunLabels(preset=label), force=force)

    def action_stop(self) -> None:
        """Stop the run (F6): at once on screen, for good within the runner's grace period."""
        self.controller.stop()

    def on_run_event_message(self, message: RunEventMessage) -> None:
        self.controller.on_event(message.event)

    def on_run_rejected(self, message: RunRejected) -> None:
        config, labels = self.controller.config, self.controller.labels
        self.controller.on_rejected(message.reason)
        if message.field == "memory" and config is not None:
            self._offer_force(config, labels, message.reason)

    def _offer_force(self, config: RunConfig, labels: RunLabels, reason: str) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.controller.start(config, labels, force=True)

        question = f"{reason}. Start it anyway? A run that does not fit can exhaust the machine's memory."
        self.app.push_screen(ConfirmScreen(question, "Start anyway"), answered)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        if event.worker.group == "training":
            event.stop()
            self.controller.on_failed(event.worker.error)
        elif event.worker.group == "warm-up":  # no device names or GPU list: check what can be checked
            self._machine_known(device_choices([]), None)

    def show_calibrated(self, event: Started) -> None:
        """A run has calibrated: its time estimate is the one the panel shows for its config."""
        self.estimates.show_calibrated(event.config, event.time_estimate, self._device_context(event.config))

    # --- form, checks and estimates ----------------------------------------------------

    def on_config_form_changed(self, message: ConfigForm.Changed) -> None:
        self.form_state = message.state
        self._enable_buttons()
        self._refresh_estimates()

    def on_config_form_preset_chosen(self, message: ConfigForm.PresetChosen) -> None:
        self.load_preset(message.name)

    def load_preset(self, name: str) -> None:
        """Load preset `name` into the form (the form's data root and device stay)."""
        from tuner_tui.runs.presets import PresetError, load_preset

        try:
            preset = load_preset(name)
        except PresetError as error:
            self.notify(str(error), severity="error", markup=False)
            return
        self.form.load(preset.config, preset.name)
        self.notify(f"loaded preset {preset.name}", markup=False)

    def _device_context(self, config: RunConfig | None) -> DeviceContext:
        system = self.machine.system
        device_type = system.device_type(config.device if config else "auto")
        seconds_per_step = None
        name = system.device_names.get(device_type)
        if config is not None and name is not None:
            seconds_per_step = self.machine.store.history_seconds_per_step(config, name)
        return DeviceContext(
            device_type=device_type, free_bytes=system.free_bytes(device_type),
            context_bytes=system.context_bytes(device_type), seconds_per_step=seconds_per_step,
        )

    def _refresh_estimates(self) -> None:
        config = self.form_state.config if self.form_state else None
        device = self._device_context(config)
        self.estimates.show(config, device)
        self._refresh_checks(config, device)

    def _refresh_checks(self, config: RunConfig | None, device: DeviceContext) -> None:
        if config is None:
            self.form.show_checks({})
            return
        problems: dict[str, str] = {}
        if memory := memory_problem(config, device):
            problems["hidden"] = memory
        if gpu := device_problem(config, self.gpu, self.gpu_count):
            problems["device"] = gpu
        checked = self.dataset_checked
        key = (config.dataset, config.data_root)
        if checked is not None and (checked[0].dataset, checked[0].data_root) == key:
            if checked[1]:
                problems["data_root"] = checked[1]
        elif self.checks_ready:
            self._check_dataset(config)
        self.form.show_checks(problems)

    @work(thread=True, exclusive=True, exit_on_error=False, group="dataset-check")
    def _check_dataset(self, config: RunConfig) -> None:
        self.post_message(DatasetChecked(config, dataset_problem(config)))

    def on_dataset_checked(self, message: DatasetChecked) -> None:
        self.dataset_checked = (message.config, message.problem)
        self._refresh_estimates()

    # --- the machine ------------------------------------------------------------------

    def _refresh_gpu(self) -> None:
        self.gpu = self.machine.system.gpu_probe.snapshot()
        self.live.show_gpu(self.gpu)

    @work(thread=True, exit_on_error=False, group="warm-up")
    def _warm_up(self) -> None:
        """Off the UI thread: import torch and name the devices, list the GPUs, warm the runner."""
        system = self.machine.system
        system.load_device_names()
        gpus = self.machine.list_gpus()
        self.app.call_from_thread(self._machine_known, device_choices(gpus), len(gpus))
        warm_up = getattr(self.machine.runner, "warm_up", None)
        if warm_up is not None:
            warm_up()

    def _machine_known(self, choices: list[tuple[str, str]], gpu_count: int | None) -> None:
        self.gpu_count = gpu_count
        self.checks_ready = True
        self.form.set_device_choices(choices)
        self._refresh_estimates()
