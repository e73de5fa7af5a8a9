"""The config form: selects and validated inputs for every RunConfig field, plus a preset picker.

Under each field: its error (the value is invalid; Start is disabled) or a check that failed (the
value is valid but the run would not get far: dataset not found, no GPU, will not fit). A field
selects its whole value when focused, so typing replaces it, and the focused field's label is
drawn reversed, which shows in 16 colours and without colour. The data root and the device say
where a run trains, not what: loading a preset or a stored run keeps them unless it names its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, Label, Select

from tuner_tui.app.device_choices import BASE_CHOICES
from tuner_tui.app.field_words import field_label
from tuner_tui.engine.config import CONVENTIONS, ENGINES, ConfigError, RunConfig, check_batch_size
from tuner_tui.engine.dataset_specs import DATASET_SPECS
from tuner_tui.runs.presets import is_edited

INPUT_FIELDS = ("data_root", "hidden", "lr", "batch_size", "epochs", "reg", "seed")
SELECT_OPTIONS: dict[str, list[tuple[str, str]]] = {
    "dataset": [(spec.title, name) for name, spec in DATASET_SPECS.items()],
    "conventions": [(c, c) for c in CONVENTIONS],
    "engine": [(e, e) for e in ENGINES],
    "device": list(BASE_CHOICES),
}
FIELD_ORDER = (
    "dataset", "data_root", "hidden", "lr", "batch_size", "epochs", "reg", "seed", "conventions", "engine", "device",
)
PLACEHOLDERS = {"data_root": "default"}


def format_field(name: str, config: RunConfig) -> str:
    """A config value as the form shows it (`256,128`, `0.01`, an empty data root)."""
    value = getattr(config, name)
    if value is None:
        return ""
    if name == "hidden":
        return ",".join(str(h) for h in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def check_field(name: str, raw: str) -> str | None:
    """Why `raw` is not a valid value for field `name`, or None when it is."""
    try:
        RunConfig.from_mapping({name: raw})
    except ConfigError as error:
        return error.reason
    return None


def keep_where(loaded: RunConfig, data_root: str | None, device: str) -> RunConfig:
    """`loaded`, training with this data root and device unless it names its own."""
    return dataclasses.replace(
        loaded,
        data_root=loaded.data_root if loaded.data_root is not None else data_root,
        device=loaded.device if loaded.device != "auto" else device,
    )


class FieldValidator(Validator):
    """Validates one form field with RunConfig's own rules (same message as the CLI)."""

    def __init__(self, field: str) -> None:
        super().__init__()
        self.field = field

    def validate(self, value: str) -> ValidationResult:
        reason = check_field(self.field, value)
        return self.success() if reason is None else self.failure(reason)


@dataclass(frozen=True)
class FormState:
    """What the form holds now: a config when every field is valid, else the errors by field."""

    config: RunConfig | None
    errors: dict[str, str]
    edited: bool


def _options(pairs: list[tuple[str, str]]) -> list[tuple[Text, str]]:
    return [(Text(label), value) for label, value in pairs]


class ConfigForm(Vertical):
    """Edits a RunConfig; posts `ConfigForm.Changed` whenever a value changes."""

    class Changed(Message):
        def __init__(self, state: FormState) -> None:
            super().__init__()
            self.state = state

    class PresetChosen(Message):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(
        self, config: RunConfig, preset_names: list[str], preset_name: str | None = None,
        preset_config: RunConfig | None = None, **kwargs,
    ) -> None:
        """`preset_config`: the preset's own config, when `config` was edited away from it (`--set`)."""
        super().__init__(**kwargs)
        self._initial = config
        self._preset_names = preset_names
        self.preset_name = preset_name
        self.preset_config: RunConfig | None = (preset_config or config) if preset_name else None
        self._loading = False
        self._select_options = {name: list(options) for name, options in SELECT_OPTIONS.items()}
        self._shown_errors: dict[str, str] = {}
        self._shown_checks: dict[str, str] = {}
        self._shown_note = ""

    def _options_with(self, name: str, value: str) -> list[tuple[str, str]]:
        """The select's options, extended with `value` when a config holds an unlisted one."""
        options = self._select_options[name]
        if value not in [v for _, v in options]:
            options.append((value, value))
        return options

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label("preset", classes="form-label")
            yield Select(
                _options([(name, name) for name in self._preset_names]), prompt="(none)", id="preset",
                value=self.preset_name if self.preset_name in self._preset_names else Select.NULL,
                compact=True,
            )
        yield Label("", id="edited-marker", classes="form-note hidden")
        for name in FIELD_ORDER:
            with Horizontal(classes="form-row"):
                yield Label(field_label(name), classes="form-label")
                if name in SELECT_OPTIONS:
                    value = getattr(self._initial, name)
                    options = self._options_with(name, value)
                    yield Select(_options(options), value=value, allow_blank=False, id=name, compact=True)
                else:
                    yield Input(
                        format_field(name, self._initial), id=name, compact=True, select_on_focus=True,
                        validators=[FieldValidator(name)], placeholder=PLACEHOLDERS.get(name, ""),
                    )
            yield Label("", id=f"{name}-error", classes="form-error hidden")
            yield Label("", id=f"{name}-check", classes="form-check hidden")

    def on_mount(self) -> None:
        self.post_message(self.Changed(self.state()))

    def values(self) -> dict[str, str]:
        """Every field's raw value."""
        out: dict[str, str] = {}
        for name in FIELD_ORDER:
            if name in INPUT_FIELDS:
                out[name] = self.query_one(f"#{name}", Input).value
            else:
                out[name] = str(self.query_one(f"#{name}", Select).value)
        return out

    def state(self) -> FormState:
        values = self.values()
        errors = {name: reason for name, raw in values.items() if (reason := check_field(name, raw))}
        config = None
        if not errors:
            try:
                config = RunConfig.from_mapping(values, base=self._initial)
                spec = DATASET_SPECS[config.dataset]
                check_batch_size(config.batch_size, spec.train_size, spec.title)
            except ConfigError as error:
                errors[error.field] = error.reason
                config = None
        edited = self.preset_config is not None and (config is None or is_edited(self.preset_config, config))
        return FormState(config, errors, edited)

    def load(self, config: RunConfig, preset_name: str | None = None) -> None:
        """Show `config` in the form, training where the form's config trains unless it names its own
        data root or device; remember the preset it came from (for the edited marker)."""
        raw = self.values()
        config = keep_where(config, raw["data_root"].strip() or None, raw["device"])
        self._initial = config
        self.preset_name = preset_name
        self.preset_config = config if preset_name else None
        self._loading = True
        preset = self.query_one("#preset", Select)
        preset.value = preset_name if preset_name in self._preset_names else Select.NULL
        for name in FIELD_ORDER:
            if name in INPUT_FIELDS:
                self.query_one(f"#{name}", Input).value = format_field(name, config)
            else:
                self._set_select(name, getattr(config, name))
        self._loading = False
        self._refresh()

    def _set_select(self, name: str, value: str) -> None:
        select: Select[str] = self.query_one(f"#{name}", Select)
        known = len(self._select_options[name])
        options = self._options_with(name, value)
        if len(options) != known:
            select.set_options(_options(options))
        select.value = value

    def set_device_choices(self, choices: list[tuple[str, str]]) -> None:
        """List these devices (label, value) in the device picker, keeping the chosen one."""
        select: Select[str] = self.query_one("#device", Select)
        chosen = str(select.value)
        self._select_options["device"] = list(choices)
        options = self._options_with("device", chosen)
        self._loading = True
        select.set_options(_options(options))
        select.value = chosen
        self._loading = False

    def adopt_preset(self, name: str, names: list[str]) -> None:
        """The form's config was just saved as preset `name`: list it and show it as loaded."""
        self._preset_names = names
        self.preset_name = name
        self.preset_config = self.state().config
        self._loading = True
        select = self.query_one("#preset", Select)
        select.set_options(_options([(n, n) for n in names]))
        select.value = name
        self._loading = False
        self._refresh()

    def show_checks(self, problems: dict[str, str]) -> None:
        """Show the checks that failed, by field (a field's own error hides its check)."""
        for name in FIELD_ORDER:
            reason = problems.get(name)
            if reason == self._shown_checks.get(name):
                continue
            label = self.query_one(f"#{name}-check", Label)
            label.update(Text(f"⚠ {reason}" if reason else ""))
            label.display = bool(reason)
        self._shown_checks = dict(problems)

    def _refresh(self) -> None:
        state = self.state()
        for name in FIELD_ORDER:
            reason = state.errors.get(name)
            if reason == self._shown_errors.get(name):
                continue  # restyling a widget is costly: touch only the fields that changed
            label = self.query_one(f"#{name}-error", Label)
            label.update(Text(f"✗ {reason}" if reason else ""))
            label.display = bool(reason)
            self.query_one(f"#{name}").set_class(bool(reason), "-invalid")
        self._shown_errors = dict(state.errors)
        note = f"edited from {self.preset_name}" if state.edited else ""
        if note != self._shown_note:
            marker = self.query_one("#edited-marker", Label)
            marker.update(Text(note))
            marker.display = state.edited
            self._shown_note = note
        self.post_message(self.Changed(state))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if not self._loading:
            self._refresh()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if self._loading:
            return
        if event.select.id == "preset":
            if event.value is not Select.NULL and event.value != self.preset_name:
                self.post_message(self.PresetChosen(str(event.value)))
            return
        self._refresh()
