"""The form of a model file's fields: an input per number or text field, a select per field with
choices (and per true/false field), each checked by the field's own rule as it is typed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, Label, Select

from tuner_tui.usercode.model_file import Field, ModelFile


@dataclass(frozen=True)
class ModelFormState:
    """The form's values when every field is valid (else None), and each invalid field's reason."""

    values: dict[str, Any] | None
    errors: dict[str, str]


class FieldRule(Validator):
    """A field's own rule, for the input's invalid style."""

    def __init__(self, field: Field) -> None:
        super().__init__()
        self.field = field

    def validate(self, value: str) -> ValidationResult:
        try:
            self.field.parse(value)
        except ValueError as error:
            return self.failure(str(error))
        return self.success()


def shown(value: Any) -> str:
    """A field's value as the form shows it (`true`, `0.01`, `sgd`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


class ModelForm(Vertical):
    """Edits the values of a model's fields; posts `ModelForm.Changed` whenever one changes."""

    class Changed(Message):
        def __init__(self, state: ModelFormState) -> None:
            super().__init__()
            self.state = state

    def __init__(self, model: ModelFile, values: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self._values = dict(values)

    def compose(self) -> ComposeResult:
        for name, field in self.model.fields.items():
            with Horizontal(classes="form-row"):
                yield Label(name, classes="form-label")
                value = self._values.get(name, field.default)
                if field.choices or field.kind == "bool":
                    yield Select(self._options(field), value=shown(value), allow_blank=False, id=f"field-{name}",
                                 compact=True)
                else:
                    yield Input(shown(value), id=f"field-{name}", compact=True, select_on_focus=True,
                                validators=[FieldRule(field)], placeholder=field.allowed())
            yield Label("", id=f"field-{name}-error", classes="form-error hidden")
            if field.help:
                yield Label(Text(field.help), classes="form-note")

    @staticmethod
    def _options(field: Field) -> list[tuple[Text, str]]:
        values = field.choices or (True, False)
        return [(Text(shown(value)), shown(value)) for value in values]

    def on_mount(self) -> None:
        self.post_message(self.Changed(self.state()))

    def raw(self) -> dict[str, str]:
        """Every field's text as entered."""
        out: dict[str, str] = {}
        for name in self.model.fields:
            widget = self.query_one(f"#field-{name}")
            out[name] = widget.value if isinstance(widget, Input) else str(widget.value)  # type: ignore[attr-defined]
        return out

    def state(self) -> ModelFormState:
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, text in self.raw().items():
            try:
                values[name] = self.model.fields[name].parse(text)
            except ValueError as error:
                errors[name] = str(error).removeprefix(f"{name}: ")
        return ModelFormState(None if errors else values, errors)

    def load(self, values: Mapping[str, Any]) -> None:
        """Show `values` (a stored run's fields; those the model no longer has are left out)."""
        for name, value in values.items():
            if name not in self.model.fields:
                continue
            widget = self.query_one(f"#field-{name}")
            if isinstance(widget, Input):
                widget.value = shown(value)
            else:
                widget.value = shown(value)  # type: ignore[attr-defined]
        self._refresh()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._refresh()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._refresh()

    def _refresh(self) -> None:
        state = self.state()
        for name in self.model.fields:
            label = self.query_one(f"#field-{name}-error", Label)
            reason = state.errors.get(name)
            label.update(Text(f"↳ {reason}" if reason else ""))
            label.set_class(reason is None, "hidden")
        self.post_message(self.Changed(state))
