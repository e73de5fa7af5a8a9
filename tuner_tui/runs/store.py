"""The results store: every training run as a row in one SQLite file, safe for many writers on one host.

A run is inserted as `running` when it starts, each finished epoch is committed when it ends, and
the run is completed in one transaction when it finishes, so a reader never sees half an epoch
and a killed run loses at most the epoch it was in. A running row carries a lease that its writer
renews (`tuner_tui.runs.lease`): a reader shows a row whose lease expired, or whose process is
gone from this host, as `interrupted` without writing; the next writer records it.

Readers open with `open_existing`, which changes nothing on disk (a missing file is an error, a
read-only file is fine). Writers take the lock up front (`BEGIN IMMEDIATE`) and wait for it, so a
job array on one node can share one file. SQLite's locks do not work across a network filesystem:
nodes never share one file (see `tuner_tui.sweeps` for how cluster workers report their runs).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import socket
import sqlite3
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import platformdirs

from tuner_tui.engine.chance import at_chance
from tuner_tui.engine.config import ConfigError, RunConfig
from tuner_tui.engine.dataset_specs import DATASET_SPECS
from tuner_tui.engine.events import EpochEnd, Finished, RunStatus
from tuner_tui.runs.lease import LEASE_SECONDS, holder_gone

ENV_VAR = "TUNER_TUI_STORE"
MAX_CURVE_POINTS = 512
JOURNAL_SUFFIX = ".jsonl"  # run journals of cluster workers (see tuner_tui.runs.journal)

_BUSY_TIMEOUT_S = 30.0
_ATTEMPTS = 6
_T = TypeVar("_T")


class StoreError(Exception):
    """The store cannot be used; `str()` is one line naming the path and the reason."""


def default_store_path() -> Path:
    """`$TUNER_TUI_STORE` if set, else `runs.sqlite3` in the per-user data folder."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("tuner-tui")) / "runs.sqlite3"


@dataclass(frozen=True)
class RunLabels:
    """What a run belongs to: the preset it came from, its sweep and trial, its pack, its cluster task."""

    preset: str | None = None
    sweep: str | None = None
    trial: int | None = None
    pack_size: int = 1
    array_task: str | None = None


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch of a stored run; accuracies in percent."""

    epoch: int
    train_loss: float | None
    train_accuracy: float | None
    test_accuracy: float | None
    seconds: float
    train_ce: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "train_ce": self.train_ce,
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "val_loss": self.val_loss,
            "val_accuracy": self.val_accuracy,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class RunRecord:
    """One stored run; figures that do not apply (or not yet) are None."""

    id: int
    status: str
    config: RunConfig
    device_name: str
    data_source: str | None
    started_at: float
    finished_at: float | None
    hostname: str
    pid: int
    params: int
    estimated_memory_bytes: int | None
    estimated_time_s: float | None
    train_loss: float | None
    train_accuracy: float | None
    test_accuracy: float | None
    peak_memory_bytes: int | None
    gpu_memory_bytes: int | None
    train_time_s: float | None
    total_time_s: float | None
    message: str
    diverged_step: int | None
    epochs: tuple[EpochRecord, ...]
    loss_curve: tuple[float, ...]
    preset: str | None = None  # the preset the run's config came from, unedited
    uid: str = ""
    sweep: str | None = None
    trial: int | None = None
    pack_size: int = 1
    array_task: str | None = None
    tags: tuple[str, ...] = ()
    note: str = ""
    lease_expires_at: float | None = None

    @property
    def label(self) -> str:
        """The run's name in the lab's tables: its preset, its sweep trial, else `run N`."""
        if self.preset:
            return self.preset
        if self.sweep is not None and self.trial is not None:
            return f"{self.sweep} #{self.trial}"
        return f"run {self.id}"

    @property
    def train_ce(self) -> float | None:
        """Mean cross-entropy of the last epoch (comparable across batch sizes, unlike the lab's loss)."""
        return self.epochs[-1].train_ce if self.epochs else None

    @property
    def at_chance(self) -> bool:
        """Whether the run ended with test accuracy no better than guessing."""
        return self.status != RunStatus.RUNNING.value and at_chance(
            self.test_accuracy, DATASET_SPECS[self.config.dataset].classes
        )

    def to_json(self) -> dict[str, Any]:
        """The run as the CLI's `--json` output writes it."""
        return {
            "run_id": self.id or None,  # None: a run the store could not keep (see session.unsaved_record)
            "uid": self.uid or None,
            "preset": self.preset,
            "sweep": self.sweep,
            "trial": self.trial,
            "status": self.status,
            "at_chance": self.at_chance,
            "config": self.config.to_dict(),
            "device": self.device_name,
            "node": self.hostname,
            "array_task": self.array_task,
            "pack_size": self.pack_size,
            "data_source": self.data_source,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "message": self.message,
            "diverged_step": self.diverged_step,
            "tags": list(self.tags),
            "note": self.note,
            "metrics": {
                "train_accuracy": self.train_accuracy,
                "train_loss": self.train_loss,
                "train_ce": self.train_ce,
                "test_accuracy": self.test_accuracy,
                "params": self.params,
                "estimated_memory_bytes": self.estimated_memory_bytes,
                "peak_memory_bytes": self.peak_memory_bytes,
                "gpu_memory_bytes": self.gpu_memory_bytes,
                "estimated_time_s": self.estimated_time_s,
                "train_time_s": self.train_time_s,
                "total_time_s": self.total_time_s,
            },
            "epochs": [epoch.to_json() for epoch in self.epochs],
        }


@dataclass(frozen=True)
class UnreadableRun:
    """A stored row this version cannot read (a newer config, a damaged value): shown, never dropped."""

    id: int
    status: str
    started_at: float | None
    reason: str


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


# Schema version N means MIGRATIONS[:N] have run; add a version by appending one function.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_v1, _migrate_to_v2, _migrate_to_v3]

_RUN_COLUMNS = tuple(f.name for f in RunRecord.__dataclass_fields__.values() if f.name != "epochs")
_SELECT_RUNS = f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs"
_EPOCH_COLUMNS = tuple(EpochRecord.__dataclass_fields__)


def downsample(values: Sequence[float], max_points: int = MAX_CURVE_POINTS) -> tuple[float, ...]:
    """At most `max_points` values: the means of consecutive, near-equal buckets."""
    n = len(values)
    if n <= max_points:
        return tuple(float(v) for v in values)
    bounds = [i * n // max_points for i in range(max_points + 1)]
    return tuple(math.fsum(values[lo:hi]) / (hi - lo) for lo, hi in itertools.pairwise(bounds))


@dataclass
class _Reading:
    """What a read needs to tell a live run from a dead one."""

    now: float


class ResultsStore:
    """One SQLite results file; thread-safe, and safe to share between processes on one host.

    `ResultsStore(path)` opens for writing (creating the file and its folder); `open_existing(path)`
    opens for reading only. `clock` (seconds since the epoch) can be injected in tests.
    """

    def __init__(
        self, path: str | Path | None = None, *, clock: Callable[[], float] = time.time, _read_only: bool = False
    ) -> None:
        self.path = _checked_path(path)
        self.clock = clock
        self.read_only = _read_only
        self._lock = threading.RLock()
        self._conn = _connect_read_only(self.path) if _read_only else _connect(self.path)
        try:
            self._check_schema()
            if not _read_only:
                self._migrate()
                self.recover_interrupted()
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def open_existing(cls, path: str | Path | None = None, *, clock: Callable[[], float] = time.time) -> ResultsStore:
        """Open an existing store for reading: nothing is created or changed; StoreError if there is none."""
        checked = _checked_path(path)
        if not checked.is_file():
            raise StoreError(f"no store at {checked}")
        return cls(checked, clock=clock, _read_only=True)

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- writing a run -------------------------------------------------------------------

    def start_run(
        self,
        config: RunConfig,
        *,
        device_name: str,
        params: int,
        estimated_memory_bytes: int | None,
        estimated_time_s: float | None,
        data_source: str | None,
        labels: RunLabels | None = None,
        uid: str | None = None,
        lease_s: float = LEASE_SECONDS,
    ) -> int:
        """Insert a `running` row for this process, with a lease of `lease_s`, and return its id."""
        labels = labels or RunLabels()
        now = self.clock()
        row = {
            "uid": uid or new_run_uid(), "status": RunStatus.RUNNING.value,
            "config": json.dumps(config.to_dict()), "dataset": config.dataset, "device_name": device_name,
            "data_source": data_source, "started_at": now, "hostname": socket.gethostname(),
            "pid": os.getpid(), "params": params, "estimated_memory_bytes": estimated_memory_bytes,
            "estimated_time_s": estimated_time_s, "preset": labels.preset, "sweep": labels.sweep,
            "trial": labels.trial, "pack_size": labels.pack_size, "array_task": labels.array_task,
            "lease_expires_at": now + lease_s,
        }
        sql = f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"
        return self._transaction(lambda conn: int(conn.execute(sql, tuple(row.values())).lastrowid or 0), write=True)

    def record_epoch(self, run_id: int, epoch: EpochEnd, *, lease_s: float = LEASE_SECONDS) -> None:
        """Commit one finished epoch of a running run and renew its lease."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT OR REPLACE INTO run_epochs (run_id, {', '.join(_EPOCH_COLUMNS)}) "
                f"VALUES ({', '.join('?' * (len(_EPOCH_COLUMNS) + 1))})",
                _epoch_row(run_id, epoch),
            )
            conn.execute(
                "UPDATE runs SET lease_expires_at = ?, train_loss = ?, train_accuracy = ?, test_accuracy = ? "
                "WHERE id = ? AND status = ?",
                (self.clock() + lease_s, epoch.train_loss, epoch.train_accuracy, epoch.test_accuracy, run_id,
                 RunStatus.RUNNING.value),
            )

        self._transaction(write, write=True)

    def renew_lease(self, run_id: int, expires_at: float) -> None:
        """Push a running run's lease out to `expires_at` (its heartbeat)."""
        self._transaction(
            lambda conn: conn.execute(
                "UPDATE runs SET lease_expires_at = ? WHERE id = ? AND status = ?",
                (expires_at, run_id, RunStatus.RUNNING.value),
            ),
            write=True,
        )

    def finish_run(self, run_id: int, finished: Finished) -> None:
        """Record how a run ended, its metrics, epochs and loss curve, all or nothing.

        KeyError if there is no run with this id.
        """
        resources = finished.resources
        values = (
            RunStatus(finished.status).value, self.clock(), finished.params, finished.train_loss,
            finished.train_accuracy, finished.test_accuracy, resources.peak_memory_bytes,
            resources.gpu_process_memory_bytes, resources.train_time_s, resources.total_time_s,
            finished.message, finished.diverged_step, json.dumps(downsample(finished.loss_curve)), run_id,
        )

        def update(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                """UPDATE runs SET status = ?, finished_at = ?, params = ?, train_loss = ?,
                    train_accuracy = ?, test_accuracy = ?, peak_memory_bytes = ?,
                    gpu_memory_bytes = ?, train_time_s = ?, total_time_s = ?, message = ?,
                    diverged_step = ?, loss_curve = ?, lease_expires_at = NULL
                WHERE id = ?""",
                values,
            )
            if cursor.rowcount == 0:
                raise KeyError(run_id)
            conn.execute("DELETE FROM run_epochs WHERE run_id = ?", (run_id,))
            conn.executemany(
                f"INSERT INTO run_epochs (run_id, {', '.join(_EPOCH_COLUMNS)}) "
                f"VALUES ({', '.join('?' * (len(_EPOCH_COLUMNS) + 1))})",
                (_epoch_row(run_id, e) for e in finished.epochs),
            )

        self._transaction(update, write=True)

    # --- editing -------------------------------------------------------------------------

    def set_tags(self, run_id: int, tags: Iterable[str]) -> None:
        """Replace a run's tags (kept sorted and unique)."""
        clean = sorted({tag.strip() for tag in tags if tag.strip()})
        self._update_one(run_id, "tags", json.dumps(clean))

    def set_note(self, run_id: int, note: str) -> None:
        self._update_one(run_id, "note", note)

    def delete_run(self, run_id: int) -> None:
        """Delete a run and its epochs; its uid is remembered so an import never brings it back."""

        def delete(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT uid FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            conn.execute(
                "INSERT OR REPLACE INTO deleted_runs (uid, deleted_at) VALUES (?, ?)", (row["uid"], self.clock())
            )
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

        self._transaction(delete, write=True)

    def _update_one(self, run_id: int, column: str, value: Any) -> None:
        def update(conn: sqlite3.Connection) -> None:
            if conn.execute(f"UPDATE runs SET {column} = ? WHERE id = ?", (value, run_id)).rowcount == 0:
                raise KeyError(run_id)

        self._transaction(update, write=True)

    # --- sweeps and cluster journals -----------------------------------------------------

    def register_sweep(self, name: str, storage: str, journal_dir: Path | None = None) -> None:
        """Remember where sweep `name`'s study lives (and its workers' run journals, on a cluster)."""
        self._transaction(
            lambda conn: conn.execute(
                "INSERT INTO sweeps (name, storage, journal_dir, registered_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET storage = excluded.storage, journal_dir = excluded.journal_dir",
                (name, storage, str(journal_dir) if journal_dir else None, self.clock()),
            ),
            write=True,
        )

    def registered_sweeps(self) -> dict[str, tuple[str, Path | None]]:
        """Sweep name → (study storage URL, run journal folder or None)."""
        rows = self._transaction(
            lambda conn: conn.execute("SELECT name, storage, journal_dir FROM sweeps ORDER BY name").fetchall(),
            write=False,
        )
        return {row["name"]: (row["storage"], Path(row["journal_dir"]) if row["journal_dir"] else None) for row in rows}

    def pending_journal_bytes(self) -> int:
        """How much of the registered run journals has not been imported yet (0: nothing to do)."""
        offsets = self._imported_offsets()
        pending = 0
        for path in self._journal_files():
            try:
                pending += max(0, path.stat().st_size - offsets.get(str(path), 0))
            except OSError:
                continue
        return pending

    def import_journals(self) -> int:
        """Import the complete new lines of every registered run journal; returns the lines applied.

        Idempotent: runs are matched by uid, a deleted run's uid is never imported again, and each
        file's offset advances only past whole lines.
        """
        applied = 0
        offsets = self._imported_offsets()
        for path in self._journal_files():
            start = offsets.get(str(path), 0)
            try:
                records, end = _complete_lines(path, start)
            except OSError:
                continue
            if end == start:
                continue

            def apply(conn: sqlite3.Connection, records: list[dict[str, Any]] = records, path: Path = path,
                      end: int = end) -> None:
                for record in records:
                    _apply_journal_record(conn, record)
                conn.execute(
                    "INSERT INTO imported_files (path, offset) VALUES (?, ?) "
                    "ON CONFLICT(path) DO UPDATE SET offset = excluded.offset",
                    (str(path), end),
                )

            self._transaction(apply, write=True)
            applied += len(records)
        return applied

    def _imported_offsets(self) -> dict[str, int]:
        rows = self._transaction(lambda conn: conn.execute("SELECT path, offset FROM imported_files").fetchall(),
                                 write=False)
        return {row["path"]: int(row["offset"]) for row in rows}

    def _journal_files(self) -> list[Path]:
        files: list[Path] = []
        for _storage, folder in self.registered_sweeps().values():
            if folder is not None and folder.is_dir():
                files.extend(sorted(folder.glob(f"*{JOURNAL_SUFFIX}")))
        return files

    # --- reading -------------------------------------------------------------------------

    def get_run(self, run_id: int) -> RunRecord:
        """The run with this id; KeyError if there is none (or it cannot be read)."""
        runs, _ = self._read(f"{_SELECT_RUNS} WHERE id = ?", (run_id,))
        if not runs:
            raise KeyError(run_id)
        return runs[0]

    def find_run(self, uid: str) -> RunRecord | None:
        """The run with this uid (a run id that survives import), if it is here and readable."""
        runs, _ = self._read(f"{_SELECT_RUNS} WHERE uid = ?", (uid,))
        return runs[0] if runs else None

    def list_runs(
        self, *, limit: int | None = None, dataset: str | None = None, sweep: str | None = None
    ) -> list[RunRecord]:
        """Readable runs newest first, optionally one dataset's or one sweep's, at most `limit`."""
        return self._list(limit=limit, dataset=dataset, sweep=sweep)[0]

    def list_unreadable(self) -> list[UnreadableRun]:
        """The rows `list_runs` leaves out because this version cannot read them, with why."""
        return self._list(limit=None, dataset=None, sweep=None)[1]

    def _list(
        self, *, limit: int | None, dataset: str | None, sweep: str | None
    ) -> tuple[list[RunRecord], list[UnreadableRun]]:
        where: list[str] = []
        args: list[Any] = []
        if dataset is not None:
            where.append("dataset = ?")
            args.append(dataset)
        if sweep is not None:
            where.append("sweep = ?")
            args.append(sweep)
        sql = _SELECT_RUNS + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY started_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return self._read(sql, args)

    def history_seconds_per_step(self, config: RunConfig, device_name: str) -> float | None:
        """Median training seconds per step of completed solo runs like `config` on this device."""
        rows = self._transaction(
            lambda conn: conn.execute(
                """SELECT config, train_time_s FROM runs
                WHERE status = ? AND dataset = ? AND device_name = ? AND train_time_s > 0 AND pack_size = 1""",
                (RunStatus.COMPLETED.value, config.dataset, device_name),
            ).fetchall(),
            write=False,
        )
        train_size = DATASET_SPECS[config.dataset].train_size
        rates = []
        for row in rows:
            try:
                past = RunConfig.from_mapping(json.loads(row["config"]))
            except (ValueError, TypeError, ConfigError):
                continue
            if (past.hidden, past.batch_size, past.engine) == (config.hidden, config.batch_size, config.engine):
                steps = past.epochs * math.ceil(train_size / past.batch_size)
                rates.append(row["train_time_s"] / steps)
        return statistics.median(rates) if rates else None

    def _read(self, sql: str, args: Sequence[Any]) -> tuple[list[RunRecord], list[UnreadableRun]]:
        reading = _Reading(now=self.clock())
        return self._transaction(lambda conn: _load_runs(conn, sql, args, reading), write=False)

    # --- recovery ------------------------------------------------------------------------

    def recover_interrupted(self) -> int:
        """Record as `interrupted` the running rows whose writer is gone; returns how many."""
        reading = _Reading(now=self.clock())

        def recover(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "SELECT id, pid, hostname, lease_expires_at FROM runs WHERE status = ?", (RunStatus.RUNNING.value,)
            ).fetchall()
            dead = [(row["id"], _death(row, reading)) for row in rows]
            updates = [
                (RunStatus.INTERRUPTED.value, reading.now, why, run_id, RunStatus.RUNNING.value)
                for run_id, why in dead
                if why is not None
            ]
            conn.executemany(
                "UPDATE runs SET status = ?, finished_at = ?, message = ?, lease_expires_at = NULL "
                "WHERE id = ? AND status = ?",
                updates,
            )
            return len(updates)

        return self._transaction(recover, write=True)

    # --- plumbing ------------------------------------------------------------------------

    def _transaction(self, work: Callable[[sqlite3.Connection], _T], *, write: bool) -> _T:
        """Run `work` in one transaction (writes lock up front); sqlite errors become StoreError."""
        if write and self.read_only:
            raise StoreError(f"results store {self.path}: opened for reading only")
        begin = "BEGIN IMMEDIATE" if write else "BEGIN"

        def attempt() -> _T:
            with self._lock:
                self._conn.execute(begin)
                with self._conn:
                    return work(self._conn)

        try:
            return _retry_busy(attempt)
        except sqlite3.Error as exc:
            raise StoreError(f"results store {self.path}: {exc}") from None

    def _check_schema(self) -> None:
        """Refuse a file that is not ours, or is newer than this version, before changing anything."""
        # Version and tables in one read: another process may be creating the schema meanwhile.
        version, tables = self._transaction(lambda conn: (_schema_version(conn), _table_count(conn)), write=False)
        if version > len(MIGRATIONS):
            raise StoreError(
                f"results store {self.path}: schema version {version} is newer than this "
                f"tuner-tui understands ({len(MIGRATIONS)}); upgrade tuner-tui"
            )
        if version == 0 and tables:
            raise StoreError(f"results store {self.path}: not a tuner-tui results store")
        if self.read_only and version < len(MIGRATIONS):
            raise StoreError(
                f"results store {self.path}: written by an older tuner-tui (schema {version}); "
                "open it once for writing (run anything) to upgrade it"
            )

    def _migrate(self) -> None:
        """Switch to WAL, then bring the schema to `len(MIGRATIONS)`, one transaction per version."""
        try:
            _retry_busy(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
        except sqlite3.Error as exc:
            raise StoreError(f"results store {self.path}: {exc}") from None
        version = self._transaction(_schema_version, write=False)
        for target in range(version + 1, len(MIGRATIONS) + 1):
            self._transaction(partial(self._migrate_to, target), write=True)

    def _migrate_to(self, target: int, conn: sqlite3.Connection) -> None:
        """Apply migration `target` unless another process got there first."""
        version = _schema_version(conn)
        if version == 0 and _table_count(conn):
            raise StoreError(f"results store {self.path}: not a tuner-tui results store")
        if version == target - 1:
            MIGRATIONS[target - 1](conn)
            conn.execute(f"PRAGMA user_version = {target}")


def import_pending_journals(path: str | Path | None) -> int:
    """Before a read: import what cluster workers journaled (skipped when the store is absent or
    cannot be written: the read then shows what was imported before). Returns the lines applied."""
    checked = _checked_path(path)
    if not checked.is_file() or not os.access(checked, os.W_OK):
        return 0
    with ResultsStore.open_existing(checked) as reader:
        if reader.pending_journal_bytes() == 0:
            return 0
    with ResultsStore(checked) as writer:
        return writer.import_journals()


def new_run_uid() -> str:
    """A run id unique across hosts and stores (it survives import from a cluster worker)."""
    return uuid.uuid4().hex


def _checked_path(path: str | Path | None) -> Path:
    if path is None:
        return default_store_path()
    text = str(path)
    if text == ":memory:" or text.startswith("file:") or not text.strip():
        raise StoreError(f"results store {text!r}: must be a file path (an in-memory store keeps nothing)")
    checked = Path(text).expanduser()
    if checked.is_dir():
        raise StoreError(f"results store {checked}: is a directory")
    return checked


def _connect(path: Path) -> sqlite3.Connection:
    """Open `path` for writing with a busy timeout (creating its folder), or raise StoreError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"results store {path}: cannot create its folder ({exc.strerror})") from None
    try:
        conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"results store {path}: {exc}") from None
    return _configure(conn, path, "PRAGMA synchronous = NORMAL", "PRAGMA foreign_keys = ON")


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """Open `path` for reading only; a file we cannot write (or whose folder we cannot) is read as is."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    for suffix in ("", "&immutable=1"):
        try:
            conn = sqlite3.connect(
                uri + suffix, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
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


def _retry_busy(action: Callable[[], _T]) -> _T:
    """Run `action`, retrying with short backoff while SQLite reports the file locked or busy.

    The busy timeout already waits for other writers; this covers the cases SQLite does not wait in.
    """
    for attempt in range(_ATTEMPTS - 1):
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
        time.sleep(0.05 * 2**attempt * (1 + random.random()))
    return action()


def _schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _table_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _death(row: sqlite3.Row, reading: _Reading) -> str | None:
    """Why a running row's writer is known to be gone, or None while it may be alive."""
    return holder_gone(row["hostname"], row["pid"], row["lease_expires_at"], reading.now)


def _epoch_row(run_id: int, epoch: EpochEnd | EpochRecord) -> tuple[Any, ...]:
    return (run_id, *(getattr(epoch, name) for name in _EPOCH_COLUMNS))


def _load_runs(
    conn: sqlite3.Connection, sql: str, args: Sequence[Any], reading: _Reading
) -> tuple[list[RunRecord], list[UnreadableRun]]:
    records: list[RunRecord] = []
    unreadable: list[UnreadableRun] = []
    for row in conn.execute(sql, args).fetchall():
        try:
            records.append(_record(row, _load_epochs(conn, row["id"]), reading))
        except (ValueError, TypeError, KeyError, ConfigError) as error:
            reason = f"{type(error).__name__}: {error}".splitlines()[0]
            unreadable.append(UnreadableRun(row["id"], str(row["status"]), row["started_at"], reason))
    return records, unreadable


def _load_epochs(conn: sqlite3.Connection, run_id: int) -> tuple[EpochRecord, ...]:
    rows = conn.execute(
        f"SELECT {', '.join(_EPOCH_COLUMNS)} FROM run_epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
    ).fetchall()
    return tuple(EpochRecord(**dict(row)) for row in rows)


def _record(row: sqlite3.Row, epochs: tuple[EpochRecord, ...], reading: _Reading) -> RunRecord:
    values = dict(row)
    values["config"] = RunConfig.from_mapping(json.loads(values["config"]))
    values["loss_curve"] = tuple(float(x) for x in json.loads(values["loss_curve"]))
    values["tags"] = tuple(str(tag) for tag in json.loads(values["tags"]))
    if values["status"] == RunStatus.RUNNING.value:
        why = _death(row, reading)
        if why is not None:  # shown as interrupted; the next writer records it
            values.update(status=RunStatus.INTERRUPTED.value, message=why)
    return RunRecord(**values, epochs=epochs)


def _complete_lines(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The whole JSON lines of `path` after byte `offset`, and the offset after the last of them.

    A last line without its newline (a writer killed mid-line) is left for the next read; a line
    that is not JSON is skipped (the rest of the journal is still read).
    """
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("uid"), str):
            records.append(record)
    return records, offset + end


_FINISH_COLUMNS = (
    "status", "finished_at", "params", "train_loss", "train_accuracy", "test_accuracy", "peak_memory_bytes",
    "gpu_memory_bytes", "train_time_s", "total_time_s", "message", "diverged_step",
)


def _apply_journal_record(conn: sqlite3.Connection, record: dict[str, Any]) -> None:
    """Apply one journal line to the store, by the run's uid (a deleted run stays deleted)."""
    uid = record["uid"]
    if conn.execute("SELECT 1 FROM deleted_runs WHERE uid = ?", (uid,)).fetchone():
        return
    row = conn.execute("SELECT id FROM runs WHERE uid = ?", (uid,)).fetchone()
    kind = record.get("kind")
    if kind == "start":
        if row is None:
            labels = record.get("labels") or {}
            config = record["config"]
            values = {
                "uid": uid, "status": RunStatus.RUNNING.value, "config": json.dumps(config),
                "dataset": config.get("dataset", ""), "device_name": record.get("device_name", ""),
                "data_source": record.get("data_source"), "started_at": record.get("started_at", 0.0),
                "hostname": record.get("hostname", ""), "pid": record.get("pid", 0),
                "params": record.get("params", 0), "estimated_memory_bytes": record.get("estimated_memory_bytes"),
                "estimated_time_s": record.get("estimated_time_s"), "lease_expires_at": record.get("lease_expires_at"),
                **{key: labels.get(key) for key in ("preset", "sweep", "trial", "array_task")},
                "pack_size": labels.get("pack_size") or 1,
            }
            conn.execute(
                f"INSERT INTO runs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )
        return
    if row is None:
        return  # its start line was damaged or its run deleted: nothing to attach it to
    run_id = row["id"]
    running = RunStatus.RUNNING.value
    if kind == "epoch":
        epoch = record["epoch"]
        conn.execute(
            f"INSERT OR REPLACE INTO run_epochs (run_id, {', '.join(_EPOCH_COLUMNS)}) "
            f"VALUES ({', '.join('?' * (len(_EPOCH_COLUMNS) + 1))})",
            (run_id, *(epoch.get(name) for name in _EPOCH_COLUMNS)),
        )
        conn.execute("UPDATE runs SET lease_expires_at = ? WHERE id = ? AND status = ?",
                     (record.get("lease_expires_at"), run_id, running))
    elif kind == "lease":
        conn.execute("UPDATE runs SET lease_expires_at = ? WHERE id = ? AND status = ?",
                     (record.get("lease_expires_at"), run_id, running))
    elif kind == "finish":
        conn.execute(
            f"UPDATE runs SET {', '.join(f'{c} = ?' for c in _FINISH_COLUMNS)}, loss_curve = ?, "
            "lease_expires_at = NULL WHERE id = ?",
            (*(record.get(c) for c in _FINISH_COLUMNS), json.dumps(record.get("loss_curve", [])), run_id),
        )
        conn.execute("DELETE FROM run_epochs WHERE run_id = ?", (run_id,))
        conn.executemany(
            f"INSERT INTO run_epochs (run_id, {', '.join(_EPOCH_COLUMNS)}) "
            f"VALUES ({', '.join('?' * (len(_EPOCH_COLUMNS) + 1))})",
            ((run_id, *(e.get(name) for name in _EPOCH_COLUMNS)) for e in record.get("epochs", [])),
        )
