"""`tuner-tui sweep export NAME --sqlite PATH`: a copy of a study in an SQLite file, the one form every
Optuna viewer opens (optuna-dashboard, Optuna's own `load_study`).

The source (journal, PostgreSQL or SQLite) is opened read-only and copied with `optuna.copy_study`;
a study of the same name already in the file is refused, and a copy that fails is removed.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import optuna

from tuner_tui.commands.common import EXIT_OK, BadInput
from tuner_tui.sweeps.storages import NoStorage, StudyError, open_storage, shown_url, storage_problem


def export_command(name: str, source_url: str, path: Path) -> int:
    """Copy study `name` from `source_url` into the SQLite file at `path` and say how to open it."""
    path = path.expanduser().resolve()
    destination_url = f"sqlite:///{path}"
    try:
        source = open_storage(source_url, read_only=True)
    except NoStorage as missing:
        raise BadInput(f"no sweep named {name!r} ({missing})") from None
    except StudyError as error:
        raise BadInput(str(error)) from None
    trials = _trial_count(source, name, source_url)
    if path.exists() and name in _study_names(destination_url):
        raise BadInput(f"{path} already has a study named {name!r}: export to another file, or delete that study")
    try:
        destination = open_storage(destination_url)
    except StudyError as error:
        raise BadInput(str(error)) from None
    _copy(name, source, destination, destination_url)
    print(f"exported sweep {name} ({trials} trials) from {shown_url(source_url)} to {path}")
    print(f"open it with: optuna-dashboard {destination_url}")
    return EXIT_OK


def _trial_count(source: optuna.storages.BaseStorage, name: str, source_url: str) -> int:
    try:
        study = optuna.load_study(study_name=name, storage=source)
        return len(study.get_trials(deepcopy=False))
    except KeyError:
        raise BadInput(f"no sweep named {name!r} in {shown_url(source_url)}") from None
    except Exception as error:  # any storage failure is one line for the user
        raise BadInput(str(storage_problem(source_url, error))) from None


def _study_names(url: str) -> list[str]:
    """The studies already in the destination file, read without writing it."""
    try:
        return optuna.study.get_all_study_names(open_storage(url, read_only=True))
    except StudyError as error:
        raise BadInput(str(error)) from None
    except Exception as error:  # not an SQLite file, or not Optuna's
        raise BadInput(str(storage_problem(url, error))) from None


def _copy(
    name: str, source: optuna.storages.BaseStorage, destination: optuna.storages.BaseStorage, url: str
) -> None:
    try:
        optuna.copy_study(from_study_name=name, from_storage=source, to_storage=destination)
    except optuna.exceptions.DuplicatedStudyError:  # written there since it was checked
        raise BadInput(f"{url} already has a study named {name!r}") from None
    except Exception as error:  # a partial copy is not left behind
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=destination)
        raise BadInput(str(storage_problem(url, error))) from None
