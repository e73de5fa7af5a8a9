"""Optuna storages from a URL, for the sweeps that write them and for readers that must not.

    sqlite:///PATH        an SQLite file (the default: beside the results store)
    journal:PATH          Optuna's JournalStorage on a file, with its file lock (a shared filesystem);
                          a bare path to an existing journal file means the same
    postgresql://...      any RDB URL SQLAlchemy knows

Writers (`open_storage(url)`) create what is missing. Readers (`read_only=True`) never write and
never create: a missing storage is an error, and each kind is opened so that no write can happen
and no lock is taken that the study's writers would wait for:
- a journal file is read without its lock (Optuna's writers append whole lines under the lock;
  a reader only skips a last line still being written), and the backend refuses to append;
- an SQLite file in rollback-journal mode is copied into memory between two commits (its header's
  change counter is read before and after, and no hot journal may exist) and read there, since
  even a read transaction on the file would hold a lock that a committing writer waits for; a
  file in WAL mode, where readers never block writers, is opened read-only (`mode=ro`);
- PostgreSQL runs every transaction read-only; its readers never block writers (MVCC).
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from tuner_tui.formatting import error_line

SNAPSHOT_ATTEMPTS = 20
SNAPSHOT_PAUSE_S = 0.05
MAX_SNAPSHOT_BYTES = 1024**3
_CHANGE_COUNTER = slice(24, 28)  # SQLite's file change counter, in the database header


class StudyError(Exception):
    """A study or its storage cannot be opened or does not match; `str()` is one line."""


class NoStorage(StudyError):
    """A reader was pointed at a storage that does not exist (and is not created)."""


def storage_url(text: str) -> str:
    """A storage argument as a URL: a bare path to an existing file is a journal."""
    if "://" in text or text.startswith("journal:"):
        return text
    return f"journal:{text}"


def shown_url(url: str) -> str:
    """The URL as it may be shown: a password in it is masked."""
    if "://" not in url or url.startswith("sqlite"):
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def storage_problem(url: str, error: BaseException) -> StudyError:
    """A storage failure as one line that names the storage, with any password masked."""
    text = f"study storage {shown_url(url)}: {error_line(error)}"
    return StudyError(_mask_password(url, text))


def open_storage(url: str, *, read_only: bool = False) -> optuna.storages.BaseStorage:
    """The storage at `url`; StudyError (one line) when it cannot be opened."""
    url = storage_url(url)
    try:
        if url.startswith("journal:"):
            return _journal(Path(url.removeprefix("journal:")).expanduser(), read_only)
        if url.startswith("sqlite:///"):
            return _sqlite(Path(url.removeprefix("sqlite:///")).expanduser(), read_only)
        if read_only:
            return optuna.storages.RDBStorage(
                with_driver(url), skip_table_creation=True,
                engine_kwargs={"pool_pre_ping": True, **_read_only_engine_options(url)},
            )
        return optuna.storages.RDBStorage(with_driver(url), engine_kwargs={"pool_pre_ping": True})
    except StudyError:
        raise
    except Exception as error:  # any storage failure is one line for the user
        raise storage_problem(url, error) from None


def with_driver(url: str) -> str:
    """A plain `postgresql://` URL names the psycopg2 driver to SQLAlchemy; tuner-tui's postgres
    extra installs psycopg 3, so such a URL is given that driver when psycopg2 is absent."""
    if url.startswith(("postgresql://", "postgres://")) and importlib.util.find_spec("psycopg2") is None:
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class _ReadOnlyJournal(JournalFileBackend):
    """A journal file that is read and never appended to (it is not even opened for writing)."""

    def __init__(self, path: str) -> None:  # the parent's would create a missing file
        self._file_path = path
        self._log_number_offset: dict[int, int] = {0: 0}

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        raise StudyError(f"study storage journal:{self._file_path}: opened for reading only")


def _journal(path: Path, read_only: bool) -> optuna.storages.BaseStorage:
    if read_only:
        _existing_regular_file(path, "journal")
        return optuna.storages.JournalStorage(_ReadOnlyJournal(str(path)))
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def _sqlite(path: Path, read_only: bool) -> optuna.storages.BaseStorage:
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 60}})
    _existing_regular_file(path, "SQLite")
    from sqlalchemy.pool import StaticPool

    if Path(f"{path}-wal").exists():  # WAL: readers take no lock a writer waits for
        uri = f"{path.resolve().as_uri()}?mode=ro"
        return optuna.storages.RDBStorage(
            "sqlite://", skip_table_creation=True,
            engine_kwargs={"creator": lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)},
        )
    copy = sqlite_snapshot(path)
    return optuna.storages.RDBStorage(
        "sqlite://", skip_table_creation=True, engine_kwargs={"creator": lambda: copy, "poolclass": StaticPool},
    )


def sqlite_snapshot(path: Path) -> sqlite3.Connection:
    """An in-memory copy of the SQLite file at `path`, taken between two commits without a lock.

    A copy is kept when the header's change counter is the same before and after it and no hot
    journal (a commit in progress) was there; otherwise it is taken again, a few times.
    """
    for _ in range(SNAPSHOT_ATTEMPTS):
        journal = Path(f"{path}-journal")
        before = _header(path)
        if journal.exists():
            time.sleep(SNAPSHOT_PAUSE_S)
            continue
        data = _read_bounded(path)
        if _header(path) == before and data[:100] == before and not journal.exists():
            connection = sqlite3.connect(":memory:", check_same_thread=False)
            connection.deserialize(data)
            return connection
        time.sleep(SNAPSHOT_PAUSE_S)
    raise StudyError(f"study storage sqlite:///{path}: the file kept changing while it was read; try again")


def _header(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(100)


def _read_bounded(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_SNAPSHOT_BYTES:
        raise StudyError(f"study storage sqlite:///{path}: larger than {MAX_SNAPSHOT_BYTES // 1024**3} GiB")
    with path.open("rb") as handle:
        return handle.read(size)


def _existing_regular_file(path: Path, kind: str) -> None:
    """Readers open only a regular file that exists (a FIFO would hang; a missing one is not created)."""
    if not path.exists():
        raise NoStorage(f"no {kind} study storage at {path}")
    if not path.is_file():
        raise StudyError(f"study storage {path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise StudyError(f"study storage {path}: cannot be read (permission denied)")


def _read_only_engine_options(url: str) -> dict[str, Any]:
    """Every transaction read-only (SQLAlchemy's PostgreSQL dialects set the session so)."""
    if url.startswith(("postgresql", "postgres")):
        return {"execution_options": {"postgresql_readonly": True}}
    return {}


def _mask_password(url: str, text: str) -> str:
    if "://" not in url or url.startswith("sqlite"):
        return text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(url).password
    except ArgumentError:
        return text
    return text.replace(str(password), "***") if password else text
