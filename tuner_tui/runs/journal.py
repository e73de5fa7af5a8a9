"""Run journals: how a cluster worker records its runs without sharing an SQLite file. This module
owns the format: it writes the lines and reads them back, checked.

SQLite's locks do not hold on a network filesystem, so workers on several nodes never write the
results store. Each worker process appends its runs' events to a file of its own in the sweep's
shared folder, one JSON object per line, flushed and fsynced per line:

    {"kind": "start", "uid": ..., "config": {...}, ...}      a run began (a `running` row)
    {"kind": "epoch", "uid": ..., "epoch": {...}}             an epoch ended (committed)
    {"kind": "lease", "uid": ..., "lease_expires_at": ...}    the worker is alive
    {"kind": "finish", "uid": ..., "status": ..., ...}        the run ended

Readers on the login node import new complete lines into their results store
(`ResultsStore.import_journals`), by the run's uid. `read_entries` checks every line on its own: a
line that is not JSON, or lacks a field, or holds one of the wrong type or out of range, becomes a
`JournalProblem` (file and line number) and the other lines are still read.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner_tui.engine.config import MAX_EPOCHS, ConfigError, RunConfig
from tuner_tui.engine.events import EpochEnd, Finished, RunStatus
from tuner_tui.regular_files import read_regular
from tuner_tui.runs.lease import LEASE_SECONDS
from tuner_tui.runs.records import (
    EPOCH_COLUMNS,
    MAX_CURVE_POINTS,
    EpochRecord,
    FinishedColumns,
    ModelRef,
    RunLabels,
    StartColumns,
    model_ref,
    new_run_uid,
    user_finished_columns,
)
from tuner_tui.runs.sqlite_access import StoreError
from tuner_tui.usercode.config import UserRunConfig
from tuner_tui.usercode.events import MetricsReported, UserFinished, UserStarted

JOURNAL_SUFFIX = ".jsonl"
MAX_LINE_BYTES = 1024 * 1024  # a finish line with every epoch is a few kB; a longer one is damage
MAX_READ_BYTES = 64 * 1024 * 1024  # read per file and import; the rest waits for the next read
MAX_LOG_CHARS = 64 * 1024  # a run's log kept with it: its last lines
_UID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_INT = 2**62  # within SQLite's 64-bit integers, with room
_MAX_PID = 2**31 - 1


class JournalError(Exception):
    """A journal that cannot be written; `str()` is one line."""


class JournalWriter:
    """A `RunWriter` that appends to one journal file (this process is its only writer)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._uids: dict[int, str] = {}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise JournalError(f"run journal {path}: {error.strerror or error}") from None

    def close(self) -> None:
        os.close(self._fd)

    def start_run(
        self, config: RunConfig, start: StartColumns, *, labels: RunLabels | None = None, uid: str | None = None,
        lease_s: float = LEASE_SECONDS,
    ) -> int:
        run_id = next(self._ids)
        self._uids[run_id] = uid or new_run_uid()
        now = self.clock()
        self._append({
            "kind": "start", "uid": self._uids[run_id], "config": config.to_dict(), **start.values(),
            "labels": dataclasses.asdict(labels or RunLabels()), "hostname": socket.gethostname(),
            "pid": os.getpid(), "started_at": now, "lease_expires_at": now + lease_s,
        })
        return run_id

    def record_epoch(self, run_id: int, epoch: EpochEnd, *, lease_s: float = LEASE_SECONDS) -> None:
        self._append({
            "kind": "epoch", "uid": self._uids[run_id], "epoch": dataclasses.asdict(epoch),
            "lease_expires_at": self.clock() + lease_s,
        })

    def renew_lease(self, run_id: int, expires_at: float) -> None:
        self._append({"kind": "lease", "uid": self._uids[run_id], "lease_expires_at": expires_at})

    def finish_run(self, run_id: int, finished: Finished) -> None:
        columns = FinishedColumns.of(finished, self.clock())
        self._append({
            "kind": "finish", "uid": self._uids[run_id], **columns.values(),
            "epochs": [dataclasses.asdict(e) for e in finished.epochs],
        })

    def start_user_run(
        self, started: UserStarted, *, labels: RunLabels | None = None, uid: str | None = None,
        lease_s: float = LEASE_SECONDS,
    ) -> int:
        run_id = next(self._ids)
        self._uids[run_id] = uid or new_run_uid()
        now = self.clock()
        self._append({
            "kind": "user-start", "uid": self._uids[run_id], "config": started.config.to_dict(),
            "model": model_ref(started).to_json(), "code": started.origin.to_dict(),
            "device_name": started.device_name, "labels": dataclasses.asdict(labels or RunLabels()),
            "hostname": socket.gethostname(), "pid": os.getpid(), "started_at": now, "lease_expires_at": now + lease_s,
        })
        return run_id

    def record_report(self, run_id: int, report: MetricsReported, *, lease_s: float = LEASE_SECONDS) -> None:
        self._append({
            "kind": "report", "uid": self._uids[run_id], "epoch": _report_json(report),
            "lease_expires_at": self.clock() + lease_s,
        })

    def finish_user_run(self, run_id: int, finished: UserFinished, *, config: UserRunConfig | None = None) -> None:
        columns = user_finished_columns(finished, self.clock())
        self._append({
            "kind": "user-finish", "uid": self._uids[run_id], **columns.values(),
            "metrics": dict(finished.metrics), "log": finished.log[-MAX_LOG_CHARS:],
            "epochs": [_report_json(report) for report in finished.reports],
            "config": config.to_dict() if config is not None else None,
        })

    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, allow_nan=True) + "\n").encode()
        with self._lock:
            try:
                os.write(self._fd, line)
                os.fsync(self._fd)
            except OSError as error:
                raise StoreError(f"run journal {self.path}: {error.strerror or error}") from None


def _report_json(report: MetricsReported) -> dict[str, Any]:
    return {"epoch": report.epoch, "seconds": report.seconds, "metrics": dict(report.metrics)}


def journal_path(folder: Path, worker: str) -> Path:
    """This worker's journal in `folder`: one file per worker process, named for where it runs."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in worker)
    return folder / f"{safe}-{os.getpid()}{JOURNAL_SUFFIX}"


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartEntry:
    """A run began: the row to insert (config as JSON text)."""

    uid: str
    row: Mapping[str, Any]


@dataclass(frozen=True)
class EpochEntry:
    uid: str
    epoch: EpochRecord
    lease_expires_at: float | None


@dataclass(frozen=True)
class LeaseEntry:
    uid: str
    lease_expires_at: float | None


@dataclass(frozen=True)
class FinishEntry:
    uid: str
    columns: FinishedColumns
    epochs: tuple[EpochRecord, ...]
    user: Mapping[str, str] | None = None  # a run of user code: its metrics, log (and config) as stored


JournalEntry = StartEntry | EpochEntry | LeaseEntry | FinishEntry


@dataclass(frozen=True)
class JournalProblem:
    """A line that was skipped, and why."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"run journal {self.path} line {self.line}: {self.reason}; skipped"


@dataclass(frozen=True)
class JournalRead:
    """What one read of a journal found after its last offset."""

    entries: tuple[tuple[int, JournalEntry], ...]  # (line number, entry)
    problems: tuple[JournalProblem, ...]
    offset: int  # past the last whole line read
    lines: int  # lines read so far in the whole file


class _BadLine(Exception):
    pass


def read_entries(path: Path, offset: int = 0, lines: int = 0, *, max_bytes: int = MAX_READ_BYTES) -> JournalRead:
    """The complete lines of journal `path` after byte `offset` (line `lines`), each checked.

    A last line without its newline (a writer killed mid-line, or still writing) is left for the
    next read, unless it is already longer than a line can be: then it is a problem, and skipped.
    Only a regular file is read (UnsafeFile otherwise), at most `max_bytes` at a time.
    """
    data = read_regular(path, limit=max_bytes, offset=offset)
    end = data.rfind(b"\n") + 1
    entries: list[tuple[int, JournalEntry]] = []
    problems: list[JournalProblem] = []
    for raw in data[:end].splitlines():
        lines += 1
        try:
            entries.append((lines, parse_line(raw)))
        except _BadLine as error:
            problems.append(JournalProblem(path, lines, str(error)))
    if len(data) - end > MAX_LINE_BYTES:  # an unended line already too long: skipped, not kept in memory
        lines += 1
        problems.append(JournalProblem(path, lines, f"a line longer than {MAX_LINE_BYTES // 1024} KiB"))
        end = len(data)
    return JournalRead(tuple(entries), tuple(problems), offset + end, lines)


def parse_line(raw: bytes) -> JournalEntry:
    """One journal line as an entry; _BadLine (its reason) when it is not one."""
    if len(raw) > MAX_LINE_BYTES:
        raise _BadLine(f"a line longer than {MAX_LINE_BYTES // 1024} KiB")
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        raise _BadLine("not JSON") from None
    if not isinstance(record, dict):
        raise _BadLine("not a JSON object")
    uid = record.get("uid")
    if not isinstance(uid, str) or not _UID.fullmatch(uid):
        raise _BadLine("uid: missing or not a run id")
    kind = record.get("kind")
    if kind == "start":
        return StartEntry(uid, _start_row(uid, record))
    if kind == "epoch":
        return EpochEntry(uid, _epoch(record.get("epoch"), "epoch"), _number(record, "lease_expires_at", True))
    if kind == "lease":
        return LeaseEntry(uid, _number(record, "lease_expires_at", True))
    if kind == "finish":
        return FinishEntry(uid, _finished(record), _epochs(record.get("epochs", [])))
    if kind == "user-start":
        return StartEntry(uid, _user_start_row(uid, record))
    if kind == "report":
        return EpochEntry(uid, _report(record.get("epoch"), "epoch"), _number(record, "lease_expires_at", True))
    if kind == "user-finish":
        return _user_finish(uid, record)
    raise _BadLine(f"kind: must be start, epoch, lease, finish, user-start, report or user-finish, got {_shown(kind)}")


def _user_start_row(uid: str, record: Mapping[str, Any]) -> dict[str, Any]:
    config = _user_config(record.get("config"))
    model = record.get("model")
    if not isinstance(model, dict) or set(model) != set(ModelRef.__dataclass_fields__) or not all(
        isinstance(value, str) and len(value) <= 4096 for value in model.values()
    ):
        raise _BadLine("model: missing or not a model reference")
    code = record.get("code")
    if not isinstance(code, dict) or len(json.dumps(code)) > 16384:
        raise _BadLine("code: missing or not an object")
    labels = record.get("labels", {})
    if not isinstance(labels, dict):
        raise _BadLine("labels: not an object")
    return {
        "uid": uid, "status": RunStatus.RUNNING.value, "config": json.dumps(config.to_dict()), "dataset": "",
        "device_name": _text(record, "device_name", default=""), "data_source": None,
        "started_at": _number(record, "started_at", False, default=0.0),
        "hostname": _text(record, "hostname", default=""),
        "pid": _int(record, "pid", False, low=0, high=_MAX_PID, default=0), "params": 0,
        "lease_expires_at": _number(record, "lease_expires_at", True),
        "preset": _text(labels, "preset", optional=True, where="labels."),
        "sweep": _text(labels, "sweep", optional=True, where="labels."),
        "trial": _int(labels, "trial", True, low=0, where="labels."),
        "array_task": _text(labels, "array_task", optional=True, where="labels."), "pack_size": 1,
        "model": json.dumps(model), "code": json.dumps(code),
    }


def _user_config(raw: Any) -> UserRunConfig:
    if not isinstance(raw, dict):
        raise _BadLine("config: missing or not an object")
    try:
        config = UserRunConfig.from_dict(raw)
        json.dumps(config.to_dict(), allow_nan=False)
    except (KeyError, TypeError, ValueError, ConfigError) as error:
        raise _BadLine(f"config: not a user run's config ({error})") from None
    return config


def _metric_map(raw: Any, where: str) -> dict[str, float]:
    if not isinstance(raw, dict) or len(raw) > 1000:
        raise _BadLine(f"{where}: must be an object of numbers")
    out: dict[str, float] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or len(name) > 64 or not _is_number(value) or (isinstance(value, int) and abs(
            value
        ) > _MAX_INT):
            raise _BadLine(f"{where}.{name}: must be a number")
        out[name] = float(value)
    return out


def _report(raw: Any, where: str) -> EpochRecord:
    if not isinstance(raw, dict):
        raise _BadLine(f"{where}: missing or not an object")
    epoch = _int(raw, "epoch", False, low=0, high=_MAX_INT, where=f"{where}.")
    seconds = _number(raw, "seconds", False, where=f"{where}.")
    metrics = _metric_map(raw.get("metrics"), f"{where}.metrics")
    return EpochRecord.of_report(MetricsReported(epoch, metrics, seconds))


def _user_finish(uid: str, record: Mapping[str, Any]) -> FinishEntry:
    columns = _finished({**record, "params": 0})
    raw_epochs = record.get("epochs", [])
    if not isinstance(raw_epochs, list) or len(raw_epochs) > 100_000:
        raise _BadLine("epochs: must be a list of reports")
    epochs = tuple(_report(item, f"epochs[{index}]") for index, item in enumerate(raw_epochs))
    log = record.get("log", "")
    if not isinstance(log, str):
        raise _BadLine("log: must be text")
    user = {"metrics": json.dumps(_metric_map(record.get("metrics", {}), "metrics")), "log": log[-MAX_LOG_CHARS:]}
    if record.get("config") is not None:
        user["config"] = json.dumps(_user_config(record["config"]).to_dict())
    return FinishEntry(uid, columns, epochs, user)


def _start_row(uid: str, record: Mapping[str, Any]) -> dict[str, Any]:
    raw_config = record.get("config")
    if not isinstance(raw_config, dict):
        raise _BadLine("config: missing or not an object")
    try:
        config = RunConfig.from_mapping(raw_config)
    except ConfigError as error:
        raise _BadLine(f"config.{error}") from None
    labels = record.get("labels", {})
    if not isinstance(labels, dict):
        raise _BadLine("labels: not an object")
    pack_size = _int(labels, "pack_size", True, low=1, where="labels.") or 1
    return {
        "uid": uid, "status": RunStatus.RUNNING.value, "config": json.dumps(config.to_dict()),
        "dataset": config.dataset, "device_name": _text(record, "device_name", default=""),
        "data_source": _text(record, "data_source", optional=True),
        "started_at": _number(record, "started_at", False, default=0.0),
        "hostname": _text(record, "hostname", default=""),
        "pid": _int(record, "pid", False, low=0, high=_MAX_PID, default=0),
        "params": _int(record, "params", False, low=0, default=0),
        "estimated_memory_bytes": _int(record, "estimated_memory_bytes", True, low=0),
        "estimated_time_s": _number(record, "estimated_time_s", True),
        "lease_expires_at": _number(record, "lease_expires_at", True),
        "preset": _text(labels, "preset", optional=True, where="labels."),
        "sweep": _text(labels, "sweep", optional=True, where="labels."),
        "trial": _int(labels, "trial", True, low=0, where="labels."),
        "array_task": _text(labels, "array_task", optional=True, where="labels."),
        "pack_size": pack_size,
    }


def _finished(record: Mapping[str, Any]) -> FinishedColumns:
    status = record.get("status")
    if status not in {s.value for s in RunStatus} or status in (RunStatus.RUNNING, RunStatus.INTERRUPTED):
        raise _BadLine(f"status: must be how a run ends, got {_shown(status)}")
    curve = record.get("loss_curve", [])
    if not isinstance(curve, list) or len(curve) > MAX_CURVE_POINTS or not all(_is_number(x) for x in curve):
        raise _BadLine(f"loss_curve: must be at most {MAX_CURVE_POINTS} numbers")
    return FinishedColumns(
        status=str(status), finished_at=_number(record, "finished_at", False),
        params=_int(record, "params", False, low=0),
        train_loss=_number(record, "train_loss", True), train_accuracy=_number(record, "train_accuracy", True),
        test_accuracy=_number(record, "test_accuracy", True),
        peak_memory_bytes=_int(record, "peak_memory_bytes", True, low=0),
        gpu_memory_bytes=_int(record, "gpu_memory_bytes", True, low=0),
        train_time_s=_number(record, "train_time_s", True), total_time_s=_number(record, "total_time_s", True),
        message=_text(record, "message", default=""), diverged_step=_int(record, "diverged_step", True, low=0),
        loss_curve=tuple(float(x) for x in curve),
    )


def _epochs(raw: Any) -> tuple[EpochRecord, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_EPOCHS:
        raise _BadLine(f"epochs: must be a list of at most {MAX_EPOCHS} epochs")
    return tuple(_epoch(item, f"epochs[{index}]") for index, item in enumerate(raw))


def _epoch(raw: Any, where: str) -> EpochRecord:
    if not isinstance(raw, dict):
        raise _BadLine(f"{where}: missing or not an object")
    prefix = f"{where}."
    values: dict[str, Any] = {name: _number(raw, name, True, where=prefix) for name in EPOCH_COLUMNS}
    values["epoch"] = _int(raw, "epoch", False, low=1, high=MAX_EPOCHS, where=prefix)
    values["seconds"] = _number(raw, "seconds", False, where=prefix)
    return EpochRecord(**values)


_MISSING = object()


def _value(record: Mapping[str, Any], key: str, optional: bool, default: Any, where: str) -> Any:
    value = record.get(key, _MISSING)
    if value is _MISSING:
        if optional or default is not _MISSING:
            return None if default is _MISSING else default
        raise _BadLine(f"{where}{key}: missing")
    return value


def _number(
    record: Mapping[str, Any], key: str, optional: bool, *, default: Any = _MISSING, where: str = ""
) -> Any:
    """A number (NaN and infinities allowed, as the engine reports them), or None where optional."""
    value = _value(record, key, optional, default, where)
    if value is None and optional:
        return None
    if not _is_number(value) or (isinstance(value, int) and abs(value) > _MAX_INT):
        raise _BadLine(f"{where}{key}: must be a number, got {_shown(value)}")
    return float(value)


def _int(
    record: Mapping[str, Any], key: str, optional: bool, *, low: int = -_MAX_INT, high: int = _MAX_INT,
    default: Any = _MISSING, where: str = "",
) -> Any:
    value = _value(record, key, optional, default, where)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _BadLine(f"{where}{key}: must be a whole number in [{low}, {high}], got {_shown(value)}")
    return value


def _text(
    record: Mapping[str, Any], key: str, *, optional: bool = False, default: Any = _MISSING, where: str = ""
) -> Any:
    value = _value(record, key, optional, default, where)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > 4096:
        raise _BadLine(f"{where}{key}: must be text, got {_shown(value)}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
