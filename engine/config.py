"""The run configuration: one frozen dataclass, validated field by field.

Every value that reaches the runner has been through `RunConfig.__post_init__`, so the rest of
the engine can trust it. Errors name the field and the allowed range in one line.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from tuner_tui.engine.dataset_specs import DATASET_SPECS

DatasetName = Literal["fmnist", "cifar10", "mnist", "cifar100"]
Conventions = Literal["lab4", "standard"]
EngineName = Literal["native", "graph", "autograd"]
DATASETS: tuple[DatasetName, ...] = get_args(DatasetName)
CONVENTIONS: tuple[Conventions, ...] = get_args(Conventions)
ENGINES: tuple[EngineName, ...] = get_args(EngineName)

MAX_HIDDEN_LAYERS = 8
MAX_HIDDEN_UNITS = 16384
MAX_LR = 10.0
MAX_BATCH_SIZE = 65536
MAX_EPOCHS = 1000
MAX_REG = 10.0
MAX_SEED = 2**32 - 1
MAX_VALIDATION = 0.5
MIN_VALIDATION_ROWS = 100  # fewer held-out images than this measure nothing (1 % steps of accuracy)
# Epochs at chance-level accuracy before a run is stopped as hopeless (0: never). The lab's
# cifar_exp8 sits at chance for three epochs with its own seed and then learns; five lets it.
DEFAULT_CHANCE_PATIENCE = 5

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class ConfigError(ValueError):
    """A configuration value outside its allowed range; `str()` is the one-line message."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run (and so makes it reproducible)."""

    dataset: DatasetName = "fmnist"
    hidden: tuple[int, ...] = (256,)
    lr: float = 0.01
    batch_size: int = 10
    epochs: int = 10
    reg: float = 0.0
    seed: int = 0
    conventions: Conventions = "lab4"
    engine: EngineName = "native"
    device: str = "auto"
    data_root: str | None = None
    chance_patience: int = DEFAULT_CHANCE_PATIENCE
    validation: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("dataset", self.dataset, DATASETS)
        _check_hidden(self.hidden)
        _check_number("lr", self.lr, 0.0, MAX_LR, low_open=True)
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _check_int("epochs", self.epochs, 1, MAX_EPOCHS)
        _check_number("reg", self.reg, 0.0, MAX_REG)
        _check_int("seed", self.seed, 0, MAX_SEED)
        _check_choice("conventions", self.conventions, CONVENTIONS)
        _check_choice("engine", self.engine, ENGINES)
        _check_int("chance_patience", self.chance_patience, 0, MAX_EPOCHS)
        _check_number("validation", self.validation, 0.0, MAX_VALIDATION)
        check_validation_rows(self.dataset, self.validation)
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.match(self.device):
            raise ConfigError("device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
        """Build a config from loosely typed values (TOML, `--set`, form fields) over `base`."""
        unknown = sorted(set(values) - set(FIELD_NAMES))
        if unknown:
            raise ConfigError(unknown[0], f"unknown key; allowed keys are {', '.join(FIELD_NAMES)}")
        parsed = {name: parse_field(name, value) for name, value in values.items()}
        return dataclasses.replace(base or cls(), **parsed)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON/TOML-ready values (hidden as a list)."""
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    @property
    def layers_label(self) -> str:
        """The layer sizes as the lab writes them, e.g. `784→256→10`."""
        spec = DATASET_SPECS[self.dataset]
        return "→".join(str(n) for n in (spec.features, *self.hidden, spec.classes))


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunConfig))


def parse_field(name: str, value: Any) -> Any:
    """Turn one raw value (e.g. the string `"256,128"`) into the field's type, or raise ConfigError."""
    if name == "hidden":
        return _parse_hidden(value)
    if name in ("lr", "reg", "validation"):
        return _parse_float(name, value)
    if name in ("batch_size", "epochs", "seed", "chance_patience"):
        return _parse_int(name, value)
    if name == "data_root":
        return None if value in (None, "") else str(value)
    if name in FIELD_NAMES:
        if not isinstance(value, str):
            raise ConfigError(name, f"must be a string, got {value!r}")
        return value.strip()
    raise ConfigError(name, f"unknown key; allowed keys are {', '.join(FIELD_NAMES)}")


def _parse_hidden(value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        items = [part.strip() for part in value.split(",")] if value.strip() else []
    else:
        raise ConfigError("hidden", f"must be layer sizes such as 256 or 256,128, got {value!r}")
    try:
        return tuple(_strict_int(item) for item in items)
    except ValueError:
        raise ConfigError(
            "hidden", f"must be layer sizes such as 256 or 256,128, got {value!r}"
        ) from None


def _strict_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    raise ValueError(value)


def _parse_int(name: str, value: Any) -> int:
    try:
        return _strict_int(value)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, got {value!r}") from None


def _parse_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(name, f"must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, f"must be a number, got {value!r}") from None


def check_validation_rows(dataset: DatasetName, validation: float) -> None:
    """ConfigError unless a validation share is 0 or holds out enough images to measure something."""
    train_size = DATASET_SPECS[dataset].train_size
    if validation and round(train_size * validation) < MIN_VALIDATION_ROWS:
        least = MIN_VALIDATION_ROWS / train_size
        raise ConfigError(
            "validation",
            f"must be 0 or hold out at least {MIN_VALIDATION_ROWS} of {dataset}'s {train_size} training images "
            f"(a share of at least {least:.3g}), got {shown(validation)}",
        )


def check_batch_size(batch_size: int, train_size: int, dataset_title: str) -> None:
    """ConfigError unless a batch fits in the training set (the one rule for the CLI and the form)."""
    if batch_size > train_size:
        raise ConfigError(
            "batch_size",
            f"must be in [1, {train_size}] for {dataset_title} ({train_size} training images), got {batch_size}",
        )


def shown(value: Any) -> str:
    """A value as a person typed it: `256,128` for layer sizes, `1e+09` for floats, text unquoted."""
    if isinstance(value, tuple | list):
        return ",".join(shown(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return repr(value) if value.strip() != value or not value else value
    return str(value)


def _check_choice(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(field, f"must be one of {' | '.join(allowed)}, got {shown(value)}")


def _check_int(field: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(field, f"must be a whole number in [{low}, {high}], got {shown(value)}")


def _check_number(
    field: str, value: Any, low: float, high: float, *, low_open: bool = False
) -> None:
    bracket = "(" if low_open else "["
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > low if low_open else value >= low)
        and value <= high
    )
    if not ok:
        raise ConfigError(field, f"must be a number in {bracket}{low:g}, {high:g}], got {shown(value)}")


def _check_hidden(hidden: Any) -> None:
    ok = (
        isinstance(hidden, tuple)
        and 1 <= len(hidden) <= MAX_HIDDEN_LAYERS
        and all(isinstance(h, int) and not isinstance(h, bool) for h in hidden)
        and all(1 <= h <= MAX_HIDDEN_UNITS for h in hidden)
    )
    if not ok:
        raise ConfigError(
            "hidden",
            f"must be 1 to {MAX_HIDDEN_LAYERS} layer sizes, each in [1, {MAX_HIDDEN_UNITS}], "
            f"got {shown(hidden)}",
        )
