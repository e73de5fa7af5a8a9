"""The `?` help: the app's own keys, screen by screen, before the text fields' editing keys.

Built from the screens' own bindings, so it cannot fall behind them. Escape, `?` or F1 closes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from tuner_tui.app.components.compare_screen import CompareScreen
from tuner_tui.app.components.confirm import ConfirmScreen
from tuner_tui.app.components.presets_screen import PresetsScreen
from tuner_tui.app.components.run_detail import RunDetailScreen
from tuner_tui.app.components.runs_screen import RunsScreen
from tuner_tui.app.components.spec_form import SpecFormScreen
from tuner_tui.app.components.study_picker import StudyPickerScreen
from tuner_tui.app.components.study_screen import StudyScreen
from tuner_tui.app.components.sweep_screen import SweepScreen
from tuner_tui.app.components.tuning_screen import TuningScreen
from tuner_tui.app.run_filter import FILTER_HELP

TUNING_KEYS = (
    ("tab / shift+tab", "next / previous field"),
    ("ctrl+p", "command palette: load a preset, show runs, save a preset"),
    ("typing", "replaces the focused field's value (it is selected on focus)"),
)
FILTER_KEYS = (("/ then text", FILTER_HELP),)
SWEEP_KEYS = (("enter", "open the run of the trial under the cursor"),)
STUDY_KEYS = (("enter", "the detail of the trial under the cursor"),)
PICKER_KEYS = (("enter", "open the study under the cursor"),)
TEXT_FIELD_KEYS = (
    ("← → home end", "move in a field"),
    ("ctrl+a / ctrl+e", "start / end of the field"),
    ("ctrl+u / ctrl+k", "delete to the start / to the end"),
    ("enter / space", "open a list (dataset, device, …) and pick from it"),
)

KEY_WIDTH = 18
Section = tuple[str, Sequence[tuple[str, str]]]
KeyDisplay = Callable[[Binding], str]


def binding_rows(bindings: Sequence[BindingType], key_display: Callable[[Binding], str]) -> list[tuple[str, str]]:
    """(keys, what they do) for each binding that has a description."""
    rows = []
    for binding in bindings:
        if not isinstance(binding, Binding) or not binding.description:
            continue
        keys = " / ".join(key_display(Binding(key.strip(), binding.action)) for key in binding.key.split(","))
        rows.append((keys, binding.description))
    return rows


def study_sections(display: KeyDisplay) -> list[Section]:
    """The keys of a study's views (v on the sweeps screen, and `tuner-tui watch`)."""
    return [
        ("Studies (watch)", [*binding_rows(StudyPickerScreen.BINDINGS, display), *PICKER_KEYS]),
        ("A study's views", [*binding_rows(StudyScreen.BINDINGS, display), *STUDY_KEYS]),
    ]


class HelpScreen(ModalScreen[None]):
    """Lists `app_bindings` (the keys that work everywhere), then each screen's keys."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Close"),
    ]

    def __init__(
        self, app_bindings: Sequence[BindingType], screens: Callable[[KeyDisplay], list[Section]] | None = None,
    ) -> None:
        """`screens`: the sections after "Everywhere" (default: tuner-tui's screens)."""
        super().__init__(id="help")
        self.app_bindings = app_bindings
        self.screens = screens

    def sections(self) -> list[Section]:
        display = self.app.get_key_display
        if self.screens is not None:
            return [("Everywhere", binding_rows(self.app_bindings, display)), *self.screens(display)]
        return [
            ("Everywhere", binding_rows(self.app_bindings, display)),
            ("Tuning screen", [*binding_rows(TuningScreen.BINDINGS, display), *TUNING_KEYS]),
            ("Runs browser (F2)", [*binding_rows(RunsScreen.BINDINGS, display), *FILTER_KEYS]),
            ("A run's plots (Enter in the browser)", binding_rows(RunDetailScreen.BINDINGS, display)),
            ("Compare (c in the browser)", binding_rows(CompareScreen.BINDINGS, display)),
            ("Sweeps (F4)", [*binding_rows(SweepScreen.BINDINGS, display), *SWEEP_KEYS]),
            ("Spec form (e on the sweeps screen)", binding_rows(SpecFormScreen.BINDINGS, display)),
            *study_sections(display),
            ("Presets, several at once (F7)", binding_rows(PresetsScreen.BINDINGS, display)),
            ("Questions", binding_rows(ConfirmScreen.BINDINGS, display)),
            ("Text fields", TEXT_FIELD_KEYS),
        ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box", classes="dialog"):
            yield Label(Text("Keys · Escape closes"), classes="dialog-title")
            with VerticalScroll():
                yield Static(self._table(), id="help-keys")

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True, width=KEY_WIDTH)
        table.add_column()
        for title, rows in self.sections():
            table.add_row(Text(title, style="bold underline"), "")
            for keys, description in rows:
                table.add_row(Text(keys), Text(description))
            table.add_row("", "")
        return table
