"""The spec form: a sweep spec's search space and settings, field by field, saved as a user spec.

Per searchable field: off, a list of choices, or a range (low and high; uniform or log, real or
whole numbers; a step for uniform and int ranges). Then the search settings. Every change is
validated by `parse_spec`, the CLI's own rules, and each problem is shown under its field, one line
each; ctrl+s saves the spec as TOML in the user specs folder (a shipped spec is saved under a new
name). Dismisses with the saved spec's name, or None.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select

from tuner_tui.app.spec_draft import (
    GENERAL,
    OFF,
    RANGE_KINDS,
    STEP_KINDS,
    SpaceEntry,
    SpecDraft,
    problem_text,
    problems_by_field,
    spec_toml,
)
from tuner_tui.runs.presets import PresetError, read_toml, write_text_atomically
from tuner_tui.sweeps.spec import (
    KINDS,
    OBJECTIVES,
    PRUNERS,
    SAMPLERS,
    SEARCH_KEYS,
    SEARCHABLE,
    SpecError,
    parse_spec,
    spec_files,
    user_specs_dir,
)

SEARCH_CHOICES: dict[str, tuple[str, ...]] = {"objective": OBJECTIVES, "sampler": SAMPLERS, "pruner": PRUNERS}
SEARCH_HINTS = {
    "validation": "share held out, (0, 0.5]", "epochs": "the most a trial trains", "trials": "the budget",
    "seed": "the sampler's seed",
}
KIND_LABELS = {OFF: "off", "choice": "choices", "uniform": "range", "log_uniform": "log range",
               "int": "int range", "log_int": "log int range"}


def spec_draft(name: str | None) -> tuple[SpecDraft, bool]:
    """The draft of spec `name` (a name or a path; empty for None) and whether it is a shipped spec."""
    if name is None:
        return SpecDraft(), False
    files = spec_files()
    path, shipped = files[name] if name in files else (Path(name).expanduser(), False)
    try:
        data = read_toml(path)
    except PresetError:
        return SpecDraft(path.stem), shipped
    return SpecDraft.from_data(path.stem, data), shipped


def _options(values: tuple[str, ...] | list[str], labels: dict[str, str] | None = None) -> list[tuple[Text, str]]:
    return [(Text((labels or {}).get(v, v)), v) for v in values]


class SpecFormScreen(Screen[str | None]):
    """Edit spec `spec_name` (a new spec for None); ctrl+s saves, Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, spec_name: str | None) -> None:
        super().__init__(id="spec-form")
        self.draft, self.shipped = spec_draft(spec_name)
        self.editing = None if self.shipped else spec_name  # the user spec being edited may be overwritten
        self.filling = True

    def compose(self) -> ComposeResult:
        from tuner_tui.runs.presets import list_presets

        draft = self.draft
        name = f"{draft.name}_mine" if self.shipped else draft.name
        yield Header(show_clock=False, icon="≋")
        with VerticalScroll(id="spec-form-body"):
            copy = f" ({draft.name} is shipped: under a new name)" if self.shipped else ""
            yield Label(Text(f"Sweep spec · saved as a user spec{copy} · ctrl+s saves, Escape cancels"),
                        id="spec-form-title")
            yield Label("", id="error-general", classes="spec-error hidden")
            yield from self._row(
                "name", Input(name, id="spec-name", compact=True, placeholder="letters, digits, _ or -")
            )
            presets = [p.name for p in list_presets()]
            yield from self._row("base", Select(
                _options(presets), prompt="(none)", id="spec-base", compact=True,
                value=draft.base if draft.base in presets else Select.NULL,
            ))
            yield from self._row("config", Input(
                draft.fixed, id="spec-config", compact=True, placeholder="KEY=VALUE … over the base (device=cpu)",
            ), label="fixed")
            yield Label(Text("Search space: per field off, choices (spaces between), or a range"),
                        classes="spec-section")
            for key in SEARCHABLE:
                yield from self._space_row(key, draft.space.get(key, SpaceEntry()))
            yield Label(Text("Search"), classes="spec-section")
            for key in SEARCH_KEYS:
                value = draft.search.get(key, "")
                if key in SEARCH_CHOICES:
                    widget: Input | Select[str] = Select(
                        _options(SEARCH_CHOICES[key]), prompt="(default)", id=f"search-{key}", compact=True,
                        value=value if value in SEARCH_CHOICES[key] else Select.NULL,
                    )
                else:
                    widget = Input(value, id=f"search-{key}", compact=True, placeholder=SEARCH_HINTS.get(key, ""))
                yield from self._row(f"search.{key}", widget, label=key)
            with Horizontal(id="spec-buttons"):
                yield Button("Save ctrl+s", id="spec-save", variant="success", compact=True, action="screen.save")
                yield Button("Cancel Esc", id="spec-cancel", compact=True, action="screen.cancel")
        yield Footer(compact=True, show_command_palette=False)

    def _row(self, field: str, widget: Input | Select[str], *, label: str | None = None) -> ComposeResult:
        with Horizontal(classes="spec-row"):
            yield Label(label or field, classes="spec-label")
            yield widget
        yield Label("", id=f"error-{field.replace('.', '-')}", classes="spec-error hidden")

    def _space_row(self, key: str, entry: SpaceEntry) -> ComposeResult:
        with Horizontal(classes="spec-row"):
            yield Label(key, classes="spec-label")
            yield Select(_options((OFF, *KINDS), KIND_LABELS), value=entry.kind, allow_blank=False,
                         id=f"kind-{key}", compact=True, classes="spec-kind")
            yield Input(entry.choices, id=f"choices-{key}", compact=True, classes="spec-choices",
                        placeholder="256,128 is two layers" if key == "hidden" else "e.g. 10 20 50")
            yield Input(entry.low, id=f"low-{key}", compact=True, classes="spec-bound", placeholder="low")
            yield Input(entry.high, id=f"high-{key}", compact=True, classes="spec-bound", placeholder="high")
            yield Input(entry.step, id=f"step-{key}", compact=True, classes="spec-bound", placeholder="step")
        yield Label("", id=f"error-{key}", classes="spec-error hidden")

    def on_mount(self) -> None:
        for key in SEARCHABLE:
            self._show_kind(key)
        self.filling = False
        self.validate()
        self.query_one("#spec-name", Input).focus()

    def _show_kind(self, key: str) -> None:
        kind = str(self.query_one(f"#kind-{key}", Select).value)
        self.query_one(f"#choices-{key}").display = kind == "choice"
        self.query_one(f"#low-{key}").display = kind in RANGE_KINDS
        self.query_one(f"#high-{key}").display = kind in RANGE_KINDS
        self.query_one(f"#step-{key}").display = kind in STEP_KINDS

    # --- the draft and its problems ------------------------------------------------------------

    def current_draft(self) -> SpecDraft:
        """What the form holds now."""
        def text(selector: str) -> str:
            return self.query_one(selector, Input).value

        def chosen(selector: str) -> str:
            value = self.query_one(selector, Select).value
            return "" if value is Select.NULL else str(value)

        space = {
            key: SpaceEntry(chosen(f"#kind-{key}"), text(f"#choices-{key}"), text(f"#low-{key}"),
                            text(f"#high-{key}"), text(f"#step-{key}"))
            for key in SEARCHABLE
        }
        search = {key: chosen(f"#search-{key}") if key in SEARCH_CHOICES else text(f"#search-{key}")
                  for key in SEARCH_KEYS}
        return SpecDraft(text("#spec-name").strip(), chosen("#spec-base") or None, text("#spec-config"), space, search)

    def target(self, name: str) -> Path:
        return user_specs_dir() / f"{name}.toml"

    def problems(self, draft: SpecDraft) -> dict[str, list[str]]:
        """Every problem of `draft`, by form field (empty when it can be saved)."""
        target = self.target(draft.name or "unnamed")
        problems: dict[str, list[str]] = {}
        try:
            parse_spec(draft.to_data(), source=str(target), name=draft.name)
        except SpecError as error:
            problems = problems_by_field(error.problems, str(target))
        existing = spec_files().get(draft.name)
        if existing is not None and existing[1]:
            problems.setdefault("name", []).append(f"{draft.name} is a shipped spec: choose another name")
        elif existing is not None and draft.name != self.editing:
            problems.setdefault("name", []).append(f"a user spec named {draft.name} exists: choose another name")
        return problems

    def validate(self) -> dict[str, list[str]]:
        """Check the form and show each problem under its field; returns them."""
        problems = self.problems(self.current_draft())
        fields = [GENERAL, "name", "base", "config", *SEARCHABLE, *(f"search.{k}" for k in SEARCH_KEYS)]
        for field in fields:
            label = self.query_one(f"#error-{field.replace('.', '-')}", Label)
            lines = problems.get(field, [])
            label.update(Text("\n".join(f"✗ {problem_text(line)}" for line in lines)))
            label.set_class(not lines, "hidden")
        return problems

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if not self.filling:
            self.validate()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id and event.select.id.startswith("kind-"):
            self._show_kind(event.select.id.removeprefix("kind-"))
        if not self.filling:
            self.validate()

    # --- saving -------------------------------------------------------------------------------

    def action_save(self) -> None:
        draft = self.current_draft()
        problems = self.validate()
        if problems:
            count = sum(len(lines) for lines in problems.values())
            self.notify(f"not saved: {count} problem{'s' if count != 1 else ''} shown under the fields",
                        severity="error")
            return
        try:
            write_text_atomically(self.target(draft.name), spec_toml(draft.name, draft.to_data()))
        except PresetError as error:
            self.notify(str(error), severity="error", markup=False)
            return
        self.dismiss(draft.name)

    def action_cancel(self) -> None:
        self.dismiss(None)
