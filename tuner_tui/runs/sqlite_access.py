"""Opening an SQLite file for the results store, and waiting out other writers' locks.

Writers open with a busy timeout and take the write lock up front; readers open read-only (a file
that cannot be written, or whose folder cannot, is opened immutable). Both the busy timeout and
the number of attempts are parameters, so tests can shorten them.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")
LOCK_WAIT_ENV = "TUNER_TUI_LOCK_WAIT_S"


class StoreError(Exception):
    """The store cannot be used; `str()` is one line naming the path and the reason."""


@dataclass(frozen=True)
class LockPatience:
    """How long a store waits for another writer's lock: SQLite's busy timeout, then retries with
    short backoff for the cases SQLite does not wait in."""

    busy_timeout_s: float = 30.0
    attempts: int = 6

    @classmethod
    def from_environment(cls) -> LockPatience:
        """`$TUNER_TUI_LOCK_WAIT_S` seconds (default 30; under a second, no retries after it)."""
        text = os.environ.get(LOCK_WAIT_ENV, "")
        try:
            wait = float(text) if text else cls.busy_timeout_s
        except ValueError:
            wait = cls.busy_timeout_s
        wait = min(max(wait, 0.0), 3600.0)
        return cls(busy_timeout_s=wait, attempts=cls.attempts if wait >= 1.0 else 1)


def connect(path: Path, patience: LockPatience) -> sqlite3.Connection:
    """Open `path` for writing with a busy timeout (creating its folder), or raise StoreError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"results store {path}: cannot create its folder ({exc.strerror})") from None
    try:
        conn = sqlite3.connect(path, timeout=patience.busy_timeout_s, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"results store {path}: {exc}") from None
    return _configure(conn, path, "PRAGMA synchronous = NORMAL", "PRAGMA foreign_keys = ON")


def connect_read_only(path: Path, patience: LockPatience) -> sqlite3.Connection:
    """Open `path` for reading only; a file we cannot write (or whose folder we cannot) is read as is."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    error: sqlite3.Error | None = None
    for suffix in ("", "&immutable=1"):
        try:
            conn = sqlite3.connect(
                uri + suffix, uri=True, timeout=patience.busy_timeout_s, isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            error = exc
            continue
        return _configure(conn, path)
    raise StoreError(f"results store {path}: {error}")


def _configure(conn: sqlite3.Connection, path: Path, *pragmas: str) -> sqlite3.Connection:
    try:
        conn.row_factory = sqlite3.Row
        for pragma in pragmas:
            conn.execute(pragma)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"results store {path}: {exc}") from None
    return conn


def retry_busy(action: Callable[[], _T], patience: LockPatience) -> _T:
    """Run `action`, retrying with short backoff while SQLite reports the file locked or busy.

    The busy timeout already waits for other writers; this covers the cases SQLite does not wait in.
    """
    for attempt in range(patience.attempts - 1):
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        time.sleep(0.05 * 2**attempt * (1 + random.random()))
    return action()


def is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text
