"""The results store: every training run as a row in one SQLite file, safe for many writers.

A run is inserted as 'running' when it starts and completed in one transaction when it
finishes, so a reader never sees half a run. Runs whose process died are marked 'interrupted'
the next time the store is opened on the same host. Writes take the lock up front
(`BEGIN IMMEDIATE`) and wait for it, so a job array can share one file.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import platformdirs

from engine.config import RunConfig
from engine.dataset_specs import DATASET_SPECS
from engine.events import EpochEnd, Finished, RunStatus

ENV_VAR = "TUNER_TUI_STORE"
RUNNING = "running"
INTERRUPTED = "interrupted"
MAX_CURVE_POINTS = 512

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
class EpochRecord:
    """One finished epoch of a stored run; accuracies in percent."""

    epoch: int
    train_loss: float | None
    train_accuracy: float | None
    test_accuracy: float | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
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

    @property
    def label(self) -> str:
        """The run's name in the lab's tables: its preset, else `run N`."""
        return self.preset or f"run {self.id}"

    def to_json(self) -> dict[str, Any]:
        """The run as the CLI's `--json` output writes it."""
        return {
            "run_id": self.id,
            "preset": self.preset,
            "status": self.status,
            "config": self.config.to_dict(),
            "device": self.device_name,
            "data_source": self.data_source,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "message": self.message,
            "diverged_step": self.diverged_step,
            "metrics": {
                "train_accuracy": self.train_accuracy,
                "train_loss": self.train_loss,
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


_RUN_COLUMNS = tuple(f.name for f in fields(RunRecord) if f.name != "epochs")
_SELECT_RUNS = f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs"

def _migrate_to_v2(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE runs ADD COLUMN preset TEXT")


# Schema version N means MIGRATIONS[:N] have run; add a version by appending one function.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_v1, _migrate_to_v2]


def downsample(values: Sequence[float], max_points: int = MAX_CURVE_POINTS) -> tuple[float, ...]:
    """At most `max_points` values: the means of consecutive, near-equal buckets."""
    n = len(values)
    if n <= max_points:
        return tuple(float(v) for v in values)
    bounds = [i * n // max_points for i in range(max_points + 1)]
    return tuple(
        math.fsum(values[lo:hi]) / (hi - lo) for lo, hi in zip(bounds, bounds[1:])
    )


class ResultsStore:
    """One SQLite results file; thread-safe, and safe to share between processes."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self._lock = threading.RLock()
        self._conn = _connect(self.path)
        try:
            self._migrate()
            self._recover_interrupted()
        except BaseException:
            self._conn.close()
            raise

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def start_run(
        self,
        config: RunConfig,
        *,
        device_name: str,
        params: int,
        estimated_memory_bytes: int | None,
        estimated_time_s: float | None,
        data_source: str | None,
        preset: str | None = None,
    ) -> int:
        """Insert a 'running' row for this process and return its id."""
        row = (
            RUNNING,
            json.dumps(config.to_dict()),
            config.dataset,
            device_name,
            data_source,
            time.time(),
            socket.gethostname(),
            os.getpid(),
            params,
            estimated_memory_bytes,
            estimated_time_s,
            preset,
        )

        def insert(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                """INSERT INTO runs (status, config, dataset, device_name, data_source,
                    started_at, hostname, pid, params, estimated_memory_bytes, estimated_time_s,
                    preset)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                row,
            )
            return int(cursor.lastrowid)

        return self._transaction(insert, write=True)

    def finish_run(self, run_id: int, finished: Finished) -> None:
        """Record how a run ended, its metrics, epochs and loss curve, all or nothing.

        KeyError if there is no run with this id.
        """
        resources = finished.resources
        values = (
            RunStatus(finished.status).value,
            time.time(),
            finished.params,
            finished.train_loss,
            finished.train_accuracy,
            finished.test_accuracy,
            resources.peak_memory_bytes,
            resources.gpu_process_memory_bytes,
            resources.train_time_s,
            resources.total_time_s,
            finished.message,
            finished.diverged_step,
            json.dumps(downsample(finished.loss_curve)),
            run_id,
        )

        def update(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                """UPDATE runs SET status = ?, finished_at = ?, params = ?, train_loss = ?,
                    train_accuracy = ?, test_accuracy = ?, peak_memory_bytes = ?,
                    gpu_memory_bytes = ?, train_time_s = ?, total_time_s = ?, message = ?,
                    diverged_step = ?, loss_curve = ?
                WHERE id = ?""",
                values,
            )
            if cursor.rowcount == 0:
                raise KeyError(run_id)
            conn.execute("DELETE FROM run_epochs WHERE run_id = ?", (run_id,))
            conn.executemany(
                """INSERT INTO run_epochs (run_id, epoch, train_loss, train_accuracy,
                    test_accuracy, seconds) VALUES (?, ?, ?, ?, ?, ?)""",
                _epoch_rows(run_id, finished.epochs),
            )

        self._transaction(update, write=True)

    def get_run(self, run_id: int) -> RunRecord:
        """The run with this id; KeyError if there is none."""
        runs = self._transaction(
            lambda conn: _load_runs(conn, f"{_SELECT_RUNS} WHERE id = ?", (run_id,)),
            write=False,
        )
        if not runs:
            raise KeyError(run_id)
        return runs[0]

    def list_runs(self, *, limit: int | None = None, dataset: str | None = None) -> list[RunRecord]:
        """Runs newest first, optionally only one dataset's and at most `limit` of them."""
        sql = _SELECT_RUNS
        args: list[Any] = []
        if dataset is not None:
            sql += " WHERE dataset = ?"
            args.append(dataset)
        sql += " ORDER BY started_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return self._transaction(lambda conn: _load_runs(conn, sql, args), write=False)

    def history_seconds_per_step(self, config: RunConfig, device_name: str) -> float | None:
        """Median training seconds per step of completed runs like `config` on this device."""
        rows = self._transaction(
            lambda conn: conn.execute(
                """SELECT config, train_time_s FROM runs
                WHERE status = ? AND dataset = ? AND device_name = ? AND train_time_s > 0""",
                (RunStatus.COMPLETED.value, config.dataset, device_name),
            ).fetchall(),
            write=False,
        )
        train_size = DATASET_SPECS[config.dataset].train_size
        rates = []
        for row in rows:
            past = RunConfig.from_mapping(json.loads(row["config"]))
            if (past.hidden, past.batch_size, past.engine) == (
                config.hidden,
                config.batch_size,
                config.engine,
            ):
                steps = past.epochs * math.ceil(train_size / past.batch_size)
                rates.append(row["train_time_s"] / steps)
        return statistics.median(rates) if rates else None

    def _transaction(self, work: Callable[[sqlite3.Connection], _T], *, write: bool) -> _T:
        """Run `work` in one transaction (writes lock up front); sqlite errors become StoreError."""
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

    def _migrate(self) -> None:
        """Bring the schema to `len(MIGRATIONS)`, one transaction per version."""
        version = self._transaction(_schema_version, write=False)
        if version > len(MIGRATIONS):
            raise StoreError(
                f"results store {self.path}: schema version {version} is newer than this "
                f"tuner-tui understands ({len(MIGRATIONS)}); upgrade tuner-tui"
            )
        for target in range(version + 1, len(MIGRATIONS) + 1):
            self._transaction(partial(self._migrate_to, target), write=True)

    def _migrate_to(self, target: int, conn: sqlite3.Connection) -> None:
        """Apply migration `target` unless another process got there first."""
        version = _schema_version(conn)
        if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StoreError(f"results store {self.path}: not a tuner-tui results store")
        if version == target - 1:
            MIGRATIONS[target - 1](conn)
            conn.execute(f"PRAGMA user_version = {target}")

    def _recover_interrupted(self) -> None:
        """Mark 'interrupted' the running rows of this host whose process no longer exists."""
        rows = self._transaction(
            lambda conn: conn.execute(
                "SELECT id, pid FROM runs WHERE status = ? AND hostname = ?",
                (RUNNING, socket.gethostname()),
            ).fetchall(),
            write=False,
        )
        dead = [(row["id"], row["pid"]) for row in rows if not _pid_alive(row["pid"])]
        if not dead:
            return
        now = time.time()
        updates = [
            (INTERRUPTED, now, f"process {pid} ended before the run finished", run_id, RUNNING)
            for run_id, pid in dead
        ]
        self._transaction(
            lambda conn: conn.executemany(
                "UPDATE runs SET status = ?, finished_at = ?, message = ? "
                "WHERE id = ? AND status = ?",
                updates,
            ),
            write=True,
        )


def _connect(path: Path) -> sqlite3.Connection:
    """Open `path` in WAL mode with a busy timeout, or raise StoreError saying why not."""
    if path.is_dir():
        raise StoreError(f"results store {path}: is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = f"cannot create its folder ({exc.strerror})"
        raise StoreError(f"results store {path}: {reason}") from None
    try:
        conn = sqlite3.connect(
            path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StoreError(f"results store {path}: {exc}") from None
    try:
        conn.row_factory = sqlite3.Row
        _retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
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


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _epoch_rows(run_id: int, epochs: Iterable[EpochEnd]) -> Iterator[tuple[Any, ...]]:
    for e in epochs:
        yield (run_id, e.epoch, e.train_loss, e.train_accuracy, e.test_accuracy, e.seconds)


def _load_runs(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[RunRecord]:
    rows = conn.execute(sql, args).fetchall()
    return [_record(row, _load_epochs(conn, row["id"])) for row in rows]


def _load_epochs(conn: sqlite3.Connection, run_id: int) -> tuple[EpochRecord, ...]:
    rows = conn.execute(
        """SELECT epoch, train_loss, train_accuracy, test_accuracy, seconds
        FROM run_epochs WHERE run_id = ? ORDER BY epoch""",
        (run_id,),
    ).fetchall()
    return tuple(EpochRecord(**dict(row)) for row in rows)


def _record(row: sqlite3.Row, epochs: tuple[EpochRecord, ...]) -> RunRecord:
    values = dict(row)
    values["config"] = RunConfig.from_mapping(json.loads(values["config"]))
    values["loss_curve"] = tuple(json.loads(values["loss_curve"]))
    return RunRecord(**values, epochs=epochs)
