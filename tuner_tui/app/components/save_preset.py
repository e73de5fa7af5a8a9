"""The save-as-preset modal: asks for a name, refuses a shipped preset's name."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from tuner_tui.engine.config import RunConfig
from tuner_tui.formatting import config_brief


class SavePresetScreen(ModalScreen[str | None]):
    """Dismisses with the saved preset's name, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, config: RunConfig, suggestion: str = "") -> None:
        super().__init__()
        self.config = config
        self.suggestion = suggestion
        self._confirm_overwrite: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="save-dialog", classes="dialog"):
            yield Label("Save the form's config as a preset", classes="dialog-title")
            yield Label(Text(config_brief(self.config)), classes="dialog-text")
            yield Input(self.suggestion, placeholder="name (letters, digits, _ and -)", id="preset-name")
            yield Label("", id="save-error", classes="form-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#save-error", Label).display = False
        self.query_one("#preset-name", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self._save()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._save()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _save(self) -> None:
        from tuner_tui.runs.presets import PresetError, PresetExistsError, save_preset

        name = self.query_one("#preset-name", Input).value.strip()
        overwrite = name == self._confirm_overwrite
        try:
            save_preset(name, self.config, overwrite=overwrite)
        except PresetError as error:
            exists = isinstance(error, PresetExistsError)
            self._confirm_overwrite = name if exists else None
            message = f"⚠ user preset {name} exists: Save again to overwrite it" if exists else f"⚠ {error}"
            label = self.query_one("#save-error", Label)
            label.update(Text(message))
            label.display = True
            return
        self.dismiss(name)
