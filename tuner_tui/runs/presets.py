"""Presets: named RunConfigs in flat TOML files, shipped with the app or saved by the user.

A preset file holds RunConfig field names as top-level keys. Shipped presets (the 20 Lab 4
experiments and a quick smoke test) live in the repository's `presets/` folder and cannot be
overwritten or shadowed; user presets live in the per-user config folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import platformdirs

from tuner_tui.engine.config import ConfigError, RunConfig
from tuner_tui.formatting import config_summary
from tuner_tui.regular_files import UnsafeFile, read_regular
from tuner_tui.usercode.model_file import ModelFile, ModelFileError, is_model_file, parse_model_file

# The shipped presets are package data (`tuner_tui.presets`: the repository's presets/ folder).
SHIPPED_PRESETS_DIR: Path = Path(str(resources.files("tuner_tui.presets")))
CONFIG_DIR_ENV_VAR = "TUNER_TUI_CONFIG_DIR"
MAX_TOML_BYTES = 1024 * 1024  # a preset or sweep spec is a few hundred bytes; /dev/zero is not

_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOML_ESCAPES = {
    '"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r",
}


class PresetError(ValueError):
    """A preset that cannot be read, found or saved; `str()` is `<source>: [<key>: ]<reason>`."""

    def __init__(self, source: str | Path, reason: str, key: str | None = None) -> None:
        self.source = str(source)
        self.reason = reason
        self.key = key
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.source}: {self.key}" if self.key else self.source
        return f"{where}: {self.reason}"


class PresetExistsError(PresetError):
    """A user preset of this name exists and `overwrite` was not asked for."""


class UnknownPresetError(PresetError):
    """No preset has this name; `suggestions` holds the closest names."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        self.suggestions = tuple(suggestions)
        super().__init__(name, "unknown preset")

    def _message(self) -> str:
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        return f"unknown preset {self.source!r}{hint}"


@dataclass(frozen=True)
class Preset:
    """A named config and the file it came from."""

    name: str
    path: Path
    config: RunConfig
    shipped: bool


def user_config_dir() -> Path:
    """`$TUNER_TUI_CONFIG_DIR` if that is set, else the per-user config folder."""
    override = os.environ.get(CONFIG_DIR_ENV_VAR)
    return Path(override).expanduser() if override else Path(platformdirs.user_config_dir("tuner-tui"))


def user_presets_dir() -> Path:
    """`presets` in the user config folder."""
    return user_config_dir() / "presets"


def list_presets() -> list[Preset]:
    """Every readable built-in preset, shipped and user, in natural name order (exp2 before exp10)."""
    return _scan()[0]


def list_models() -> list[ModelFile]:
    """Every readable model file (a preset that names a training function of the user's), shipped and user."""
    return _scan()[2]


def preset_errors() -> list[PresetError]:
    """Why each user or shipped preset or model file that the lists skip is skipped (broken or shadowed)."""
    return _scan()[1]


def is_path_argument(name_or_path: str) -> bool:
    """Whether a preset or spec argument names a file (ends in `.toml` or holds a `/`)."""
    return name_or_path.endswith(".toml") or "/" in name_or_path or os.sep in name_or_path


def load_preset(name_or_path: str) -> Preset:
    """A built-in preset by name, or by path when the argument ends in `.toml` or contains a `/`
    (PresetError for a model file: see `load_run_target`)."""
    target = load_run_target(name_or_path)
    if isinstance(target, ModelFile):
        raise PresetError(target.path, "a model file (your own training code), not a preset of the built-in network")
    return target


def load_run_target(name_or_path: str) -> Preset | ModelFile:
    """What `--preset` names: a built-in preset, or a model file of the user's, by name or by path."""
    if is_path_argument(name_or_path):
        path = Path(name_or_path).expanduser()
        return _read(path, shipped=path.resolve().parent == SHIPPED_PRESETS_DIR.resolve())
    files = _preset_files()
    if name_or_path not in files:
        raise UnknownPresetError(name_or_path, difflib.get_close_matches(name_or_path, files))
    path, shipped = files[name_or_path]
    return _read(path, shipped)


def save_preset(name: str, config: RunConfig, *, overwrite: bool = False) -> Path:
    """Write `config` as the user preset `name` (atomically) and return the file's path.

    PresetExistsError when the user preset exists and `overwrite` is false.
    """
    if not _NAME_PATTERN.fullmatch(name):
        raise PresetError(f"preset {name!r}", "a name is 1 to 64 letters, digits, _ or -")
    if (SHIPPED_PRESETS_DIR / f"{name}.toml").exists():
        raise PresetError(f"preset {name!r}", "a shipped preset has this name; choose another")
    target = user_presets_dir() / f"{name}.toml"
    if target.exists() and not overwrite:
        raise PresetExistsError(target, "already exists; choose another name or overwrite it")
    write_text_atomically(target, f"# {name}: {config_summary(config)}\n{preset_to_toml(config)}")
    return target


def write_text_atomically(target: Path, text: str) -> None:
    """Write `text` to `target` through a temporary file in its folder; PresetError on failure."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as file:
                file.write(text)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise PresetError(target, f"cannot write: {error.strerror or error}") from None


def preset_to_toml(config: RunConfig) -> str:
    """The config as flat TOML, one `key = value` line per field (`data_root` only when set)."""
    lines = [f"{key} = {toml_value(value)}" for key, value in config.to_dict().items() if value is not None]
    return "\n".join(lines) + "\n"


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's table, read through at most MAX_TOML_BYTES; PresetError (one line) if unusable."""
    try:
        raw = read_regular(path, limit=MAX_TOML_BYTES + 1)  # a FIFO or a device is refused, never waited on
    except UnsafeFile as error:
        raise PresetError(path, str(error).removeprefix(f"{path}: ")) from None
    except OSError as error:
        raise PresetError(path, f"cannot read: {error.strerror or error}") from None
    if len(raw) > MAX_TOML_BYTES:
        raise PresetError(path, f"larger than {MAX_TOML_BYTES // 1024} KiB; not a preset file")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PresetError(path, f"not valid TOML: {error}") from None
    except RecursionError:
        raise PresetError(path, "not valid TOML: nested too deeply") from None


def _scan() -> tuple[list[Preset], list[PresetError], list[ModelFile]]:
    presets: list[Preset] = []
    models: list[ModelFile] = []
    errors: list[PresetError] = []
    files = _preset_files()
    for name in sorted(files, key=_natural_key):
        path, shipped = files[name]
        try:
            target = _read(path, shipped)
        except PresetError as error:
            errors.append(error)
            continue
        if isinstance(target, ModelFile):
            models.append(target)
        else:
            presets.append(target)
    shipped_names = {path.stem for path in _toml_files(SHIPPED_PRESETS_DIR)}
    for path in _toml_files(user_presets_dir()):
        if path.stem in shipped_names:
            errors.append(PresetError(path, "hidden by the shipped preset of the same name; rename the file"))
    return presets, errors, models


def _preset_files() -> dict[str, tuple[Path, bool]]:
    """Every preset file by name, with whether it is shipped; a shipped name hides a user file."""
    found = {path.stem: (path, False) for path in _toml_files(user_presets_dir())}
    found.update({path.stem: (path, True) for path in _toml_files(SHIPPED_PRESETS_DIR)})
    return found


def _toml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.glob("*.toml") if path.is_file())


def _read(path: Path, shipped: bool) -> Preset | ModelFile:
    data = read_toml(path)
    if is_model_file(data):
        try:
            return parse_model_file(data, path.resolve())
        except ModelFileError as error:
            raise PresetError(error.source, error.reason) from None
    try:
        config = RunConfig.from_mapping(data)
    except ConfigError as error:
        raise PresetError(path, error.reason, key=error.field) from None
    return Preset(name=path.stem, path=path, config=config, shipped=shipped)


def _natural_key(name: str) -> list[Any]:
    parts = re.split(r"(\d+)", name)
    return [int(part) if index % 2 else part.casefold() for index, part in enumerate(parts)]


def toml_value(value: Any) -> str:
    """A TOML literal for a str, bool, int, float or list of them."""
    if isinstance(value, str):
        return '"' + "".join(_toml_char(char) for char in value) + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return str(value)


def _toml_char(char: str) -> str:
    if char in _TOML_ESCAPES:
        return _TOML_ESCAPES[char]
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\u{ord(char):04X}"
    return char


def preset_label(name: str | None, preset_config: RunConfig | None, config: RunConfig) -> str | None:
    """The name a run is stored under: the preset's, marked when the config was edited away from
    it. The data root and the device do not count: they say where a run trains, not what."""
    if name is None or preset_config is None:
        return None
    return name if not is_edited(preset_config, config) else f"{name} (edited)"


def is_edited(preset_config: RunConfig, config: RunConfig) -> bool:
    """Whether `config` differs from the preset's in anything but where it runs."""
    return dataclasses.replace(config, data_root=None, device="auto") != dataclasses.replace(
        preset_config, data_root=None, device="auto"
    )
