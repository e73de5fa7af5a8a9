"""`tuner-tui watch`: any Optuna study in the terminal, read-only, with no results store.

With a study name the app opens that study's views; else the list of the storage's studies (which
opens the study straight away when there is only one). Nothing here imports torch or opens the
results store; a storage or study that cannot be read is one line on the screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from tuner_tui.app.components.help_screen import HelpScreen, KeyDisplay, Section, binding_rows, study_sections
from tuner_tui.app.components.study_picker import StudyPickerScreen
from tuner_tui.app.components.study_screen import StudyScreen
from tuner_tui.app.components.trial_detail import TrialDetailScreen


def watch_sections(display: KeyDisplay) -> list[Section]:
    """The watch app's screens in the `?` help."""
    return [*study_sections(display), ("A trial's detail", binding_rows(TrialDetailScreen.BINDINGS, display))]


class WatchApp(App):
    """Read-only views of the studies in one Optuna storage."""

    # the first screen is the default screen, whose own CSS_PATH Textual does not load: named here too
    CSS_PATH: ClassVar[list[str | PurePath]] = [Path(__file__).with_name(name) for name in ("app.tcss", "study.tcss")]
    TITLE = "tuner-tui watch"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help", priority=True),
        Binding("question_mark", "help", "Help", show=False),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, storage_url: str, study_name: str | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        """`study_name`: open that study (else pick one); `clock`: now, for the picker's "last change"."""
        super().__init__()
        self.storage_url = storage_url
        self.study_name = study_name
        self.clock = clock

    def get_default_screen(self) -> Screen:
        if self.study_name is not None:
            return StudyScreen(self.storage_url, self.study_name)
        return StudyPickerScreen(self.storage_url, open_only=True, clock=self.clock)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen(self.BINDINGS, watch_sections))
