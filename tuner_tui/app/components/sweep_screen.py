"""The sweeps screen (F4): pick or edit a spec, start and stop a sweep, and watch any sweep.

A sweep started here runs as `tuner-tui sweep SPEC --no-ui` in a child process
(`tuner_tui.app.sweep_process`), the same path as in a terminal. What the screen shows, it reads
from the study and the results store about once a second (`tuner_tui.app.sweep_reading`), so it
shows a sweep started in another terminal or as a SLURM job the same way: the trial table (state,
epochs reached, objective, parameters; the best trial starred), the best value so far, one
parameter against the objective (p: the next one) and the pruning ladder. Enter opens a trial's
run; b loads the best trial's config into the tuning form; e edits the spec.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Select
from textual.worker import Worker, WorkerState

from tuner_tui.app.components.record_table import RecordTable
from tuner_tui.app.components.run_detail import RunDetailScreen
from tuner_tui.app.components.spec_form import SpecFormScreen
from tuner_tui.app.components.study_screen import StudyScreen
from tuner_tui.app.components.sweep_plots import BestSoFarPlot, LadderPlot, ParamPlot, ladder_text
from tuner_tui.app.components.trial_columns import KEY_COLUMNS, columns_signature, trial_columns, trial_key
from tuner_tui.app.messages import LoadConfig, SweepChildEnded, SweepRead
from tuner_tui.app.sweep_process import SweepExit, run_sweep_child
from tuner_tui.app.sweep_reading import (
    SweepReader,
    SweepView,
    import_cluster_journals,
)
from tuner_tui.formatting import error_line, printable
from tuner_tui.runs.child_commands import SweepLaunch
from tuner_tui.runs.records import RunRecord
from tuner_tui.runs.store import ResultsStore
from tuner_tui.sweeps.locations import SweepLocation, known_sweeps, storage_of
from tuner_tui.sweeps.spec import SpecError, list_specs, load_spec, user_specs_dir

if TYPE_CHECKING:
    from tuner_tui.sweeps.summary import SweepSummary, TrialRow

POLL_S = 1.0
LIST_EVERY = 5  # the list of sweeps is read again every this many reads
EXIT_STOPPED = 143  # 128 + SIGTERM


class SweepScreen(Screen):
    """Start, stop and watch sweeps (F4). Installed once: a sweep it started goes on while other screens show."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "start", "Start", priority=True),
        Binding("f6", "stop", "Stop", priority=True),
        Binding("escape", "back", "Back"),
        Binding("e", "edit_spec", "Edit spec"),
        Binding("b", "load_best", "Load best"),
        Binding("p", "next_param", "Next param"),
        Binding("v", "views", "Views"),
        Binding("a", "sort_best", "Best first", show=False),
    ]

    def __init__(
        self, store: ResultsStore, *, storage: str | None = None, data_root: str | None = None,
        device: str | None = None, launch: SweepLaunch | None = None,
    ) -> None:
        super().__init__(id="sweeps")
        self.store = store
        self.storage = storage
        self.data_root = data_root
        self.device = device
        self.launch = launch
        self.location: SweepLocation | None = None
        self.locations: list[SweepLocation] = []
        self.readers: dict[SweepLocation, SweepReader] = {}
        self.view: SweepView | None = None
        self.read_error: str | None = None
        self.reading = False
        self.reads = 0
        self.cancel = threading.Event()
        self.child: SweepLocation | None = None  # the sweep this screen started, while it runs
        self.last_exit: SweepExit | None = None
        self.signature: tuple[str, ...] = ()
        self.shown_options: list[tuple[Text, str]] = []
        self.spec_names: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≋")
        with Vertical(id="sweep-controls"):
            with Horizontal(classes="sweep-row"):
                yield Label("spec", classes="sweep-label")
                yield Select([], prompt="(pick a spec)", id="spec-select", compact=True)
                yield Label("name", classes="sweep-label-inner")
                yield Input(id="sweep-name", compact=True, select_on_focus=True)
                yield Label("trials", classes="sweep-label-inner")
                yield Input(id="sweep-trials", compact=True, select_on_focus=True)
            with Horizontal(classes="sweep-row"):
                yield Label("set", classes="sweep-label")
                yield Input(id="sweep-set", compact=True, placeholder="KEY=VALUE … (e.g. epochs=2)")
                yield Button("Start F5", id="sweep-start", variant="success", compact=True, action="screen.start")
                yield Button("Stop F6", id="sweep-stop", variant="error", compact=True, disabled=True,
                             action="screen.stop")
                yield Button("Edit e", id="sweep-edit", compact=True, action="screen.edit_spec")
            with Horizontal(classes="sweep-row"):
                yield Label("watch", classes="sweep-label")
                yield Select([], prompt="(no sweep yet)", id="watch-select", compact=True)
        yield Label("", id="sweep-status")
        yield Label("", id="sweep-ladder")
        yield RecordTable((), trial_key, fixed_columns=KEY_COLUMNS, id="trial-table")
        with Horizontal(id="sweep-plots", classes="plots"):
            yield BestSoFarPlot(id="best-plot")
            yield ParamPlot(id="param-plot")
            yield LadderPlot(id="ladder-plot")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.table.focus()
        self.refresh_specs()
        self.set_interval(POLL_S, self.poll)
        self._show_status()
        if self.launch is not None:
            self._fill(self.launch)
            self.start(self.launch)
        else:
            self.poll()

    # --- specs ------------------------------------------------------------------------------

    def refresh_specs(self, select: str | None = None) -> None:
        """List the shipped and user specs (and a spec given by path) in the spec picker."""
        specs, _ = list_specs()
        names = [spec.name for spec in specs]
        if self.launch is not None and self.launch.spec not in names:
            names.append(self.launch.spec)
        self.spec_names = names
        picker: Select[str] = self.query_one("#spec-select", Select)
        chosen = select or (str(picker.value) if picker.value is not Select.NULL else None)
        picker.set_options([(Text(name), name) for name in names])
        if chosen in names:
            picker.value = chosen

    @property
    def spec(self) -> str | None:
        value = self.query_one("#spec-select", Select).value
        return None if value is Select.NULL else str(value)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "spec-select" and event.value is not Select.NULL:
            self._spec_chosen(str(event.value))
        elif event.select.id == "watch-select" and event.value is not Select.NULL:
            location = next((loc for loc in self.locations if loc.name == event.value), None)
            if location is not None and location != self.location:
                self.watch_sweep(location)

    def _spec_chosen(self, name: str) -> None:
        """Show the spec's name and budget as the defaults; watch its sweep if there is one."""
        try:
            spec = load_spec(name)
        except SpecError as error:
            self._say(error.problems[0], error=True)
            return
        self.query_one("#sweep-name", Input).placeholder = spec.name
        self.query_one("#sweep-trials", Input).placeholder = str(spec.search.trials)
        known = next((loc for loc in self.locations if loc.name == spec.name), None)
        if known is not None and self.child is None and known != self.location:
            self.watch_sweep(known)

    def action_edit_spec(self) -> None:
        """Edit the picked spec (or a new one) in the spec form; saved as a user spec."""

        def saved(name: str | None) -> None:
            if name:
                self.refresh_specs(select=name)
                self.notify(f"saved sweep spec {name} in {user_specs_dir()}", markup=False)

        self.app.push_screen(SpecFormScreen(self.spec), saved)

    def _fill(self, launch: SweepLaunch) -> None:
        self.refresh_specs(select=launch.spec)
        self.query_one("#sweep-name", Input).value = launch.name or ""
        self.query_one("#sweep-trials", Input).value = str(launch.trials) if launch.trials else ""
        self.query_one("#sweep-set", Input).value = " ".join(launch.overrides)

    # --- starting and stopping ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a sweep this screen started is still running."""
        return self.child is not None

    def action_start(self) -> None:
        """Start the picked spec with the name, budget and `--set` values of the fields (F5)."""
        if self.running:
            return
        spec = self.spec
        if spec is None:
            self._say("pick a spec to start (or e to write one)", error=True)
            return
        name = self.query_one("#sweep-name", Input).value.strip() or None
        trials_text = self.query_one("#sweep-trials", Input).value.strip()
        if trials_text and not (trials_text.isdigit() and int(trials_text) >= 1):
            self._say(f"trials: must be a whole number of at least 1, got {trials_text!r}", error=True)
            return
        overrides = tuple(self.query_one("#sweep-set", Input).value.split())
        launch = SweepLaunch(
            spec, name=name, trials=int(trials_text) if trials_text else None, overrides=overrides,
            data_root=self.data_root, device=self.device, storage=self.storage,
        )
        self.start(launch)

    def start(self, launch: SweepLaunch) -> None:
        """Check the spec with its `--set` values, then run the sweep in a child process and watch it."""
        bad = [item for item in launch.overrides if "=" not in item]
        if bad:
            self._say(f"set: expected KEY=VALUE, got {bad[0]!r}", error=True)
            return
        values = dict(item.split("=", 1) for item in launch.overrides)
        for key, value in (("data_root", launch.data_root), ("device", launch.device)):
            if value is not None:
                values[key] = value
        try:
            spec = load_spec(launch.spec, overrides=values)
        except SpecError as error:
            self._say("; ".join(problem.removeprefix(f"{error.source}: ") for problem in error.problems), error=True)
            return
        name = launch.name or spec.name
        location = SweepLocation(name, storage_of(
            name, storage=launch.storage, registered=self.store.registered_sweeps(), store_path=self.store.path
        ))
        self.cancel = threading.Event()
        self.child = location
        self.last_exit = None
        self.run_worker(
            partial(self._run_child, launch.argv(str(self.store.path)), self.cancel), name="sweep", group="sweep-child",
            thread=True, exit_on_error=False,
        )
        self._enable_buttons()
        self.watch_sweep(location)
        self.notify(f"started sweep {name}", markup=False)

    def _run_child(self, argv: list[str], cancel: threading.Event) -> None:
        """The worker: the sweep's process lives as long as this thread."""
        self.post_message(SweepChildEnded(run_sweep_child(argv, cancel)))

    def action_stop(self) -> None:
        """Stop the sweep started here (F6): its running trials are stored as cancelled."""
        if not self.running:
            if self.view is not None and self.view.summary.state == "running":
                self.notify("this sweep was started outside the app: stop it where it runs", severity="warning")
            return
        if not self.cancel.is_set():
            self.cancel.set()
            self._show_status()

    def on_sweep_child_ended(self, message: SweepChildEnded) -> None:
        self._ended(message.exit)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        event.stop()
        if event.worker.group == "sweep-child":
            self._ended(SweepExit(-1, (f"the sweep could not run: {event.worker.error}",), False, False))
        elif event.worker.group == "sweep-read":
            self.reading = False
            self.read_error = f"cannot read the sweep: {event.worker.error}"
            self._show_status()

    def _ended(self, exit: SweepExit) -> None:
        name = self.child.name if self.child else "the sweep"
        self.child = None
        self.last_exit = exit
        self._enable_buttons()
        self._show_status()
        if exit.code == 0:
            self.notify(f"sweep {name} ended", markup=False)
        elif exit.code == EXIT_STOPPED:
            self.notify(f"sweep {name} stopped", markup=False)
        else:
            self.notify(f"sweep {name}: {self._exit_text(exit)}", severity="error", markup=False)
        self.poll()

    def _enable_buttons(self) -> None:
        self.query_one("#sweep-start", Button).disabled = self.running
        self.query_one("#sweep-stop", Button).disabled = not self.running

    # --- watching -------------------------------------------------------------------------------

    def watch_sweep(self, location: SweepLocation) -> None:
        """Show the sweep at `location` (read once a second from now on)."""
        self.location = location
        self.view = None
        self.read_error = None
        self._show_list()
        self.call_later(self._show_view)
        self._show_status()
        self.poll()

    def poll(self) -> None:
        """Read the watched sweep again (off the UI thread), unless a read is under way."""
        if self.reading or not self.is_attached:
            return
        if not self.is_active:
            return  # out of sight (or the app is closing): read again when shown
        self.reading = True
        with_list = self.reads % LIST_EVERY == 0
        self.reads += 1
        reader = None
        if self.location is not None:
            reader = self.readers.setdefault(self.location, SweepReader(self.location))
        self.run_worker(
            partial(self._read, reader, with_list), name="read", group="sweep-read", thread=True, exit_on_error=False,
        )

    def on_screen_resume(self) -> None:
        self.refresh_specs()
        self.poll()

    def _read(self, reader: SweepReader | None, with_list: bool) -> None:
        """The worker: the list of sweeps (every few reads) and the watched sweep."""
        from tuner_tui.sweeps.storages import StudyError

        locations = None
        view, error = None, None
        skipped: tuple[str, ...] = ()
        try:
            if with_list:
                try:
                    locations = known_sweeps(
                        storage=self.storage, registered=self.store.registered_sweeps(), store_path=self.store.path
                    )
                except StudyError:
                    locations = None
            if reader is not None:
                skipped = tuple(str(problem) for problem in import_cluster_journals(self.store).problems)
                view = reader.read()
        except StudyError as problem:
            error = str(problem)
        except Exception as problem:  # a storage busy or failing mid-read: say so, read again next time
            error = error_line(problem)
        self.post_message(SweepRead(reader.location if reader else None, view, locations, error, skipped))

    async def on_sweep_read(self, message: SweepRead) -> None:
        self.reading = False
        for line in message.skipped:
            self.notify(printable(line), title="journal line skipped", severity="warning", markup=False)
        if message.locations is not None:
            self.locations = message.locations
            if self.location is None and self.locations:
                self.watch_sweep(self.locations[-1])
                return
            self._show_list()
        if message.location != self.location:
            return  # a read of a sweep no longer watched
        self.read_error = message.error
        if message.view is not None:
            self.view = message.view
            spec_name = message.view.summary.spec_name
            if self.spec is None and spec_name in self.spec_names:  # show which spec the sweep runs
                self.query_one("#spec-select", Select).value = spec_name
            await self._show_view()
        self._show_status()

    def _show_list(self) -> None:
        """The sweeps to pick from (and the watched one, before it is listed)."""
        locations = list(self.locations)
        if self.location is not None and self.location not in locations:
            locations.append(self.location)
        picker: Select[str] = self.query_one("#watch-select", Select)
        options = [(Text(loc.name), loc.name) for loc in locations]
        if options != self.shown_options:
            self.shown_options = options
            picker.set_options(options)
        if self.location is not None and picker.value != self.location.name:
            picker.value = self.location.name

    async def _show_view(self) -> None:
        view = self.view
        table = self.table
        if view is None:
            table.show([])
        else:
            signature = columns_signature(view)
            if signature != self.signature:
                self.signature = signature
                focused = table.has_focus
                await table.remove()
                table = RecordTable(trial_columns(view), trial_key, fixed_columns=KEY_COLUMNS, id="trial-table")
                await self.mount(table, before=self.query_one("#sweep-plots"))
                if focused:
                    table.focus()
            best = view.summary.best()
            table.show(sorted(view.summary.trials, key=lambda t: -t.number), best=[trial_key(best)] if best else [])
        for plot in (self.query_one(BestSoFarPlot), self.query_one(ParamPlot), self.query_one(LadderPlot)):
            plot.show(view)
        self.query_one("#sweep-ladder", Label).update(Text(ladder_text(view) if view else ""))

    @property
    def table(self) -> RecordTable[TrialRow]:
        return self.query_one("#trial-table", RecordTable)

    # --- what the status line says --------------------------------------------------------------

    def _say(self, text: str, *, error: bool = False) -> None:
        self.notify(text, severity="error" if error else "information", markup=False)

    def _show_status(self) -> None:
        self.query_one("#sweep-status", Label).update(Text(self.status_text()))

    def status_text(self) -> str:
        """Which sweep is shown, who runs it, how far it is, and its best trial."""
        parts: list[str] = []
        if self.location is None:
            parts.append("no sweep yet: pick a spec and press F5 (or e to write one)")
        else:  # the watch picker above names the sweep
            if self.running and self.child == self.location:
                parts.append("stopping…" if self.cancel.is_set() else "started here")
            view = self.view
            if view is not None:
                starting = self.running and self.child == self.location and view.summary.state == "stopped"
                parts.append(summary_text(view.summary, state="starting" if starting else None))
            elif self.read_error:
                parts.append("starting…" if self.running else self.read_error)
            else:
                parts.append("reading…")
        if self.last_exit is not None and self.last_exit.code not in (0, EXIT_STOPPED):
            parts.append(self._exit_text(self.last_exit))
        return " · ".join(parts)

    def _exit_text(self, exit: SweepExit) -> str:
        if exit.errors:
            return "; ".join(exit.errors)
        last = exit.last_lines[-1] if exit.last_lines else ""
        return f"exit code {exit.code}" + (f": {last}" if last else "")

    # --- trials -----------------------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def _run_of(self, trial: TrialRow | None) -> RunRecord | None:
        if trial is None:
            return None
        record = self.store.find_run(trial.run_uid) if trial.run_uid else None
        if record is None:
            self.notify(f"trial {trial.number} has no stored run yet", severity="warning", markup=False)
        return record

    def action_open(self) -> None:
        """Open the run of the trial under the cursor (Enter)."""
        record = self._run_of(self.table.current())
        if record is not None:
            self.app.push_screen(RunDetailScreen(record))

    def action_load_best(self) -> None:
        """Load the best trial's config into the tuning form (b)."""
        best = self.view.summary.best() if self.view is not None else None
        if best is None:
            self.notify("no completed trial yet", severity="warning")
            return
        record = self._run_of(best)
        if record is not None:
            self.post_message(LoadConfig(record))

    def action_next_param(self) -> None:
        self.query_one(ParamPlot).next_param(self.view)

    def action_views(self) -> None:
        """The study views (curves, importance, parallel coordinates, ...) of the sweep shown (v)."""
        if self.location is None:
            self.notify("no sweep to show yet", severity="warning")
            return
        self.app.push_screen(StudyScreen(self.location.storage, self.location.name))

    def action_sort_best(self) -> None:
        self.table.sort_by("value")

    def action_back(self) -> None:
        self.app.pop_screen()


def summary_text(summary: SweepSummary, *, state: str | None = None) -> str:
    """`running · 6/12 finished · 5 completed · 1 pruned · 1 running · best #4: 86.02` (the best trial's
    parameters are in its starred row); `state` in place of the summary's own."""
    from tuner_tui.engine.events import RunStatus

    parts = [
        state or summary.state,
        f"{summary.finished}/{summary.budget or '?'} finished",
        f"{summary.count(RunStatus.COMPLETED)} completed",
        f"{summary.count(RunStatus.PRUNED, RunStatus.DIVERGED)} pruned",
    ]
    failed = summary.count(RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED)
    if failed:
        parts.append(f"{failed} failed or stopped")
    held = sum(1 for t in summary.trials if t.held)
    running = summary.count(RunStatus.RUNNING) - held
    if running:
        parts.append(f"{running} running")
    if held:
        parts.append(f"{held} held for a pack")
    best = summary.best()
    if best is not None and best.value is not None:
        parts.append(f"best #{best.number}: {best.value:.4g}")
    return " · ".join(parts)
