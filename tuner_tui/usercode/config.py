"""A run of your own code: the model file, the value of each of its fields, and where it trains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuner_tui.engine.config import ConfigError, RunConfig, parse_field
from tuner_tui.usercode.model_file import ModelFile


@dataclass(frozen=True)
class UserRunConfig:
    """Everything that defines a run of a user's function (and so makes it reproducible).

    `values` are the model's fields after `--set` and a sweep's sample; `device`, `data_root` and
    `validation` (the share of a built-in dataset's training rows held out, a sweep's) say where
    and on what it trains, as for built-in runs.
    """

    model: str  # the model file's absolute path
    values: tuple[tuple[str, Any], ...]
    device: str = "auto"
    data_root: str | None = None
    validation: float = 0.0

    def __post_init__(self) -> None:  # the same rules as a built-in run's for what they share
        RunConfig(device=self.device, data_root=self.data_root, validation=self.validation)

    @property
    def fields(self) -> dict[str, Any]:
        """The config the function is given."""
        return dict(self.values)

    @property
    def epochs(self) -> int | None:
        """The run's epochs, when the model has an `epochs` field (for progress and ETA)."""
        value = self.fields.get("epochs")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "values": self.fields, "device": self.device, "data_root": self.data_root,
                "validation": self.validation}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UserRunConfig:
        """A config as `to_dict` wrote it (TypeError or ValueError if it is not one)."""
        values = data["values"]
        if not isinstance(values, Mapping) or not isinstance(data["model"], str):
            raise TypeError("not a user run's config")
        return cls(str(data["model"]), tuple(values.items()), str(data.get("device", "auto")),
                   data.get("data_root"), float(data.get("validation", 0.0)))

    def summary(self) -> str:
        """The fields on one line: `lr 0.01 · hidden 128 · epochs 5`."""
        return " · ".join(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
                          for name, value in self.values)


def user_config(
    model: ModelFile, overrides: Mapping[str, Any], *, where: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> UserRunConfig:
    """The model's defaults (or `base`) with `overrides` over them, and where it trains (`where`:
    device, data_root, validation, as `--device`, `--data-root` and a sweep give them).

    ModelFileError (naming the file) for an undeclared field or a value out of range; ConfigError for
    a device, data root or validation share the built-in rules refuse.
    """
    values = model.values(overrides, base)
    located = {key: parse_field(key, value) for key, value in (where or {}).items()}
    unknown = set(located) - {"device", "data_root", "validation"}
    if unknown:
        raise ConfigError(sorted(unknown)[0], "not a setting of a user run; use --set for the model's fields")
    return UserRunConfig(str(model.path), tuple(values.items()), **located)


def ordered(values: Mapping[str, Any], order: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """`values` in the model file's field order."""
    return tuple((name, values[name]) for name in order if name in values)
