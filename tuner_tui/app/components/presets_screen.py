"""The presets screen (F7): every preset, marked with space and run together with F5.

The marked presets run side by side, one training process each, one CPU thread each, as many at
a time as the machine has cores (the rest wait their turn; see `tuner_tui.app.slots`). Each run
is stored under its preset like any run. Below the presets, one compact row per run shows its
state, epoch and progress, loss, test accuracy and time left. `tuner-tui lab [fmnist|cifar10|all]`
opens here with the lab's experiments marked. Enter loads a preset into the tuning form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label
from textual.worker import Worker, WorkerState

from tuner_tui.app.components.record_table import RecordTable, TableColumn
from tuner_tui.app.messages import SlotRejected, SlotReported, SlotsEnded
from tuner_tui.app.slots import LabLaunch, Slot
from tuner_tui.app.slots_controller import SlotsController
from tuner_tui.engine.config import ConfigError, RunConfig
from tuner_tui.engine.events import RunStatus
from tuner_tui.formatting import format_number, format_percent, format_seconds, plural
from tuner_tui.runs.presets import Preset, list_presets
from tuner_tui.runs.store import ResultsStore
from tuner_tui.runs.training_process import TrainingRunner

if TYPE_CHECKING:
    from tuner_tui.app.app import TunerApp

PRESET_COLUMNS: tuple[TableColumn[Preset], ...] = (
    TableColumn("preset", "preset", cell=lambda p: p.name, value=lambda p: p.name),
    TableColumn("dataset", "dataset", cell=lambda p: p.config.dataset, value=lambda p: p.config.dataset),
    TableColumn("layers", "layers", cell=lambda p: p.config.layers_label, value=lambda p: p.config.hidden),
    TableColumn("lr", "lr", cell=lambda p: f"{p.config.lr:g}", value=lambda p: p.config.lr, numeric=True),
    TableColumn("batch", "batch", cell=lambda p: str(p.config.batch_size), value=lambda p: p.config.batch_size,
                numeric=True),
    TableColumn("epochs", "epochs", cell=lambda p: str(p.config.epochs), value=lambda p: p.config.epochs,
                numeric=True),
    TableColumn("reg", "λ", cell=lambda p: f"{p.config.reg:g}", value=lambda p: p.config.reg, numeric=True),
    TableColumn("source", "source", cell=lambda p: "shipped" if p.shipped else "user", value=lambda p: p.shipped),
)
SLOT_COLUMNS = ("preset", "state", "epoch", "progress", "loss", "test acc", "left")
BAR_WIDTH = 10


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """`██████░░░░ 60%`: the same in colour and without."""
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled) + f" {fraction * 100:3.0f}%"


def slot_cells(slot: Slot) -> list[str]:
    """One run's compact row: preset, state, epoch, progress, loss, test acc, time left."""
    epoch = f"{slot.epoch}/{slot.epochs}" if slot.epoch else f"–/{slot.epochs}"
    left = format_seconds(slot.eta_s) if slot.eta_s is not None else ""
    told = slot.message and slot.ended and slot.status is not RunStatus.COMPLETED  # why it did not complete
    state = f"{slot.status} · {slot.message}" if told else slot.status
    loss = format_number(slot.loss) if slot.loss is not None else ""
    accuracy = format_percent(slot.test_accuracy) if slot.test_accuracy is not None else ""
    return [slot.preset, state, epoch, progress_bar(slot.done_fraction), loss, accuracy, left]


class PresetsScreen(Screen):
    """Mark presets and run them together (F7). Installed once: its runs go on while other screens show."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "start", "Start marked", priority=True),
        Binding("f6", "stop", "Stop all", priority=True),
        Binding("space", "mark", "Mark"),
        Binding("escape", "app.pop_screen", "Back"),
        Binding("enter", "load", "Load into form", show=False),
        Binding("u", "unmark_all", "Unmark all", show=False),
    ]

    def __init__(
        self, store: ResultsStore, runner: TrainingRunner, *, parallel: int, lab: LabLaunch | None = None,
    ) -> None:
        super().__init__(id="presets")
        self.store = store
        self.parallel = parallel
        self.lab = lab or LabLaunch(())
        self.controller = SlotsController(self, runner, store, self.draw_slots, force=self.lab.force)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≋")
        yield Label("", id="presets-status")
        yield RecordTable(PRESET_COLUMNS, lambda p: p.name, fixed_columns=2, id="presets-table")
        yield Label("", id="slots-status")
        yield DataTable(id="slots-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        slots: DataTable[Text] = self.query_one("#slots-table", DataTable)
        for title in SLOT_COLUMNS:
            slots.add_column(Text(title, justify="left" if title in ("preset", "state") else "right"), key=title)
        table = self.table
        table.show(list_presets())
        table.marked = [name for name in self.lab.presets if table.record(name) is not None]
        table.show(table.records)
        table.focus()
        self.draw_slots()

    @property
    def table(self) -> RecordTable[Preset]:
        return self.query_one("#presets-table", RecordTable)

    # --- marking ------------------------------------------------------------------------

    def action_mark(self) -> None:
        self.table.toggle_mark()
        self._show_status()

    def action_unmark_all(self) -> None:
        self.table.marked = []
        self.table.show(self.table.records)
        self._show_status()

    def action_load(self) -> None:
        preset = self.table.current()
        if preset is not None:
            cast("TunerApp", self.app).load_preset(preset.name)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.data_table is self.table:
            self.action_load()

    # --- running --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.controller.running

    def entries(self) -> list[tuple[str, RunConfig]] | str:
        """The marked presets' configs with the lab's `--set` values, or why they cannot run."""
        values = dict(item.split("=", 1) for item in self.lab.overrides if "=" in item)
        out = []
        for preset in self.table.marked_records():
            try:
                out.append((preset.name, RunConfig.from_mapping(values, base=preset.config)))
            except ConfigError as error:
                return f"{preset.name}: {error}"
        return out

    def action_start(self) -> None:
        """Run the marked presets together (F5)."""
        if self.running:
            return
        entries = self.entries()
        if isinstance(entries, str):
            self.notify(entries, severity="error", markup=False)
            return
        if not entries:
            self.notify("mark presets with space, then press F5", severity="warning")
            return
        self.controller.start(entries, min(len(entries), self.lab.workers or self.parallel))
        self.query_one("#slots-table").focus()

    def action_stop(self) -> None:
        """Stop every run (F6): each is stored as cancelled; the queued ones do not start."""
        self.controller.stop()

    def on_slot_reported(self, message: SlotReported) -> None:
        self.controller.on_event(message.index, message.event)

    def on_slot_rejected(self, message: SlotRejected) -> None:
        self.controller.on_rejected(message.index, message.reason)

    def on_slots_ended(self, message: SlotsEnded) -> None:
        slots = self.controller.slots
        completed = sum(slot.status is RunStatus.COMPLETED for slot in slots)
        self.notify(f"{completed} of {plural(len(slots), 'run')} completed", markup=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.group == "slots":
            event.stop()
            self.controller.on_failed(int(event.worker.name.removeprefix("slot ")), event.worker.error)

    # --- drawing ----------------------------------------------------------------------------

    def draw_slots(self) -> None:
        """Every run's row, and the line above them."""
        table: DataTable[Text] = self.query_one("#slots-table", DataTable)
        slots = self.controller.slots
        if table.row_count != len(slots):
            table.clear()
            for index, slot in enumerate(slots):
                table.add_row(*self._cells(slot), key=str(index))
        else:
            for index, slot in enumerate(slots):
                for column, cell in zip(SLOT_COLUMNS, self._cells(slot), strict=True):
                    table.update_cell(str(index), column, cell, update_width=True)
        self._show_status()

    def _cells(self, slot: Slot) -> Sequence[Text]:
        return [Text(cell, justify="left" if column in ("preset", "state") else "right")
                for column, cell in zip(SLOT_COLUMNS, slot_cells(slot), strict=True)]

    def _show_status(self) -> None:
        marked = len(self.table.marked)
        settings = f" · with {' '.join(self.lab.overrides)}" if self.lab.overrides else ""
        at_once = self.lab.workers or self.parallel
        self.query_one("#presets-status", Label).update(Text(
            f"{marked} of {plural(len(self.table.records), 'preset')} marked{settings} · F5 runs the marked "
            f"together, {at_once} at a time"
        ))
        slots = self.controller.slots
        if not slots:
            text = "no runs yet"
        else:
            counts: dict[str, int] = {}
            for slot in slots:
                counts[slot.status] = counts.get(slot.status, 0) + 1
            text = "runs: " + " · ".join(f"{count} {status}" for status, count in counts.items())
            if self.controller.stopping and self.running:
                text += " · stopping…"
        self.query_one("#slots-status", Label).update(Text(text))
