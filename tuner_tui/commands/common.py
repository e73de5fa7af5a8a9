"""What every command shares: bad input and exit codes, the results store, `--set` values and the
config they make, and the console tables go to.

Exit codes: 0 completed; 1 diverged or failed; 2 bad input (one line on stderr, store untouched);
128 + the signal's number when stopped by a signal (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from tuner_tui.engine.config import RunConfig
    from tuner_tui.runs.records import UnreadableRun
    from tuner_tui.runs.store import ResultsStore
    from tuner_tui.usercode.model_file import ModelFile

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class BadInput(Exception):
    """A user error: printed as one line per problem, exit code 2."""

    def __init__(self, *problems: str) -> None:
        super().__init__(*problems)
        self.problems = problems

    def __str__(self) -> str:
        return "; ".join(self.problems)


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """`--set KEY=VALUE` items as a mapping (the values are parsed by the config's own rules)."""
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise BadInput(f"--set {item}: expected KEY=VALUE")
        values[key.strip()] = value
    return values


def with_location(values: Mapping[str, str], *, data_root: str | None, device: str | None) -> dict[str, str]:
    """`--set` values with the global `--data-root` and `--device` over them (they say where a run
    trains, so they win over a preset's and `--set`'s)."""
    located = dict(values)
    if data_root is not None:
        located["data_root"] = data_root
    if device is not None:
        located["device"] = device
    return located


def resolve_config(
    preset: str | None, overrides: Sequence[str], *, data_root: str | None, device: str | None
) -> tuple[RunConfig, str | None]:
    """The run's config and the label it is stored under: a preset (or the defaults), then
    `--set` values, then the flags."""
    from tuner_tui.engine.config import ConfigError, RunConfig
    from tuner_tui.runs.presets import PresetError, load_preset, preset_label

    try:
        loaded = load_preset(preset) if preset else None
        base = loaded.config if loaded else RunConfig()
        values = with_location(parse_overrides(overrides), data_root=data_root, device=device)
        config = RunConfig.from_mapping(values, base=base)
        return config, preset_label(loaded.name if loaded else None, base if loaded else None, config)
    except (ConfigError, PresetError) as error:
        raise BadInput(str(error)) from None


def model_named(preset: str) -> ModelFile | None:
    """The model file `--preset` names, if it names one (None: a built-in preset); BadInput when the
    name or file cannot be read."""
    from tuner_tui.runs.presets import PresetError, load_run_target
    from tuner_tui.usercode.model_file import ModelFile

    try:
        target = load_run_target(preset)
    except PresetError as error:
        raise BadInput(str(error)) from None
    return target if isinstance(target, ModelFile) else None


def store_location(path: str | None) -> Path:
    """The results store's file: `--store`, else `$TUNER_TUI_STORE`, else the per-user default."""
    from tuner_tui.runs.store import default_store_path

    return Path(path).expanduser() if path else default_store_path()


def open_store(path: str | Path | None, *, create: bool) -> ResultsStore:
    """The results store for writing (`create`: made if absent) or reading (must exist; what cluster
    workers journaled since the last read is imported first, where the store can be written)."""
    from tuner_tui.runs.store import ResultsStore, StoreError, import_pending_journals

    try:
        if create:
            return ResultsStore(path)
        warn(str(problem) for problem in import_pending_journals(path).problems)
        return ResultsStore.open_existing(path)
    except StoreError as error:
        raise BadInput(str(error)) from None


class DeferredStore:
    """The results store, created only when a run first writes to it: bad input found by the run's
    own process (code that cannot be imported) leaves no store behind. Use as a context manager."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = path
        self.opened: ResultsStore | None = None

    def __enter__(self) -> DeferredStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.opened is not None:
            self.opened.close()

    def __getattr__(self, name: str) -> Any:
        """The store's writing methods, the store opened on first use."""
        if name.startswith("_"):
            raise AttributeError(name)
        if self.opened is None:
            from tuner_tui.runs.store import ResultsStore

            self.opened = ResultsStore(self.path)
        return getattr(self.opened, name)


def plain_console() -> Console:
    """stdout: as wide as the terminal, or as wide as the text when piped (never cut at 80)."""
    console = Console()
    return console if console.is_terminal else Console(width=100_000)


def warn(lines: Iterable[str]) -> None:
    """A `tuner-tui: warning:` line on stderr for each of `lines`, shown as text."""
    from tuner_tui.formatting import printable

    for line in lines:
        print(f"tuner-tui: warning: {printable(line)}", file=sys.stderr)


def warn_unreadable(unreadable: Sequence[UnreadableRun]) -> None:
    """A warning per stored run this version cannot read."""
    from tuner_tui.runs.lab_table import unreadable_note

    warn(unreadable_note(run) for run in unreadable)
