"""A trial of a study in full (Enter on a trial in the study views): its state, values, duration,
parameters, user attributes and intermediate values, in one scrolling page."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tuner_tui.app.components.sweep_plots import param_text
from tuner_tui.formatting import format_number, format_seconds, printable

if TYPE_CHECKING:
    from tuner_tui.sweeps.summary import SweepSummary, TrialRow

STUDY_CSS = Path(__file__).parents[1] / "study.tcss"  # the study views' styles, for each of their screens


def attr_text(value: Any) -> str:
    """A user attribute as one printable line."""
    return printable(param_text(value))


def trial_table(trial: TrialRow, summary: SweepSummary) -> Table:
    """Section by section: the trial, its parameters, its user attributes, its intermediate values."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()

    def section(title: str, rows: list[tuple[str, str]], empty: str) -> None:
        table.add_row(Text(title, style="bold underline"), "")
        for key, value in rows or [(empty, "")]:
            table.add_row(Text(key), Text(value))
        table.add_row("", "")

    values = [(name, format_number(trial.values[i]) if trial.values is not None and i < len(trial.values) else "")
              for i, name in enumerate(summary.objectives)]
    if trial.values is None and trial.value is not None:
        values = [(f"{summary.objective} (last reported)", format_number(trial.value))]
    section("Trial", [
        ("number", str(trial.number)), ("state", trial.state),
        ("duration", format_seconds(trial.duration_s) if trial.duration_s is not None else "not finished"),
        *values,
    ], "")
    section("Parameters", [(printable(name), param_text(value)) for name, value in trial.params.items()],
            "no parameters")
    section("User attributes", [(printable(str(key)), attr_text(value)) for key, value in trial.user_attrs.items()],
            "none")
    section("Intermediate values", [(f"step {step}", format_number(value))
                                    for step, value in sorted(trial.intermediate.items())], "none reported")
    return table


class TrialDetailScreen(Screen):
    """One trial of a study, read when it was opened."""

    CSS_PATH = STUDY_CSS

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, trial: TrialRow, summary: SweepSummary) -> None:
        super().__init__(id="trial-detail")
        self.trial = trial
        self.summary = summary

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≋")
        with VerticalScroll(id="trial-detail-body"):
            yield Static(trial_table(self.trial, self.summary), id="trial-detail-text")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"{self.summary.name} · trial {self.trial.number}"
        self.query_one("#trial-detail-body", VerticalScroll).focus()
