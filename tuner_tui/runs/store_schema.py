"""The results store's schema: its migrations, and how a file is known to be a tuner-tui store.

Schema version N (SQLite's `user_version`) means `MIGRATIONS[:N]` have run; add a version by
appending one function. A file is ours when it is empty (version 0, no tables: a new store) or when
the tables its version promises are there with exactly the columns those migrations made. Anything
else is refused before a single byte of it is written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import cache


class ForeignFile(Exception):
    """An SQLite file that is not a tuner-tui results store (or is newer than this version)."""


def _migrate_to_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            status TEXT NOT NULL,
            config TEXT NOT NULL,
            dataset TEXT NOT NULL,
            device_name TEXT NOT NULL,
            data_source TEXT,
            started_at REAL NOT NULL,
            finished_at REAL,
            hostname TEXT NOT NULL,
            pid INTEGER NOT NULL,
            params INTEGER NOT NULL,
            estimated_memory_bytes INTEGER,
            estimated_time_s REAL,
            train_loss REAL,
            train_accuracy REAL,
            test_accuracy REAL,
            peak_memory_bytes INTEGER,
            gpu_memory_bytes INTEGER,
            train_time_s REAL,
            total_time_s REAL,
            message TEXT NOT NULL DEFAULT '',
            diverged_step INTEGER,
            loss_curve TEXT NOT NULL DEFAULT '[]'
        )"""
    )
    conn.execute(
        """CREATE TABLE run_epochs (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            epoch INTEGER NOT NULL,
            train_loss REAL,
            train_accuracy REAL,
            test_accuracy REAL,
            seconds REAL NOT NULL,
            PRIMARY KEY (run_id, epoch)
        )"""
    )
    conn.execute("CREATE INDEX runs_by_dataset ON runs(dataset, started_at)")
    conn.execute("CREATE INDEX runs_by_status ON runs(status, hostname)")


def _migrate_to_v2(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE runs ADD COLUMN preset TEXT")


def _migrate_to_v3(conn: sqlite3.Connection) -> None:
    """Run ids that survive import, leases, sweep/pack/cluster links, tags and notes, tombstones."""
    for column in (
        "uid TEXT", "lease_expires_at REAL", "sweep TEXT", "trial INTEGER",
        "pack_size INTEGER NOT NULL DEFAULT 1", "array_task TEXT",
        "tags TEXT NOT NULL DEFAULT '[]'", "note TEXT NOT NULL DEFAULT ''",
    ):
        conn.execute(f"ALTER TABLE runs ADD COLUMN {column}")
    for column in ("train_ce REAL", "val_loss REAL", "val_accuracy REAL"):
        conn.execute(f"ALTER TABLE run_epochs ADD COLUMN {column}")
    conn.execute("UPDATE runs SET uid = lower(hex(randomblob(16))) WHERE uid IS NULL")
    conn.execute("CREATE UNIQUE INDEX runs_by_uid ON runs(uid)")
    conn.execute("CREATE INDEX runs_by_sweep ON runs(sweep, trial)")
    conn.execute("CREATE TABLE deleted_runs (uid TEXT PRIMARY KEY, deleted_at REAL NOT NULL)")
    conn.execute("CREATE TABLE imported_files (path TEXT PRIMARY KEY, offset INTEGER NOT NULL)")
    conn.execute(
        """CREATE TABLE sweeps (
            name TEXT PRIMARY KEY,
            storage TEXT NOT NULL,
            journal_dir TEXT,
            registered_at REAL NOT NULL
        )"""
    )


def _migrate_to_v4(conn: sqlite3.Connection) -> None:
    """Which journal created an imported run (only it may advance the run), and the lines read of
    each journal (a skipped line is reported by its number)."""
    conn.execute("ALTER TABLE runs ADD COLUMN journal TEXT")
    conn.execute("ALTER TABLE imported_files ADD COLUMN lines INTEGER NOT NULL DEFAULT 0")


def _migrate_to_v5(conn: sqlite3.Connection) -> None:
    """Runs of user code: their model file, their code's origin, their own metrics and their log."""
    for column in ("model TEXT", "code TEXT", "metrics TEXT NOT NULL DEFAULT '{}'", "log TEXT NOT NULL DEFAULT ''"):
        conn.execute(f"ALTER TABLE runs ADD COLUMN {column}")
    conn.execute("ALTER TABLE run_epochs ADD COLUMN metrics TEXT NOT NULL DEFAULT '{}'")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migrate_to_v1, _migrate_to_v2, _migrate_to_v3, _migrate_to_v4, _migrate_to_v5,
]


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def table_columns(conn: sqlite3.Connection) -> dict[str, tuple[str, ...]]:
    """Every table of the file with its columns, in order."""
    names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
    return {name: tuple(row[1] for row in conn.execute(f'PRAGMA table_info("{name}")')) for name in names}


def expected_tables(version: int) -> dict[str, tuple[str, ...]]:
    """The tables and columns that the first `version` migrations make, read off a scratch database."""
    return _made_by(tuple(MIGRATIONS[:version]))


@cache
def _made_by(migrations: tuple[Callable[[sqlite3.Connection], None], ...]) -> dict[str, tuple[str, ...]]:
    scratch = sqlite3.connect(":memory:")
    try:
        for migration in migrations:
            migration(scratch)
        return table_columns(scratch)
    finally:
        scratch.close()


def identify(conn: sqlite3.Connection) -> int:
    """The schema version of a tuner-tui store (0: an empty file, to be created); ForeignFile for
    anything else. Reads only: call it inside one read transaction (another process may be creating
    the schema meanwhile)."""
    version = schema_version(conn)
    tables = table_columns(conn)
    latest = len(MIGRATIONS)
    if version > latest:
        if "runs" in tables:
            raise ForeignFile(
                f"schema version {version} is newer than this tuner-tui understands ({latest}); upgrade tuner-tui"
            )
        raise ForeignFile("not a tuner-tui results store")
    if version == 0:
        if tables:
            raise ForeignFile("not a tuner-tui results store")
        return 0
    for table, columns in expected_tables(version).items():
        if tables.get(table) != columns:
            raise ForeignFile("not a tuner-tui results store")
    return version
