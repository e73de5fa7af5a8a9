"""The Textual app: edit a config, run it, watch it live, browse, plot and compare past runs.

The first screen, the tuning screen, owns the run (`tuner_tui.app.run_controller`); the app holds
the global keys and moves between screens. Training happens in a child process
(`tuner_tui.runs.training_process`) that a standby has warmed up with torch imported; this module
imports neither, so the first screen never waits for torch.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from pathlib import Path, PurePath
from typing import ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from tuner_tui.app.components.confirm import ConfirmScreen
from tuner_tui.app.components.help_screen import HelpScreen
from tuner_tui.app.components.model_screen import ModelScreen
from tuner_tui.app.components.presets_screen import PresetsScreen
from tuner_tui.app.components.runs_screen import RunsScreen
from tuner_tui.app.components.save_preset import SavePresetScreen
from tuner_tui.app.components.sweep_screen import SweepScreen
from tuner_tui.app.components.tuning_screen import Machine, TuningScreen
from tuner_tui.app.device_choices import GpuLister, visible_gpus
from tuner_tui.app.messages import LoadConfig, RunEnded, SlotsEnded, SweepChildEnded
from tuner_tui.app.palette import PresetCommands
from tuner_tui.app.slots import LabLaunch
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import Event
from tuner_tui.engine.gpu import GpuProbe, NvmlGpuProbe
from tuner_tui.runs.child_commands import SweepLaunch
from tuner_tui.runs.records import RunLabels
from tuner_tui.runs.store import ResultsStore
from tuner_tui.runs.system_info import SystemInfo
from tuner_tui.runs.training_process import TrainingRunner, run_in_child_process
from tuner_tui.runs.training_process import warm_up as warm_up_training_process
from tuner_tui.usercode.config import UserRunConfig
from tuner_tui.usercode.model_file import ModelFile


class ChildProcessRunner:
    """The app's runner: the `--no-ui` path in a child process (see `tuner_tui.runs.training_process`);
    `threads`: torch's CPU threads in it (None: torch's default)."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

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
        return run_in_child_process(
            config, store.path, on_event, cancel, labels=labels, force=force, threads=self.threads
        )

    def warm_up(self) -> None:
        warm_up_training_process()


def stop_question(busy: list[str]) -> str:
    """`A run is in progress. Stop it (it is stored as cancelled) and quit?`, for whatever is busy."""
    one = busy in (["a run"], ["a sweep"])
    what = " and ".join(busy)
    return (
        f"{what[0].upper()}{what[1:]} {'is' if one else 'are'} in progress. "
        f"Stop {'it (it is' if one else 'them (they are'} stored as cancelled) and quit?"
    )


class TunerApp(App):
    """tuner-tui's app. Every collaborator can be replaced (tests use a fake runner, probe and GPU list)."""

    CSS_PATH: ClassVar[list[str | PurePath]] = [
        Path(__file__).with_name(name) for name in ("app.tcss", "sweeps.tcss", "presets.tcss")
    ]
    TITLE = "tuner-tui"
    SUB_TITLE = "tune the Lab 4 network"
    # Textual declares this a list attribute (ClassVar | None), so it cannot be annotated as a ClassVar here.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]  # noqa: RUF012
    COMMANDS = App.COMMANDS | {PresetCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help", priority=True),  # first: still in the footer at 80 columns
        Binding("question_mark", "help", "Help", show=False),  # typed as text in a field
        Binding("f2", "runs", "Runs", priority=True),
        Binding("f4", "sweeps", "Sweeps", priority=True),
        Binding("f7", "presets", "Presets", priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        store: ResultsStore,
        *,
        config: RunConfig | None = None,
        preset_name: str | None = None,
        preset_config: RunConfig | None = None,
        runner: TrainingRunner | None = None,
        gpu_probe: GpuProbe | None = None,
        system: SystemInfo | None = None,
        list_gpus: GpuLister = visible_gpus,
        watch_gpu: bool = True,
        sweep: SweepLaunch | None = None,
        storage: str | None = None,
        lab: LabLaunch | None = None,
        model: ModelFile | None = None,
        model_config: UserRunConfig | None = None,
    ) -> None:
        """`preset_name`: the preset `config` came from (`preset_config`, its own config, when `config`
        was edited away from it); `sweep`: open on the sweeps screen and start it; `storage`: where
        sweeps' studies go (`--storage`); `lab`: open on the presets screen with these presets marked;
        `model`: a model file of the user's, whose fields (`model_config`) the first screen edits."""
        super().__init__()
        self.store = store
        probe = gpu_probe or NvmlGpuProbe()
        self.machine = Machine(
            runner=runner or ChildProcessRunner(), store=store, system=system or SystemInfo(probe),
            list_gpus=list_gpus, watch_gpu=watch_gpu,
        )
        self.initial_config = config or RunConfig()
        self.initial_preset_config = preset_config
        self.model = model
        self.model_config = model_config
        self.initial_preset = Path(preset_name).stem if preset_name and preset_name.endswith(".toml") else preset_name
        self.quit_after_run = False
        self.tuning: TuningScreen | ModelScreen
        self.sweep_launch = sweep
        self.storage = storage
        self.sweeps: SweepScreen | None = None  # made on first use, then kept: a sweep it started goes on
        self.lab_launch = lab
        self.slot_runner = runner or ChildProcessRunner(threads=1)  # several runs side by side: one thread each
        self.presets: PresetsScreen | None = None  # made on first use, then kept: its runs go on

    def get_default_screen(self) -> Screen:
        from tuner_tui.runs.presets import list_presets

        if self.model is not None and self.model_config is not None:
            self.tuning = ModelScreen(self.model, self.model_config, self.store)
            return self.tuning
        names = [p.name for p in list_presets()]
        self.tuning = TuningScreen(
            self.initial_config, names, self.initial_preset, self.machine, self.initial_preset_config
        )
        return self.tuning

    def on_mount(self) -> None:
        if self.sweep_launch is not None:
            self.call_later(self.action_sweeps)
        elif self.lab_launch is not None:
            self.call_later(self.action_presets)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette's own commands, with its "Keys" opening the app's key help."""
        for command in super().get_system_commands(screen):
            if command.title != "Keys":
                yield command
        yield SystemCommand("Keys", "The app's keys, screen by screen (? or F1)", self.action_help)

    # --- the run (the tuning screen runs it) -------------------------------------------

    def on_run_ended(self, message: RunEnded) -> None:
        self._after_runs_ended()

    def _after_runs_ended(self) -> None:
        """A run (or the several presets' runs) ended: quit if asked to, else show the new runs."""
        if self.quit_after_run:
            self._quit_when_idle()
            return
        for screen in self.screen_stack:
            if isinstance(screen, RunsScreen):
                screen.reload()

    # --- screens ----------------------------------------------------------------------

    def switch_to_tuning(self) -> None:
        while self.screen is not self.tuning:
            self.pop_screen()

    def action_runs(self) -> None:
        if isinstance(self.screen, RunsScreen):
            self.pop_screen()
            return
        self.switch_to_tuning()
        self.push_screen(RunsScreen(self.store))

    def action_sweeps(self) -> None:
        if isinstance(self.screen, SweepScreen):
            self.pop_screen()
            return
        if self.sweeps is None:
            config = self.initial_config
            self.sweeps = SweepScreen(
                self.store, storage=self.storage, data_root=config.data_root,
                device=config.device if config.device != "auto" else None, launch=self.sweep_launch,
            )
            # Installed: popping it keeps it mounted, so coming back shows the same sweep and
            # never mounts (or starts) it again.
            self.install_screen(self.sweeps, name="sweeps")
        self.switch_to_tuning()
        self.push_screen(self.sweeps)

    def on_sweep_child_ended(self, message: SweepChildEnded) -> None:
        if self.quit_after_run:
            self._quit_when_idle()

    def action_presets(self) -> None:
        if isinstance(self.screen, PresetsScreen):
            self.pop_screen()
            return
        if self.presets is None:
            from tuner_tui.runs.parallel import AUTO, resolve_workers

            parallel = resolve_workers(AUTO, self.initial_config.device)
            self.presets = PresetsScreen(self.store, self.slot_runner, parallel=parallel, lab=self.lab_launch)
            self.install_screen(self.presets, name="presets")  # kept mounted while its runs go on
        self.switch_to_tuning()
        self.push_screen(self.presets)

    def on_slots_ended(self, message: SlotsEnded) -> None:
        self._after_runs_ended()

    def on_load_config(self, message: LoadConfig) -> None:
        """A stored run's config into the form. A sweep trial's validation share is set back to 0
        (a run from the form trains on the whole training set), and the note says so."""
        config = message.record.config
        note = f"loaded the config of run {message.record.id}"
        if not isinstance(config, RunConfig) or not isinstance(self.tuning, TuningScreen):
            self._load_user_config(message)
            return
        if config.validation:
            note += f"; its validation share {config.validation:g} (held out by its sweep) is reset to 0"
            config = dataclasses.replace(config, validation=0.0)
        self.switch_to_tuning()
        assert isinstance(self.tuning, TuningScreen)
        self.tuning.form.load(config)
        self.notify(note, markup=False)

    def _load_user_config(self, message: LoadConfig) -> None:
        """A run's config into a form of the other kind cannot go: a model's run goes to its model's form."""
        config, run_id = message.record.config, message.record.id
        tuning = self.tuning
        if isinstance(config, UserRunConfig) and isinstance(tuning, ModelScreen) and config.model == str(
            tuning.model.path
        ):
            self.switch_to_tuning()
            tuning.load_values(config, run_id)
            return
        where = f"tuner-tui --preset {config.model}" if isinstance(config, UserRunConfig) else "tuner-tui"
        self.notify(f"run {run_id} is not a run of this form's model: open it with {where}", markup=False)

    def load_preset(self, name: str) -> None:
        """Load preset `name` into the tuning screen's form."""
        self.switch_to_tuning()
        if isinstance(self.tuning, ModelScreen):
            self.notify("this app edits a model file's fields; open a preset with tuner-tui --preset NAME",
                        markup=False)
            return
        self.tuning.load_preset(name)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen(self.BINDINGS))

    def action_save_preset(self) -> None:
        tuning = self.tuning
        if isinstance(tuning, ModelScreen):
            self.notify(f"a model's defaults are in its file: {tuning.model.path}", markup=False)
            return
        state = tuning.form_state
        if state is None or state.config is None:
            self.notify("fix the form before saving it as a preset", severity="error")
            return

        def saved(name: str | None) -> None:
            if name:
                from tuner_tui.runs.presets import list_presets

                tuning.form.adopt_preset(name, [p.name for p in list_presets()])
                self.notify(f"saved preset {name}", markup=False)

        self.push_screen(SavePresetScreen(state.config), saved)

    def busy(self) -> list[str]:
        """What would be stopped by quitting: `a run`, `a sweep`."""
        busy = ["a run"] if self.tuning.running else []
        if self.sweeps is not None and self.sweeps.running:
            busy.append("a sweep")
        if self.presets is not None and self.presets.running:
            busy.append("several runs")
        return busy

    def _quit_when_idle(self) -> None:
        if not self.busy():
            self.exit()

    async def action_quit(self) -> None:
        busy = self.busy()
        if not busy:
            self.exit()
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            if not self.busy():  # it ended while the question was open
                self.exit()
                return
            self.quit_after_run = True
            self.tuning.action_stop()
            if self.sweeps is not None:
                self.sweeps.action_stop()
            if self.presets is not None:
                self.presets.action_stop()

        self.push_screen(ConfirmScreen(stop_question(busy), "Stop and quit"), answered)
