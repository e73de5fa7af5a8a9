"""The Textual app: edit a config, run it in a background worker, watch it live, browse past runs.

Training goes through the same path as `--no-ui` (`tuner_tui.runs.session.run_recorded`) in a child
process, driven by a thread worker that relays its events with `post_message`: drawing and the
training loop never wait on one GIL. The events are drawn at most four times a second and the
log written at most once a second, since every frame costs CPU that a CPU run would rather have.
torch is imported by a warm-up worker and by a standby training process, never before the
first screen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from engine.config import RunConfig
from engine.events import EpochEnd, Event, Finished, Progress, RunStatus, Started
from engine.gpu import GpuProbe, NvmlGpuProbe
from tuner_tui.app.commands import PresetCommands
from tuner_tui.app.components.config_form import ConfigForm
from tuner_tui.app.components.confirm import ConfirmScreen
from tuner_tui.app.components.estimates_panel import DeviceContext
from tuner_tui.app.components.runs_screen import RunsScreen
from tuner_tui.app.components.save_preset import SavePresetScreen
from tuner_tui.app.components.tuning_screen import TuningScreen
from tuner_tui.app.draw_pacer import DrawPacer
from tuner_tui.app.messages import RunEventMessage, RunRejected
from tuner_tui.formatting import config_summary, epoch_line, started_lines
from tuner_tui.runs.presets import preset_label
from tuner_tui.runs.store import ResultsStore, RunLabels
from tuner_tui.runs.system_info import SystemInfo
from tuner_tui.runs.training_process import RunRejectedError, TrainingRunner, run_in_child_process
from tuner_tui.runs.training_process import warm_up as warm_up_training_process

GPU_REFRESH_S = 1.0
# Progress arrives ten times a second and a CPU run may end several epochs a second; the screen
# shows them at most four times a second (each frame costs CPU that training would rather have).
# The start and the end of a run show at once.
RUN_DRAW_INTERVAL_S = 0.25
WARM_UP_DELAY_S = 0.5


class ChildProcessRunner:
    """The app's runner: the `--no-ui` path in a child process (see `tuner_tui.runs.training_process`)."""

    def __call__(
        self,
        config: RunConfig,
        store: ResultsStore,
        on_event: Callable[[Event], None],
        cancel: threading.Event,
        *,
        labels: RunLabels | None = None,
        force: bool = False,
    ) -> object:
        return run_in_child_process(config, store.path, on_event, cancel, labels=labels, force=force)

    def warm_up(self) -> None:
        warm_up_training_process()


class TunerApp(App):
    """tuner-tui's app. Every collaborator can be replaced (tests use a fake runner and probe)."""

    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "tuner-tui"
    SUB_TITLE = "tune the Lab 4 network"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    COMMANDS = App.COMMANDS | {PresetCommands}
    BINDINGS = [
        Binding("f5", "start", "Start", priority=True),
        Binding("f6", "stop", "Stop", priority=True),
        Binding("f2", "runs", "Runs", priority=True),
        Binding("f3", "save_preset", "Save preset", priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        store: ResultsStore,
        *,
        config: RunConfig | None = None,
        preset_name: str | None = None,
        runner: TrainingRunner | None = None,
        gpu_probe: GpuProbe | None = None,
        system: SystemInfo | None = None,
        watch_gpu: bool = True,
    ) -> None:
        super().__init__()
        self.store = store
        self.runner = runner or ChildProcessRunner()
        self.gpu_probe = gpu_probe or NvmlGpuProbe()
        self.system = system or SystemInfo(self.gpu_probe)
        self.watch_gpu = watch_gpu
        self.initial_config = config or RunConfig()
        self.initial_preset = self._preset_name_of(preset_name)
        self.cancel_event = threading.Event()
        self.running = False
        self.undrawn_run_events: list[Event] = []
        self.run_draws = DrawPacer(self, self._draw_run_events, RUN_DRAW_INTERVAL_S)
        self.quit_after_run = False

    @staticmethod
    def _preset_name_of(preset: str | None) -> str | None:
        """A preset given by path shows by its file's stem."""
        if preset is None:
            return None
        return Path(preset).stem if preset.endswith(".toml") else preset

    async def on_mount(self) -> None:
        from tuner_tui.runs.presets import list_presets

        names = [p.name for p in list_presets()]
        self.tuning = TuningScreen(self.initial_config, names, self.initial_preset)
        await self.push_screen(self.tuning)
        self.tuning.live.show_gpu(self.gpu_probe.snapshot())
        if self.watch_gpu:
            self.set_interval(GPU_REFRESH_S, self._refresh_gpu)
        # torch's import holds the GIL for a second or two: only after the first screen is drawn.
        self.set_timer(WARM_UP_DELAY_S, self._load_device_names)

    # --- form and estimates -------------------------------------------------------------

    def on_config_form_changed(self, message: ConfigForm.Changed) -> None:
        self.tuning.form_state = message.state
        self.tuning.set_running(self.running)
        self._refresh_estimates()

    def on_config_form_preset_chosen(self, message: ConfigForm.PresetChosen) -> None:
        self.load_preset(message.name)

    def _refresh_estimates(self) -> None:
        state = self.tuning.form_state
        config = state.config if state else None
        device_type = self.system.device_type(config.device if config else "auto")
        seconds_per_step = None
        name = self.system.device_names.get(device_type)
        if config is not None and name is not None:
            seconds_per_step = self.store.history_seconds_per_step(config, name)
        context = DeviceContext(
            device_type=device_type, free_bytes=self.system.free_bytes(device_type),
            context_bytes=self.system.context_bytes(device_type), seconds_per_step=seconds_per_step,
        )
        self.tuning.query_one("#estimates").show(config, context)

    @work(thread=True, exit_on_error=False, group="warm-up")
    def _load_device_names(self) -> None:
        """Import torch and name the devices off the UI thread, redo the time estimate, warm the runner."""
        self.system.load_device_names()
        self.call_from_thread(self._refresh_estimates)
        warm_up = getattr(self.runner, "warm_up", None)
        if warm_up is not None:
            warm_up()

    def _refresh_gpu(self) -> None:
        self.tuning.live.show_gpu(self.gpu_probe.snapshot())

    def load_preset(self, name: str) -> None:
        from tuner_tui.runs.presets import PresetError, load_preset

        try:
            preset = load_preset(name)
        except PresetError as error:
            self.notify(str(error), severity="error")
            return
        self.tuning.form.load(preset.config, preset.name)
        self.notify(f"loaded preset {preset.name}")

    # --- running ----------------------------------------------------------------------

    def action_start(self) -> None:
        state = self.tuning.form_state
        if self.running:
            return
        if state is None or state.config is None:
            fields = ", ".join(sorted(state.errors)) if state else "the form"
            self.notify(f"cannot start: fix {fields}", severity="error")
            return
        if self.screen is not self.tuning:
            self.switch_to_tuning()
        self.running = True
        self.cancel_event = threading.Event()
        self.tuning.set_running(True)
        self.tuning.live.show_preparing(state.config.layers_label)
        self.tuning.log_view.add_line(f"start: {config_summary(state.config)}", now=True)
        form = self.tuning.form
        label = preset_label(form.preset_name, form.preset_config, state.config)
        self._train(state.config, self.cancel_event, RunLabels(preset=label))

    def action_stop(self) -> None:
        if self.running and not self.cancel_event.is_set():
            self.cancel_event.set()
            self.tuning.log_view.add_line("stopping…", now=True)

    @work(thread=True, exclusive=True, exit_on_error=False, group="training")
    def _train(self, config: RunConfig, cancel: threading.Event, labels: RunLabels) -> None:
        try:
            self.runner(
                config, self.store, lambda event: self.post_message(RunEventMessage(event)), cancel,
                labels=labels,
            )
        except RunRejectedError as error:  # anything else fails the worker: logged as "failed"
            self.post_message(RunRejected(str(error)))

    def on_run_event_message(self, message: RunEventMessage) -> None:
        self.undrawn_run_events.append(message.event)
        if isinstance(message.event, (Started, Finished)):
            self.run_draws.now()
        else:
            self.run_draws.request()

    def _draw_run_events(self) -> None:
        events, self.undrawn_run_events = self.undrawn_run_events, []
        live, log = self.tuning.live, self.tuning.log_view
        for event in events:
            if isinstance(event, Started):
                live.show_started(event)
                log.add_line("\n".join(started_lines(event)), now=True)
            elif isinstance(event, Progress):
                live.add_progress(event)
            elif isinstance(event, EpochEnd):
                live.add_epoch(event)
                log.add_line(epoch_line(event))
            elif isinstance(event, Finished):
                live.show_finished(event)
                log.add_line(f"{event.status.value}: {event.message}", now=True)
                self._run_ended()
                if event.status is not RunStatus.COMPLETED:
                    self.notify(f"run {event.status.value}: {event.message}", severity="warning")
        live.draw()

    def on_run_rejected(self, message: RunRejected) -> None:
        self.tuning.log_view.add_line(f"not started: {message.reason}", now=True)
        self.tuning.live.reset()
        self.tuning.live.show_outcome(f"not started · {message.reason}")
        self.notify(message.reason, severity="error")
        self._run_ended()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "training" and event.state == WorkerState.ERROR and self.running:
            self.run_draws.now()  # what the run reported before it failed
            self.tuning.log_view.add_line(f"failed: {event.worker.error}", now=True)
            self.tuning.live.show_outcome(f"failed · {event.worker.error}")
            self._run_ended()

    def _run_ended(self) -> None:
        self.running = False
        self.tuning.set_running(False)
        self._refresh_estimates()
        if isinstance(self.screen, RunsScreen):
            self.screen.set_records(self.store.list_runs())
        if self.quit_after_run:
            self.exit()

    # --- screens ----------------------------------------------------------------------

    def switch_to_tuning(self) -> None:
        while self.screen is not self.tuning:
            self.pop_screen()

    def action_runs(self) -> None:
        if isinstance(self.screen, RunsScreen):
            self.pop_screen()
            return
        self.switch_to_tuning()
        self.push_screen(RunsScreen(self.store.list_runs()))

    def on_runs_screen_load_config(self, message: RunsScreen.LoadConfig) -> None:
        self.switch_to_tuning()
        self.tuning.form.load(message.record.config)
        self.notify(f"loaded the config of run {message.record.id}")

    def action_save_preset(self) -> None:
        state = self.tuning.form_state
        if state is None or state.config is None:
            self.notify("fix the form before saving it as a preset", severity="error")
            return

        def saved(name: str | None) -> None:
            if name:
                from tuner_tui.runs.presets import list_presets

                self.tuning.form.adopt_preset(name, [p.name for p in list_presets()])
                self.notify(f"saved preset {name}")

        self.push_screen(SavePresetScreen(state.config), saved)

    async def action_quit(self) -> None:
        if not self.running:
            self.exit()
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            if not self.running:  # the run ended while the question was open
                self.exit()
                return
            self.quit_after_run = True
            self.action_stop()

        self.push_screen(ConfirmScreen("A run is in progress. Stop it (it is stored as cancelled) and quit?", "Stop and quit"), answered)

