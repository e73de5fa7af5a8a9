"""Model files: a TOML file that names your training function, its hyperparameters and its metrics.

    train = "mlp.py:train"   # a .py file (relative to this TOML) and a function, or "package.module:function"
    title = "My MLP"         # optional
    [fields]                 # the hyperparameters: the app's form, --set, a sweep's space
    lr      = { default = 0.01, min = 0.00001, max = 1.0, log = true }
    hidden  = { default = 128, choices = [32, 64, 128, 256] }
    epochs  = { default = 5, min = 1, max = 200 }
    seed    = { default = 0 }
    optimizer = { default = "sgd", choices = ["sgd", "adam"] }
    [metrics]                # the metric that matters (the first), and which way is better
    val_accuracy = "maximize"

A field's type is its default's (int, float, str or bool); `min`/`max` bound numbers, `choices`
lists every allowed value, `log` says a number spans orders of magnitude, `help` is shown in the
form. Every problem is one line naming the file and the key (`ModelFileError`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Direction = Literal["maximize", "minimize"]
FieldKind = Literal["int", "float", "str", "bool"]
TOP_KEYS = ("train", "title", "fields", "metrics")
FIELD_KEYS = ("default", "min", "max", "log", "choices", "help")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class ModelFileError(ValueError):
    """A model file that cannot be used, or a value a field refuses; `str()` is one line naming the file."""

    def __init__(self, source: str | Path, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = str(source)
        self.reason = reason


@dataclass(frozen=True)
class Field:
    """One hyperparameter of a model: its type, default and what values it allows."""

    name: str
    kind: FieldKind
    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    help: str = ""

    def parse(self, raw: Any) -> Any:
        """`raw` (text from `--set` or a form, or a TOML value) as this field's type, within its range
        or choices; ValueError naming the field and what it allows."""
        value = self._typed(raw)
        if self.choices and value not in self.choices:
            raise ValueError(f"{self.name}: must be one of {' | '.join(map(str, self.choices))}, got {raw!r}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValueError(f"{self.name}: must be {self.allowed()}, got {raw!r}")
        return value

    def allowed(self) -> str:
        """What the field allows, in words: `a number in [1e-05, 1]`, `one of sgd | adam`."""
        if self.choices:
            return f"one of {' | '.join(map(str, self.choices))}"
        noun = {"int": "a whole number", "float": "a number", "str": "text", "bool": "true or false"}[self.kind]
        if self.low is None and self.high is None:
            return noun
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{noun} in [{low}, {high}]"

    def _typed(self, raw: Any) -> Any:
        noun = self.allowed()
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.strip().lower() in (*_TRUE, *_FALSE):
                return raw.strip().lower() in _TRUE
            raise ValueError(f"{self.name}: must be {noun}, got {raw!r}")
        if self.kind == "str":
            if isinstance(raw, str) and not any(ord(c) < 32 for c in raw):
                return raw
            raise ValueError(f"{self.name}: must be {noun}, got {raw!r}")
        if isinstance(raw, bool):
            raise ValueError(f"{self.name}: must be {noun}, got {raw!r}")
        if self.kind == "int":
            if isinstance(raw, int):
                return raw
            if isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d{1,30}\s*", raw):
                return int(raw)
            raise ValueError(f"{self.name}: must be {noun}, got {raw!r}")
        try:
            value = float(raw) if isinstance(raw, int | float | str) else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"{self.name}: must be {noun}, got {raw!r}")
        return value


@dataclass(frozen=True)
class ModelFile:
    """A validated model file: where its function is, its fields and its metrics (the first is the headline)."""

    path: Path  # the TOML file, absolute
    train: str  # as written: `mlp.py:train` or `package.module:function`
    title: str
    fields: Mapping[str, Field]
    metrics: Mapping[str, Direction] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def headline(self) -> tuple[str, Direction]:
        """The metric that matters and which way is better."""
        name = next(iter(self.metrics))
        return name, self.metrics[name]

    @property
    def function_file(self) -> Path | None:
        """The `.py` file the function is in (None for `package.module:function`)."""
        target = self.train.rsplit(":", 1)[0]
        return (self.path.parent / target).resolve() if target.endswith(".py") else None

    @property
    def function_name(self) -> str:
        return self.train.rsplit(":", 1)[1]

    def defaults(self) -> dict[str, Any]:
        return {name: spec.default for name, spec in self.fields.items()}

    def values(self, raw: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """`base` (the defaults) with `raw` values parsed over it; ModelFileError naming the file for an
        undeclared field or a value out of range."""
        values = dict(self.defaults() if base is None else base)
        for key, value in raw.items():
            spec = self.fields.get(key)
            if spec is None:
                raise ModelFileError(
                    self.path, f"{key}: not a field of this model; its fields are {', '.join(self.fields)}"
                )
            try:
                values[key] = spec.parse(value)
            except ValueError as error:
                raise ModelFileError(self.path, str(error)) from None
        return values


def is_model_file(data: Mapping[str, Any]) -> bool:
    """Whether a TOML table is a model file (it names a training function) rather than a preset."""
    return "train" in data


def load_model_file(path: str | Path) -> ModelFile:
    """Read and validate a model file; ModelFileError (one line, naming the file) if it cannot be used."""
    from tuner_tui.runs.presets import PresetError, read_toml  # presets reads model files too

    path = Path(path).expanduser().resolve()
    try:
        data = read_toml(path)
    except PresetError as error:
        raise ModelFileError(path, error.reason) from None
    return parse_model_file(data, path)


def parse_model_file(data: Mapping[str, Any], path: Path) -> ModelFile:
    """Validate a model file's table (read from `path`)."""
    for key in data:
        if key not in TOP_KEYS:
            raise ModelFileError(path, f"{key}: unknown key; a model file has {', '.join(TOP_KEYS)}")
    train = _train(data.get("train"), path)
    title = data.get("title", path.stem)
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        raise ModelFileError(path, f"title: must be a short text, got {title!r}")
    fields = _fields(data.get("fields", {}), path)
    metrics = _metrics(data.get("metrics"), path)
    return ModelFile(path, train, title.strip(), fields, metrics)


def _train(raw: Any, path: Path) -> str:
    shape = "a .py file (relative to this file) and a function, as mlp.py:train, or package.module:function"
    if not isinstance(raw, str) or raw.count(":") < 1:
        raise ModelFileError(path, f"train: must name {shape}, got {raw!r}")
    target, function = raw.rsplit(":", 1)
    if not _NAME.fullmatch(function):
        raise ModelFileError(path, f"train: {function!r} is not a function name")
    if target.endswith(".py"):
        file = (path.parent / target).resolve()
        if not file.is_file():
            raise ModelFileError(path, f"train: no file {file}")
    elif not _MODULE.fullmatch(target):
        raise ModelFileError(path, f"train: must name {shape}, got {raw!r}")
    return raw


def _fields(raw: Any, path: Path) -> dict[str, Field]:
    if not isinstance(raw, Mapping):
        raise ModelFileError(path, "fields: must be a table ([fields])")
    fields: dict[str, Field] = {}
    for name, entry in raw.items():
        if not _NAME.fullmatch(name):
            raise ModelFileError(path, f"fields.{name}: a field name is a Python identifier")
        fields[name] = _field(name, entry, path)
    return fields


def _field(name: str, entry: Any, path: Path) -> Field:
    where = f"fields.{name}"
    if not isinstance(entry, Mapping) or "default" not in entry:
        raise ModelFileError(path, f"{where}: must be a table with a default, as {{ default = 0.01 }}")
    for key in entry:
        if key not in FIELD_KEYS:
            raise ModelFileError(path, f"{where}.{key}: unknown key; a field has {', '.join(FIELD_KEYS)}")
    default = entry["default"]
    kinds: dict[type, FieldKind] = {bool: "bool", int: "int", float: "float", str: "str"}
    kind = kinds.get(type(default))
    if kind is None:
        raise ModelFileError(path, f"{where}.default: must be a number, text or true/false, got {default!r}")
    low, high = entry.get("min"), entry.get("max")
    for bound, value in (("min", low), ("max", high)):
        if value is not None and (kind not in ("int", "float") or not _number(value)):
            raise ModelFileError(path, f"{where}.{bound}: a bound is for number fields, and a number; got {value!r}")
    if low is not None and high is not None and low > high:
        raise ModelFileError(path, f"{where}: min {low} is above max {high}")
    log = entry.get("log", False)
    if not isinstance(log, bool) or (log and (kind not in ("int", "float") or low is None or low <= 0)):
        raise ModelFileError(path, f"{where}.log: true only for a number field whose min is above 0")
    choices = entry.get("choices", [])
    if not isinstance(choices, list) or any(type(c) is not type(default) for c in choices) or len(set(choices)) != len(
        choices
    ):
        raise ModelFileError(path, f"{where}.choices: must list distinct values of the default's type")
    helptext = entry.get("help", "")
    if not isinstance(helptext, str):
        raise ModelFileError(path, f"{where}.help: must be text")
    spec = Field(name, kind, default, low, high, log, tuple(choices), helptext)
    try:
        spec.parse(default)
    except ValueError as error:
        raise ModelFileError(path, f"{where}.default: {error}") from None
    return spec


def _metrics(raw: Any, path: Path) -> dict[str, Direction]:
    if not isinstance(raw, Mapping) or not raw:
        raise ModelFileError(path, 'metrics: must name the metric that matters, as [metrics] val_accuracy = "maximize"')
    metrics: dict[str, Direction] = {}
    for name, direction in raw.items():
        if not _NAME.fullmatch(name):
            raise ModelFileError(path, f"metrics.{name}: a metric name is a Python identifier")
        if direction not in ("maximize", "minimize"):
            raise ModelFileError(path, f"metrics.{name}: must be maximize or minimize, got {direction!r}")
        metrics[name] = direction
    return metrics


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
