"""Where a sweep lives: the one resolver of a sweep's study storage, for the commands and the app.

A sweep's study is in `--storage` when given; else where the results store registered it (a
cluster sweep's journal, a PostgreSQL URL); else in the SQLite file beside the results store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

Registered = Mapping[str, tuple[str, Path | None]]  # sweep name → (storage URL, run journal folder)


@dataclass(frozen=True)
class SweepLocation:
    """A sweep's name and the Optuna storage URL its study lives in."""

    name: str
    storage: str


def default_storage_url(store_path: Path) -> str:
    """The SQLite study file beside a results store: `runs.sqlite3` → `runs.optuna.sqlite3`."""
    return f"sqlite:///{store_path.with_name(store_path.stem + '.optuna.sqlite3')}"


def storage_of(name: str, *, storage: str | None, registered: Registered, store_path: Path) -> str:
    """The storage of sweep `name`: `--storage`, else its registration, else the default beside the store."""
    if storage:
        return storage
    if name in registered:
        return registered[name][0]
    return default_storage_url(store_path)


def known_sweeps(*, storage: str | None, registered: Registered, store_path: Path) -> list[SweepLocation]:
    """Every sweep the store registered, and every study in `--storage` (or in the default SQLite
    file, when it exists: reading never creates it), by name. StudyError when a storage cannot be read."""
    from tuner_tui.sweeps.study import list_study_names

    locations = {name: url for name, (url, _) in registered.items()}
    default = storage or default_storage_url(store_path)
    if storage or Path(default.removeprefix("sqlite:///")).is_file():
        for name in list_study_names(default):
            locations.setdefault(name, default)
    return [SweepLocation(name, url) for name, url in sorted(locations.items())]
