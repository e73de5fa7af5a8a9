"""Run journals: how a cluster worker records its runs without sharing an SQLite file.

SQLite's locks do not hold on a network filesystem, so workers on several nodes never write the
results store. Each worker process appends its runs' events to a file of its own in the sweep's
shared folder, one JSON object per line, flushed and fsynced per line:

    {"kind": "start", "uid": ..., "config": {...}, ...}      a run began (a `running` row)
    {"kind": "epoch", "uid": ..., "epoch": {...}}             an epoch ended (committed)
    {"kind": "lease", "uid": ..., "lease_expires_at": ...}    the worker is alive
    {"kind": "finish", "uid": ..., "status": ..., ...}        the run ended

Readers on the login node import new complete lines into their results store
(`ResultsStore.import_journals`), by the run's uid, so a run is imported once, a line cut short by
a kill is read when it is whole, and a run deleted in the browser is not imported again.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import EpochEnd, Finished, RunStatus
from tuner_tui.runs.lease import LEASE_SECONDS
from tuner_tui.runs.store import JOURNAL_SUFFIX, RunLabels, StoreError, downsample, new_run_uid


class JournalError(Exception):
    """A journal that cannot be written; `str()` is one line."""


class JournalRecorder:
    """A `RunRecorder` that appends to one journal file (this process is its only writer)."""

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
        run_id = next(self._ids)
        self._uids[run_id] = uid or new_run_uid()
        now = self.clock()
        self._append({
            "kind": "start", "uid": self._uids[run_id], "config": config.to_dict(), "device_name": device_name,
            "params": params, "estimated_memory_bytes": estimated_memory_bytes,
            "estimated_time_s": estimated_time_s, "data_source": data_source,
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
        resources = finished.resources
        self._append({
            "kind": "finish", "uid": self._uids[run_id], "status": RunStatus(finished.status).value,
            "finished_at": self.clock(), "params": finished.params, "train_loss": finished.train_loss,
            "train_accuracy": finished.train_accuracy, "test_accuracy": finished.test_accuracy,
            "peak_memory_bytes": resources.peak_memory_bytes,
            "gpu_memory_bytes": resources.gpu_process_memory_bytes, "train_time_s": resources.train_time_s,
            "total_time_s": resources.total_time_s, "message": finished.message,
            "diverged_step": finished.diverged_step, "loss_curve": list(downsample(finished.loss_curve)),
            "epochs": [dataclasses.asdict(e) for e in finished.epochs],
        })

    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, allow_nan=True) + "\n").encode()
        with self._lock:
            try:
                os.write(self._fd, line)
                os.fsync(self._fd)
            except OSError as error:
                raise StoreError(f"run journal {self.path}: {error.strerror or error}") from None


def journal_path(folder: Path, worker: str) -> Path:
    """This worker's journal in `folder`: one file per worker process, named for where it runs."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in worker)
    return folder / f"{safe}-{os.getpid()}{JOURNAL_SUFFIX}"
