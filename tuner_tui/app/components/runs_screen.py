"""The runs screen: every stored run with the lab's columns; a run's curves and config; compare two."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Sparkline, Static

from engine.config import DATASETS
from engine.events import RunStatus
from tuner_tui.formatting import config_summary, format_seconds
from tuner_tui.runs.lab_table import LAB_COLUMNS, STATUS_COLUMN, Column
from tuner_tui.runs.store import RunRecord

DATASET_COLUMN = Column("dataset", lambda r: r.config.dataset, lambda r: r.config.dataset, numeric=False)
TABLE_COLUMNS: tuple[Column, ...] = (STATUS_COLUMN, DATASET_COLUMN, *LAB_COLUMNS)
MARK = "●"


def run_summary(record: RunRecord) -> str:
    status = record.status
    if record.message and record.message != RunStatus.COMPLETED.value:
        status += f" — {record.message}"
    return f"run {record.id} · {record.config.layers_label} · {record.device_name}\n{status}"


class RunCurves(Vertical):
    """A run's loss curve and per-epoch accuracies as sparklines, with the last values."""

    def compose(self) -> ComposeResult:
        for key, title in (("loss", "loss"), ("train", "train acc"), ("test", "test acc")):
            with Horizontal(classes="spark-row"):
                yield Label(title, classes="spark-label")
                yield Sparkline([], classes=f"spark {key}-curve")
                yield Label("–", classes=f"spark-value {key}-curve-value")

    def show(self, record: RunRecord | None) -> None:
        epochs = record.epochs if record else ()
        series = {
            "loss": list(record.loss_curve) if record else [],
            "train": [e.train_accuracy for e in epochs if e.train_accuracy is not None],
            "test": [e.test_accuracy for e in epochs if e.test_accuracy is not None],
        }
        finals = {
            "loss": record.train_loss if record else None,
            "train": record.train_accuracy if record else None,
            "test": record.test_accuracy if record else None,
        }
        formats = {"loss": "{:.4f}", "train": "{:.2f} %", "test": "{:.2f} %"}
        for key, values in series.items():
            self.query_one(f".{key}-curve", Sparkline).data = values
            final = finals[key]
            self.query_one(f".{key}-curve-value", Label).update("–" if final is None else formats[key].format(final))


class RunsScreen(Screen):
    """Browse stored runs. Keys: s/S sort, f filter, space mark, c compare, l load into the form."""

    BINDINGS = [
        Binding("escape,f2", "app.pop_screen", "Back"),
        Binding("s", "sort_next", "Sort"),
        Binding("S", "sort_reverse", "Reverse"),
        Binding("f", "filter_next", "Filter"),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("l", "load", "Load config"),
    ]

    class LoadConfig(Message):
        def __init__(self, record: RunRecord) -> None:
            super().__init__()
            self.record = record

    def __init__(self, records: list[RunRecord]) -> None:
        super().__init__(id="runs")
        self.records = records
        self.sort_index = 0  # into TABLE_COLUMNS; 0 = newest first by default
        self.sort_reverse = False
        self.dataset_filter: str | None = None
        self.marked: list[int] = []

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≋")
        yield Label("", id="runs-status")
        table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield table
        with Horizontal(id="run-detail"):
            curves = RunCurves(id="detail-curves")
            curves.border_title = "Curves"
            yield curves
            config = Static("", id="detail-config")
            config.border_title = "Config"
            yield config
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column(" ", key="mark")
        for column in TABLE_COLUMNS:
            table.add_column(column.title, key=column.title)
        self.refresh_table()
        table.focus()

    def set_records(self, records: list[RunRecord]) -> None:
        self.records = records
        self.refresh_table()

    def visible_records(self) -> list[RunRecord]:
        records = [r for r in self.records if self.dataset_filter in (None, r.config.dataset)]
        if self.sort_index == 0 and not self.sort_reverse:
            return sorted(records, key=lambda r: r.id, reverse=True)
        column = TABLE_COLUMNS[self.sort_index]
        present = [r for r in records if column.value(r) is not None]
        missing = [r for r in records if column.value(r) is None]
        return sorted(present, key=column.value, reverse=self.sort_reverse) + missing

    def refresh_table(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for record in self.visible_records():
            mark = MARK if record.id in self.marked else ""
            cells = [Text(c.cell(record), justify="right" if c.numeric else "left") for c in TABLE_COLUMNS]
            table.add_row(mark, *cells, key=str(record.id))
        self._update_status()
        self.show_detail(self.current_record())

    def _update_status(self) -> None:
        if self.sort_index == 0 and not self.sort_reverse:
            order = "newest first"
        else:
            order = f"by {TABLE_COLUMNS[self.sort_index].title}{' (desc)' if self.sort_reverse else ''}"
        shown = self.dataset_filter or "all datasets"
        rows = self.query_one(DataTable).row_count
        self.query_one("#runs-status", Label).update(
            f"{rows} runs · {shown} · {order} · marked {len(self.marked)}/2"
        )

    def current_record(self) -> RunRecord | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return self.record_by_id(int(row_key.value))

    def record_by_id(self, run_id: int) -> RunRecord | None:
        return next((r for r in self.records if r.id == run_id), None)

    def show_detail(self, record: RunRecord | None) -> None:
        self.query_one(RunCurves).show(record)
        config = self.query_one("#detail-config", Static)
        if record is None:
            config.update("no runs stored yet — start one with F5 on the tuning screen")
            return
        timing = f"training {format_seconds(record.train_time_s)} (estimated {format_seconds(record.estimated_time_s)})"
        config.update(f"{run_summary(record)}\n{timing}\n{config_summary(record.config)}")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self.show_detail(self.record_by_id(int(event.row_key.value)))

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        titles = [c.title for c in TABLE_COLUMNS]
        if event.column_key.value in titles:
            index = titles.index(event.column_key.value)
            self.sort_reverse = not self.sort_reverse if index == self.sort_index else False
            self.sort_index = index
            self.refresh_table()

    def action_sort_next(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(TABLE_COLUMNS)
        self.refresh_table()

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.refresh_table()

    def action_filter_next(self) -> None:
        choices: list[str | None] = [None, *DATASETS]
        self.dataset_filter = choices[(choices.index(self.dataset_filter) + 1) % len(choices)]
        self.refresh_table()

    def action_mark(self) -> None:
        record = self.current_record()
        if record is None:
            return
        if record.id in self.marked:
            self.marked.remove(record.id)
        else:
            self.marked = [*self.marked[-1:], record.id]
        table = self.query_one(DataTable)
        for row_key in table.rows:
            table.update_cell(row_key, "mark", MARK if int(row_key.value) in self.marked else "")
        self._update_status()

    def action_compare(self) -> None:
        from tuner_tui.app.components.compare_screen import CompareScreen

        records = [self.record_by_id(i) for i in self.marked]
        if len(records) != 2 or None in records:
            self.notify("mark two runs with space, then press c", severity="warning")
            return
        self.app.push_screen(CompareScreen(records[0], records[1]))

    def action_load(self) -> None:
        record = self.current_record()
        if record is not None:
            self.post_message(self.LoadConfig(record))
