"""Sweep workers: the processes that share one study, on this machine or as SLURM array tasks.

A worker is `tuner-tui sweep SPEC --no-ui --worker ...`: the ordinary scheduler, seeded apart from
the other workers, with one torch thread per CPU it was given. On a CPU, several single-threaded
workers beat one multi-threaded run (tiny matmuls gain little from a second OpenMP thread), so a
local sweep starts one worker per core by default; each records its runs in the results store
(one host: SQLite's locks hold) or, on a cluster, in its own journal.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

WORKER_INDEX_ENV = "TUNER_TUI_WORKER_INDEX"
PR_SET_PDEATHSIG = 1  # prctl(2)
STOP_GRACE_S = 60.0  # a worker stops within a step; this only bounds a stuck one


@dataclass(frozen=True)
class WorkerArgs:
    """What every worker of a sweep is told."""

    spec_source: Path
    name: str
    storage: str
    trials: int
    overrides: tuple[str, ...] = ()
    data_root: str | None = None
    device: str | None = None
    store: str | None = None  # a local worker's results store
    journal_dir: Path | None = None  # a cluster worker's journal folder
    timeout: int | None = None  # ask no new trial after this many seconds
    pack: int | str = "auto"  # trials per pack in each worker

    def argv(self) -> list[str]:
        """The worker's command line, with this Python (so every worker has the same environment)."""
        command = [
            sys.executable, "-P", "-m", "tuner_tui", "sweep", str(self.spec_source), "--no-ui", "--worker",
            "--name", self.name, "--storage", self.storage, "--trials", str(self.trials), "--pack", str(self.pack),
        ]
        if self.journal_dir is not None:
            command += ["--journal-dir", str(self.journal_dir)]
        if self.store is not None:
            command += ["--store", self.store]
        if self.timeout is not None:
            command += ["--timeout", str(self.timeout)]
        for item in self.overrides:
            command += ["--set", item]
        if self.data_root is not None:
            command += ["--data-root", self.data_root]
        if self.device is not None:
            command += ["--device", self.device]
        return command


def worker_index() -> int:
    """This worker's number among its sweep's workers (a SLURM array task id, or the local one)."""
    for name in ("SLURM_ARRAY_TASK_ID", WORKER_INDEX_ENV):
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return 0


def run_local_workers(args: WorkerArgs, count: int, cancel: threading.Event) -> list[int]:
    """Start `count` single-threaded workers and wait for them; `cancel` sends each a SIGTERM.

    Their trial lines go to this process's stderr. Returns their exit codes.
    """
    workers = [
        subprocess.Popen(
            args.argv(), env={**os.environ, "OMP_NUM_THREADS": "1", WORKER_INDEX_ENV: str(index)},
            stdout=subprocess.DEVNULL, preexec_fn=_stop_with_parent,  # noqa: PLW1509 - one async-safe prctl call
        )
        for index in range(count)
    ]
    try:
        while any(worker.poll() is None for worker in workers):
            if cancel.wait(0.2):
                _stop(workers)
                break
    finally:
        _stop(workers, wait_only=not cancel.is_set())
    return [worker.returncode for worker in workers]


def _stop_with_parent() -> None:
    """In a worker, before it starts: a SIGTERM when its parent dies (even by SIGKILL), so no worker
    outlives the sweep it belongs to; it stores its trial as cancelled and exits."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop(workers: Sequence[subprocess.Popen[bytes]], *, wait_only: bool = False) -> None:
    for worker in workers:
        if worker.poll() is None and not wait_only:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
