"""Two runs side by side: the config keys that differ, the results, and both runs' curves."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from engine.config import FIELD_NAMES
from tuner_tui.app.components.config_form import format_field
from tuner_tui.app.components.runs_screen import RunCurves, run_summary
from tuner_tui.runs.lab_table import LAB_COLUMNS
from tuner_tui.runs.store import RunRecord


def comparison_table(left: RunRecord, right: RunRecord) -> Table:
    """Config keys (differences marked ≠) then the lab's result columns, one run per column."""
    table = Table(expand=True, show_edge=False)
    table.add_column("")
    table.add_column(f"run {left.id}", justify="right")
    table.add_column(f"run {right.id}", justify="right")
    for name in FIELD_NAMES:
        if name == "data_root":
            continue
        a, b = format_field(name, left.config), format_field(name, right.config)
        differs = a != b
        table.add_row(f"≠ {name}" if differs else f"  {name}", a, b, style="bold" if differs else "dim")
    table.add_section()
    for column in LAB_COLUMNS[6:]:
        table.add_row(f"  {column.title}", column.cell(left), column.cell(right))
    return table


class CompareScreen(Screen):
    """Opened from the runs screen with two marked runs."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, left: RunRecord, right: RunRecord) -> None:
        super().__init__(id="compare")
        self.left, self.right = left, right

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≋")
        diff = Static(comparison_table(self.left, self.right), id="compare-table")
        diff.border_title = "Config and results"
        yield diff
        with Horizontal(id="compare-curves"):
            for side, record in (("left", self.left), ("right", self.right)):
                with Vertical(classes="compare-side"):
                    yield Static(run_summary(record), classes="compare-summary")
                    yield RunCurves(id=f"curves-{side}")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#curves-left", RunCurves).show(self.left)
        self.query_one("#curves-right", RunCurves).show(self.right)
