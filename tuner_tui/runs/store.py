"""The results store: every training run as a row in one SQLite file, safe for many writers on one host.

A run is inserted as `running` when it starts, each finished epoch is committed when it ends, and
the run is completed in one transaction when it finishes, so a reader never sees half an epoch
and a killed run loses at most the epoch it was in. A running row carries a lease that its writer
renews (`tuner_tui.runs.lease`): a reader shows a row whose lease expired, or whose process is
gone from this host, as `interrupted` without writing; the next writer records it.

Readers open with `open_existing`, which changes nothing on disk (a missing file is an error, a
read-only file is fine). Writers take the lock up front (`BEGIN IMMEDIATE`) and wait for it, so a
job array on one node can share one file. A file that is not a tuner-tui store is refused before
anything in it is written (`tuner_tui.runs.store_schema.identify`). SQLite's locks do not work
across a network filesystem: nodes never share one file; they journal their runs
(`tuner_tui.runs.journal`), and a writer here imports those journals.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import platformdirs

from tuner_tui.engine.config import ConfigError, RunConfig
from tuner_tui.engine.dataset_specs import DATASET_SPECS
from tuner_tui.engine.events import EpochEnd, Finished, RunStatus
from tuner_tui.runs import store_schema
from tuner_tui.runs.journal import (
    JOURNAL_SUFFIX,
    MAX_LOG_CHARS,
    EpochEntry,
    FinishEntry,
    JournalEntry,
    JournalProblem,
    LeaseEntry,
    StartEntry,
    read_entries,
)
from tuner_tui.runs.lease import LEASE_SECONDS, holder_gone
from tuner_tui.runs.records import (
    EPOCH_COLUMNS,
    FINISHED_COLUMNS,
    EpochRecord,
    FinishedColumns,
    ModelRef,
    RunLabels,
    RunRecord,
    StartColumns,
    UnreadableRun,
    model_ref,
    new_run_uid,
    user_finished_columns,
)
from tuner_tui.runs.sqlite_access import (
    LockPatience,
    StoreError,
    connect,
    connect_read_only,
    retry_busy,
)
from tuner_tui.usercode.config import UserRunConfig
from tuner_tui.usercode.events import MetricsReported, UserFinished, UserStarted

ENV_VAR = "TUNER_TUI_STORE"
_T = TypeVar("_T")
_RUN_COLUMNS = tuple(f for f in RunRecord.__dataclass_fields__ if f != "epochs")
_SELECT_RUNS = f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs"
_INSERT_EPOCH = (
    f"INSERT OR REPLACE INTO run_epochs (run_id, {', '.join(EPOCH_COLUMNS)}, metrics) "
    f"VALUES ({', '.join('?' * (len(EPOCH_COLUMNS) + 2))})"
)
_FINISH_RUN = (
    f"UPDATE runs SET {', '.join(f'{c} = ?' for c in FINISHED_COLUMNS)}, lease_expires_at = NULL WHERE id = ?"
)


def default_store_path() -> Path:
    """`$TUNER_TUI_STORE` if set, else `runs.sqlite3` in the per-user data folder."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("tuner-tui")) / "runs.sqlite3"


@dataclass(frozen=True)
class JournalImport:
    """What an import of the cluster journals did: lines applied, and lines skipped with why."""

    applied: int = 0
    problems: tuple[JournalProblem, ...] = ()


@dataclass
class _Reading:
    """What a read needs to tell a live run from a dead one."""

    now: float


class ResultsStore:
    """One SQLite results file; thread-safe, and safe to share between processes on one host.

    `ResultsStore(path)` opens for writing (creating the file and its folder); `open_existing(path)`
    opens for reading only. `clock` (seconds since the epoch) can be injected in tests; `patience`
    is how long to wait for another writer's lock (default: `$TUNER_TUI_LOCK_WAIT_S`, else 30 s).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
        patience: LockPatience | None = None,
        _read_only: bool = False,
    ) -> None:
        self.path = _checked_path(path)
        self.clock = clock
        self.patience = patience or LockPatience.from_environment()
        self.read_only = _read_only
        self._lock = threading.RLock()
        self._conn = (
            connect_read_only(self.path, self.patience) if _read_only else connect(self.path, self.patience)
        )
        try:
            version = self._identify()
            if not _read_only:
                self._migrate(version)
                self.recover_interrupted()
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def open_existing(
        cls, path: str | Path | None = None, *, clock: Callable[[], float] = time.time,
        patience: LockPatience | None = None,
    ) -> ResultsStore:
        """Open an existing store for reading: nothing is created or changed; StoreError if there is none."""
        checked = _checked_path(path)
        if not checked.is_file():
            raise StoreError(f"no store at {checked}")
        return cls(checked, clock=clock, patience=patience, _read_only=True)

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- writing a run -------------------------------------------------------------------

    def start_run(
        self, config: RunConfig, start: StartColumns, *, labels: RunLabels | None = None, uid: str | None = None,
        lease_s: float = LEASE_SECONDS,
    ) -> int:
        """Insert a `running` row for this process, with a lease of `lease_s`, and return its id."""
        labels = labels or RunLabels()
        now = self.clock()
        row = {
            "uid": uid or new_run_uid(), "status": RunStatus.RUNNING.value,
            "config": json.dumps(config.to_dict()), "dataset": config.dataset, **start.values(),
            "started_at": now, "hostname": socket.gethostname(), "pid": os.getpid(),
            "preset": labels.preset, "sweep": labels.sweep,
            "trial": labels.trial, "pack_size": labels.pack_size, "array_task": labels.array_task,
            "lease_expires_at": now + lease_s,
        }
        return self._transaction(lambda conn: _insert_run(conn, row), write=True)

    def record_epoch(self, run_id: int, epoch: EpochEnd, *, lease_s: float = LEASE_SECONDS) -> None:
        """Commit one finished epoch of a running run and renew its lease."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(_INSERT_EPOCH, _epoch_row(run_id, epoch))
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
        columns = FinishedColumns.of(finished, self.clock())
        epochs = [EpochRecord(**vars(e)) for e in finished.epochs]

        def update(conn: sqlite3.Connection) -> None:
            if not _finish(conn, run_id, columns, epochs):
                raise KeyError(run_id)

        self._transaction(update, write=True)

    # --- writing a run of user code ------------------------------------------------------

    def start_user_run(
        self, started: UserStarted, *, labels: RunLabels | None = None, uid: str | None = None,
        lease_s: float = LEASE_SECONDS,
    ) -> int:
        """Insert a `running` row for a run of user code (its model, fields and code's origin)."""
        labels = labels or RunLabels()
        now = self.clock()
        row = {
            "uid": uid or new_run_uid(), "status": RunStatus.RUNNING.value,
            "config": json.dumps(started.config.to_dict()), "dataset": "", "device_name": started.device_name,
            "data_source": None, "started_at": now, "hostname": socket.gethostname(), "pid": os.getpid(),
            "params": 0, "preset": labels.preset, "sweep": labels.sweep, "trial": labels.trial,
            "pack_size": 1, "array_task": labels.array_task, "lease_expires_at": now + lease_s,
            "model": json.dumps(model_ref(started).to_json()), "code": json.dumps(started.origin.to_dict()),
        }
        return self._transaction(lambda conn: _insert_run(conn, row), write=True)

    def record_report(self, run_id: int, report: MetricsReported, *, lease_s: float = LEASE_SECONDS) -> None:
        """Commit one report of a running user run (an epoch) and renew its lease."""
        epoch = EpochRecord.of_report(report)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(_INSERT_EPOCH, _epoch_row(run_id, epoch))
            conn.execute("UPDATE runs SET lease_expires_at = ? WHERE id = ? AND status = ?",
                         (self.clock() + lease_s, run_id, RunStatus.RUNNING.value))

        self._transaction(write, write=True)

    def finish_user_run(self, run_id: int, finished: UserFinished, *, config: UserRunConfig | None = None) -> None:
        """Record how a run of user code ended: its status, final metrics, every report and its log, all
        or nothing (`config`: its fields, when known only at the end, as for an Optuna objective's trial)."""
        columns = user_finished_columns(finished, self.clock())
        epochs = [EpochRecord.of_report(report) for report in finished.reports]
        log = finished.log[-MAX_LOG_CHARS:]
        metrics = json.dumps(dict(finished.metrics))

        def update(conn: sqlite3.Connection) -> None:
            if not _finish(conn, run_id, columns, epochs):
                raise KeyError(run_id)
            conn.execute("UPDATE runs SET metrics = ?, log = ? WHERE id = ?", (metrics, log, run_id))
            if config is not None:
                conn.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(config.to_dict()), run_id))

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
        imported = self._imported()
        pending = 0
        for path in self._journal_files():
            try:
                pending += max(0, path.stat().st_size - imported.get(str(path), (0, 0))[0])
            except OSError:
                continue
        return pending

    def import_journals(self) -> JournalImport:
        """Import the complete new lines of every registered run journal, each line checked.

        Idempotent: runs are matched by uid, a deleted run's uid is never imported again, and each
        file's offset advances only past whole lines. A journal creates only runs the store does not
        have, and advances only the runs it created that have not ended: a line naming any other run
        is skipped, as is a line that is not a valid journal line; each skip is a `JournalProblem`.
        """
        applied = 0
        problems: list[JournalProblem] = []
        imported = self._imported()
        for path in self._journal_files():
            offset, lines = imported.get(str(path), (0, 0))
            try:
                read = read_entries(path, offset, lines)
            except OSError as error:
                problems.append(JournalProblem(path, lines + 1, f"cannot read: {error.strerror or error}"))
                continue
            if read.offset == offset:
                continue

            def apply(conn: sqlite3.Connection, path: Path = path, read: Any = read) -> list[JournalProblem]:
                skipped = []
                for line, entry in read.entries:
                    why = _apply_journal_entry(conn, entry, str(path))
                    if why is not None:
                        skipped.append(JournalProblem(path, line, why))
                conn.execute(
                    "INSERT INTO imported_files (path, offset, lines) VALUES (?, ?, ?) "
                    "ON CONFLICT(path) DO UPDATE SET offset = excluded.offset, lines = excluded.lines",
                    (str(path), read.offset, read.lines),
                )
                return skipped

            skipped = self._transaction(apply, write=True)
            applied += len(read.entries) - len(skipped)
            problems += [*read.problems, *skipped]
        return JournalImport(applied, tuple(sorted(problems, key=lambda p: (str(p.path), p.line))))

    def _imported(self) -> dict[str, tuple[int, int]]:
        """Journal path → (bytes imported, lines imported)."""
        rows = self._transaction(
            lambda conn: conn.execute("SELECT path, offset, lines FROM imported_files").fetchall(), write=False
        )
        return {row["path"]: (int(row["offset"]), int(row["lines"])) for row in rows}

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
            return retry_busy(attempt, self.patience)
        except sqlite3.Error as exc:
            raise StoreError(f"results store {self.path}: {exc}") from None

    def _identify(self) -> int:
        """The file's schema version, once it is known to be a tuner-tui store; StoreError for any
        other file (nothing in it has been written). An older store opened for reading is refused
        with the way to upgrade it."""
        try:
            version = self._transaction(store_schema.identify, write=False)
        except store_schema.ForeignFile as error:
            raise StoreError(f"results store {self.path}: {error}") from None
        if self.read_only and version < len(store_schema.MIGRATIONS):
            raise StoreError(
                f"results store {self.path}: written by an older tuner-tui (schema {version}); "
                "open it once for writing (run anything) to upgrade it"
            )
        return version

    def _migrate(self, version: int) -> None:
        """Switch to WAL, then bring the schema to the latest, one transaction per version."""
        try:
            retry_busy(lambda: self._conn.execute("PRAGMA journal_mode = WAL"), self.patience)
        except sqlite3.Error as exc:
            raise StoreError(f"results store {self.path}: {exc}") from None
        for target in range(version + 1, len(store_schema.MIGRATIONS) + 1):
            self._transaction(partial(self._migrate_to, target), write=True)

    def _migrate_to(self, target: int, conn: sqlite3.Connection) -> None:
        """Apply migration `target` unless another process got there first (identified again under
        the write lock: another process may have changed the file since)."""
        try:
            version = store_schema.identify(conn)
        except store_schema.ForeignFile as error:
            raise StoreError(f"results store {self.path}: {error}") from None
        if version == target - 1:
            store_schema.MIGRATIONS[target - 1](conn)
            conn.execute(f"PRAGMA user_version = {target}")


def import_pending_journals(path: str | Path | None) -> JournalImport:
    """Before a read: import what cluster workers journaled (skipped when the store is absent or
    cannot be written: the read then shows what was imported before)."""
    checked = _checked_path(path)
    if not checked.is_file() or not os.access(checked, os.W_OK):
        return JournalImport()
    with ResultsStore.open_existing(checked) as reader:
        if reader.pending_journal_bytes() == 0:
            return JournalImport()
    with ResultsStore(checked) as writer:
        return writer.import_journals()


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


def _insert_run(conn: sqlite3.Connection, row: dict[str, Any]) -> int:
    sql = f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"
    return int(conn.execute(sql, tuple(row.values())).lastrowid or 0)


def _finish(conn: sqlite3.Connection, run_id: int, columns: FinishedColumns, epochs: Sequence[EpochRecord]) -> bool:
    """Write a run's end and replace its epochs; False when there is no such run."""
    values = columns.values()
    values["loss_curve"] = json.dumps(values["loss_curve"])
    if conn.execute(_FINISH_RUN, (*values.values(), run_id)).rowcount == 0:
        return False
    conn.execute("DELETE FROM run_epochs WHERE run_id = ?", (run_id,))
    conn.executemany(_INSERT_EPOCH, (_epoch_row(run_id, e) for e in epochs))
    return True


def _death(row: sqlite3.Row, reading: _Reading) -> str | None:
    """Why a running row's writer is known to be gone, or None while it may be alive."""
    return holder_gone(row["hostname"], row["pid"], row["lease_expires_at"], reading.now)


def _epoch_row(run_id: int, epoch: EpochEnd | EpochRecord) -> tuple[Any, ...]:
    metrics = getattr(epoch, "metrics", None) or {}
    return (run_id, *(getattr(epoch, name) for name in EPOCH_COLUMNS), json.dumps(dict(metrics)))


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
        f"SELECT {', '.join(EPOCH_COLUMNS)}, metrics FROM run_epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
    ).fetchall()
    return tuple(EpochRecord(**{**dict(row), "metrics": _metrics(row["metrics"])}) for row in rows)


def _metrics(text: str) -> dict[str, float]:
    """Stored metrics as numbers (ValueError or TypeError for a damaged value)."""
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise TypeError("metrics: not an object")
    return {str(name): float(value) for name, value in raw.items()}


def _record(row: sqlite3.Row, epochs: tuple[EpochRecord, ...], reading: _Reading) -> RunRecord:
    values = dict(row)
    values["status"] = RunStatus(values["status"])
    if values["model"] is not None:  # a run of user code
        values["model"] = ModelRef(**json.loads(values["model"]))
        values["config"] = UserRunConfig.from_dict(json.loads(values["config"]))
        values["code"] = json.loads(values["code"]) if values["code"] else None
    else:
        values["config"] = RunConfig.from_mapping(json.loads(values["config"]))
    values["metrics"] = _metrics(values["metrics"])
    values["loss_curve"] = tuple(float(x) for x in json.loads(values["loss_curve"]))
    values["tags"] = tuple(str(tag) for tag in json.loads(values["tags"]))
    if values["status"] is RunStatus.RUNNING:
        why = _death(row, reading)
        if why is not None:  # shown as interrupted; the next writer records it
            values.update(status=RunStatus.INTERRUPTED, message=why)
    return RunRecord(**values, epochs=epochs)


_ADVANCING = (RunStatus.RUNNING.value, RunStatus.INTERRUPTED.value)


def _apply_journal_entry(conn: sqlite3.Connection, entry: JournalEntry, journal: str) -> str | None:
    """Apply one checked journal line to the store, by the run's uid; why it was skipped, or None.

    A start creates its run unless the store has that uid (or deleted it); the other lines advance
    only a run that this journal created and that has not ended (an interrupted run may still end:
    interrupted is a reader's guess from an expired lease).
    """
    uid = entry.uid
    if conn.execute("SELECT 1 FROM deleted_runs WHERE uid = ?", (uid,)).fetchone():
        return None  # deleted in the browser: stays deleted
    row = conn.execute("SELECT id, status, journal FROM runs WHERE uid = ?", (uid,)).fetchone()
    if isinstance(entry, StartEntry):
        if row is None:
            _insert_run(conn, {**entry.row, "journal": journal})
            return None
        return None if row["journal"] == journal else f"run {uid} is already in the store; not this journal's"
    if row is None:
        return f"run {uid} has no start line before it"
    if row["journal"] != journal:
        return f"run {uid} was not started by this journal"
    if row["status"] not in _ADVANCING:
        return f"run {uid} has ended ({row['status']}); an import never changes an ended run"
    run_id = row["id"]
    if isinstance(entry, EpochEntry):
        conn.execute(_INSERT_EPOCH, _epoch_row(run_id, entry.epoch))
        conn.execute("UPDATE runs SET lease_expires_at = ? WHERE id = ?", (entry.lease_expires_at, run_id))
    elif isinstance(entry, LeaseEntry):
        conn.execute("UPDATE runs SET lease_expires_at = ? WHERE id = ?", (entry.lease_expires_at, run_id))
    elif isinstance(entry, FinishEntry):
        _finish(conn, run_id, entry.columns, entry.epochs)
        if entry.user is not None:
            assignments = ", ".join(f"{column} = ?" for column in entry.user)
            conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*entry.user.values(), run_id))
    return None
