"""The spec form's content as plain data: what each field holds as text, to a spec's TOML table and back.

The form never judges a value itself: `SpecDraft.to_data()` turns its text into the table a spec
file holds, `tuner_tui.sweeps.spec.parse_spec` validates it with the same rules as the CLI, and
`problems_by_field` puts each problem it reports beside the form field it is about.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner_tui.runs.presets import toml_value
from tuner_tui.sweeps.spec import SEARCH_KEYS, SEARCHABLE

OFF = "off"
RANGE_KINDS = ("uniform", "log_uniform", "int", "log_int")
STEP_KINDS = ("uniform", "int")
GENERAL = "general"  # problems about the spec as a whole
_KEY = re.compile(r"^(name|base|config|space|search)(?:\.([A-Za-z_]+))?")


@dataclass(frozen=True)
class SpaceEntry:
    """One searchable field: `off`, `choice` (the values, as typed) or a range (low, high, step)."""

    kind: str = OFF
    choices: str = ""
    low: str = ""
    high: str = ""
    step: str = ""


@dataclass(frozen=True)
class SpecDraft:
    """Everything the form holds, as the text in its fields."""

    name: str = ""
    base: str | None = None  # a preset's name
    fixed: str = ""  # `KEY=VALUE …`: the spec's [config] table
    space: Mapping[str, SpaceEntry] = field(default_factory=dict)
    search: Mapping[str, str] = field(default_factory=dict)  # search key → text (empty: the default)

    @classmethod
    def from_data(cls, name: str, data: Mapping[str, Any]) -> SpecDraft:
        """The draft of a spec file's table (as `read_toml` gives it)."""
        raw_space = data.get("space", {})
        space = {}
        for key in SEARCHABLE:
            entry = raw_space.get(key) if isinstance(raw_space, Mapping) else None
            space[key] = _entry_draft(key, entry) if isinstance(entry, Mapping) else SpaceEntry()
        config = data.get("config", {})
        fixed = " ".join(f"{k}={_text(k, v)}" for k, v in config.items()) if isinstance(config, Mapping) else ""
        raw_search = data.get("search", {})
        if not isinstance(raw_search, Mapping):
            raw_search = {}
        search = {key: _text(key, raw_search[key]) for key in SEARCH_KEYS if key in raw_search}
        base = data.get("base")
        return cls(name, base if isinstance(base, str) else None, fixed, space, search)

    def to_data(self) -> dict[str, Any]:
        """The spec's table: numbers where the text reads as one, the text as typed elsewhere (so
        `parse_spec` names what is wrong with it)."""
        data: dict[str, Any] = {}
        if self.base:
            data["base"] = self.base
        fixed = {}
        for item in self.fixed.split():
            key, _, value = item.partition("=")
            fixed[key] = typed(key, value)
        if fixed:
            data["config"] = fixed
        space: dict[str, Any] = {}
        for key, entry in self.space.items():
            if entry.kind == "choice":
                space[key] = {"choice": [typed(key, token) for token in choice_tokens(key, entry.choices)]}
            elif entry.kind in RANGE_KINDS:
                space[key] = {entry.kind: [typed("", entry.low), typed("", entry.high)]}
                if entry.step.strip() and entry.kind in STEP_KINDS:
                    space[key]["step"] = typed("", entry.step)
        data["space"] = space
        search = {key: typed(key, text) for key, text in self.search.items() if text.strip()}
        if search:
            data["search"] = search
        return data


def choice_tokens(key: str, text: str) -> list[str]:
    """The choices typed in a field: separated by spaces, and by commas except for `hidden`, where
    a comma joins the sizes of one choice's layers (`64 256,128`)."""
    separators = r"\s+" if key == "hidden" else r"[\s,]+"
    return [token for token in re.split(separators, text.strip()) if token]


def typed(key: str, text: str) -> Any:
    """A value as TOML should hold it: a whole number, a number, layer sizes as a list, else the text."""
    text = text.strip()
    if key == "hidden" and "," in text:
        return [typed("", part) for part in text.split(",")]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _text(key: str, value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) if key == "hidden" else " ".join(str(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def _entry_draft(key: str, entry: Mapping[str, Any]) -> SpaceEntry:
    kind = next((k for k in entry if k != "step"), OFF)
    values = entry.get(kind)
    if kind == "choice" and isinstance(values, list):
        return SpaceEntry("choice", choices=" ".join(_text(key, v) if isinstance(v, list) else _text("", v)
                                                     for v in values))
    if kind in RANGE_KINDS and isinstance(values, list) and len(values) == 2:
        step = entry.get("step")
        return SpaceEntry(kind, low=_text("", values[0]), high=_text("", values[1]),
                          step="" if step is None else _text("", step))
    return SpaceEntry()


def problem_field(problem: str) -> str:
    """The form field a `parse_spec` problem (without its file prefix) is about: `name`, `base`,
    `config`, a searchable field, a search key, or `general`."""
    match = _KEY.match(problem)
    if match is None:
        return GENERAL
    section, key = match.group(1), match.group(2)
    if section in ("name", "base", "config"):
        return section
    if key is None:
        return GENERAL
    if section == "space" and key in SEARCHABLE:
        return key
    if section == "search" and key in SEARCH_KEYS:
        return f"search.{key}"
    return GENERAL


def problems_by_field(problems: Sequence[str], source: str) -> dict[str, list[str]]:
    """`SpecError.problems` grouped by form field, each without its `source: ` prefix."""
    grouped: dict[str, list[str]] = {}
    for line in problems:
        problem = line.removeprefix(f"{source}: ")
        grouped.setdefault(problem_field(problem), []).append(problem)
    return grouped


def spec_toml(name: str, data: Mapping[str, Any]) -> str:
    """The spec file's text: a comment line, then base, [config], [space] and [search]."""
    lines = [f"# {name}: written by tuner-tui's spec form"]
    if "base" in data:
        lines.append(f"base = {toml_value(data['base'])}")
    for section in ("config", "space", "search"):
        table = data.get(section)
        if not table:
            continue
        lines += ["", f"[{section}]"]
        for key, value in table.items():
            if section == "space":
                inline = ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items())
                lines.append(f"{key} = {{ {inline} }}")
            else:
                lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def problem_text(problem: str) -> str:
    """A problem as shown under its field, without the field's own key:
    `space.lr.log_uniform: must be …` → `log_uniform: must be …`, `search.epochs: must be …` → `must be …`."""
    key, sep, rest = problem.partition(": ")
    parts = key.split(".")
    if not sep or " " in key or parts[0] not in ("space", "search", "config") or len(parts) < 2:
        return problem
    tail = ".".join(parts[1:] if parts[0] == "config" else parts[2:])
    return f"{tail}: {rest}" if tail else rest
