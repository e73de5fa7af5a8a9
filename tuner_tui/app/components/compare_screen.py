"""Any number of marked runs compared: their curves overlaid with a legend, then one table of their
configs (differences marked ≠) and results.

Test accuracy and the mean cross-entropy are plotted: the lab's loss depends on the batch size under
lab4, so runs with different batches are compared by cross-entropy (the table shows both). The
screen scrolls, so nothing is cut at 80×24.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from tuner_tui.app.components.config_form import format_field
from tuner_tui.app.components.epoch_plot import EpochPlot, Series
from tuner_tui.app.components.run_columns import duration, status_text
from tuner_tui.app.components.run_detail import NAME_WIDTH, run_name
from tuner_tui.app.field_words import field_label
from tuner_tui.engine.config import FIELD_NAMES, RunConfig
from tuner_tui.engine.units import format_bytes
from tuner_tui.formatting import format_number, format_percent, format_seconds
from tuner_tui.runs.lab_table import actual_memory
from tuner_tui.runs.records import RunRecord

HIDDEN_FIELDS = ("data_root",)  # where a run found its data says nothing about the run
RESULT_ROWS: tuple[tuple[str, Callable[[RunRecord], str]], ...] = (
    ("status", status_text),
    ("test acc", lambda r: format_percent(r.test_accuracy)),
    ("train acc", lambda r: format_percent(r.train_accuracy)),
    ("lab loss", lambda r: format_number(r.train_loss)),
    ("CE", lambda r: format_number(r.train_ce)),
    ("time (training)", lambda r: format_seconds(r.train_time_s)),
    ("duration", lambda r: format_seconds(duration(r))),
    ("params", lambda r: f"{r.params:,}"),
    ("est. memory", lambda r: format_bytes(r.estimated_memory_bytes)),
    ("memory", lambda r: format_bytes(actual_memory(r))),
)


def curve(record: RunRecord, attribute: str) -> Series:
    points = [(e.epoch, getattr(e, attribute)) for e in record.epochs if getattr(e, attribute) is not None]
    return Series(run_name(record, NAME_WIDTH), [x for x, _ in points], [y for _, y in points])


def comparison_rows(records: Sequence[RunRecord]) -> list[tuple[str, list[str], bool]]:
    """(row title, one cell per run, whether the runs differ) for the config fields, then the results."""
    rows = []
    names = [name for name in FIELD_NAMES if name not in HIDDEN_FIELDS and any(r.builtin for r in records)]
    for record in records:  # then the fields of the user models among them, in their order
        if not isinstance(record.config, RunConfig):
            names += [name for name, _ in record.config.values if name not in names]
    for name in names:
        cells = [_config_cell(name, r) for r in records]
        rows.append((field_label(name) if name in FIELD_NAMES else name, cells, len(set(cells)) > 1))
    rows += [(title, [cell(r) for r in records], False) for title, cell in RESULT_ROWS]
    metrics = list(dict.fromkeys(name for r in records for name in r.metrics))  # what user code reported
    rows += [(name, [_metric_cell(r, name) for r in records], False) for name in metrics]
    return rows


def _metric_cell(record: RunRecord, name: str) -> str:
    value = record.metrics.get(name)
    return "–" if value is None else format_number(value)


def metric_curve(record: RunRecord, name: str) -> Series:
    """A run of user code's metric `name` by epoch."""
    points = [(e.epoch, e.metrics[name]) for e in record.epochs if name in e.metrics]
    return Series(run_name(record, NAME_WIDTH), [x for x, _ in points], [y for _, y in points])


def _config_cell(name: str, record: RunRecord) -> str:
    if isinstance(record.config, RunConfig):
        return format_field(name, record.config) if name in FIELD_NAMES else "–"
    value = record.config.fields.get(name)
    return "–" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


class CompareScreen(Screen):
    """Opened from the runs browser with two or more marked runs."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, records: Sequence[RunRecord]) -> None:
        super().__init__(id="compare")
        self.records = list(records)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≋")
        with VerticalScroll(id="compare-body"):
            with Horizontal(id="compare-plots", classes="plots"):
                yield EpochPlot("test accuracy", unit="%", id="compare-accuracy")
                yield EpochPlot("mean cross-entropy (CE)", empty="not recorded", id="compare-ce")
            yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        first, second = self.query_one("#compare-accuracy", EpochPlot), self.query_one("#compare-ce", EpochPlot)
        if all(r.model is not None for r in self.records):  # runs of user code: their headline metrics
            headlines = list(dict.fromkeys(r.headline[0] for r in self.records))
            first.title, first.unit = headlines[0], ""
            first.show([metric_curve(r, headlines[0]) for r in self.records])
            others = [n for r in self.records for n in r.metrics if n not in headlines]
            if others:
                second.title, second.empty = others[0], "not reported"
            second.show([metric_curve(r, others[0]) for r in self.records] if others else [])
        else:
            first.show([curve(r, "test_accuracy") for r in self.records])
            second.show([curve(r, "train_ce") for r in self.records])
        table: DataTable[Text] = self.query_one("#compare-table", DataTable)
        table.add_column(Text(""), key="field")
        for record in self.records:
            table.add_column(Text(run_name(record, NAME_WIDTH), justify="right"), key=str(record.id))
        first_result = next(title for title, _ in RESULT_ROWS)
        for title, cells, differs in comparison_rows(self.records):
            style = "bold" if differs else ""
            marker = "≠ " if differs else "  "
            if title == first_result:
                table.add_row(*(Text("─" * 6, style="dim") for _ in range(len(self.records) + 1)))
            table.add_row(Text(marker + title, style=style), *(Text(c, style=style, justify="right") for c in cells))
