"""Faults around a headless run, from outside the process as a user or a scheduler causes them:
stop signals (Ctrl-C, SLURM's SIGTERM, a dropped SSH session's SIGHUP), SIGKILL, Ctrl-C during
start-up, and a results store that stops taking writes mid-run.

The contract (README, "Bad input, faults and exit codes"): a stop signal ends the run within a
step, stores it as `cancelled` with its finished epochs and exits 128 + the signal's number; each
finished epoch is committed when it ends, so SIGKILL loses at most the epoch in progress; a store
that fails mid-run costs one line on stderr and exit 1, and the run's result is still printed.

The subprocess tests poll the store (read-only, `open_existing`) until the run has the epochs they
wait for, each with a deadline that fails loudly; nothing here sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tuner_tui.cli import main
from tuner_tui.engine.events import RunStatus
from tuner_tui.runs.records import RunRecord
from tuner_tui.runs.sqlite_access import StoreError
from tuner_tui.runs.store import ResultsStore

TIMEOUT_S = 120.0  # a ceiling for a loaded 2-core machine; runs here reach an epoch in about a second
POLL_S = 0.05
# 600 images at batch 1: an epoch of 600 steps (well under a second), 1000 epochs (minutes).
LONG_RUN = [
    "--no-ui", "--set", "hidden=16", "--set", "batch_size=1", "--set", "epochs=1000", "--set", "device=cpu",
]


@pytest.fixture
def data_root(tiny_fmnist: Path) -> Path:
    return tiny_fmnist


@pytest.fixture
def store_path(isolated: dict[str, str]) -> Path:
    return Path(isolated["TUNER_TUI_STORE"])


@pytest.fixture
def headless(isolated: dict[str, str], data_root: Path, tmp_path: Path) -> Iterator[Any]:
    """Start `python -m tuner_tui` headless on the long run; yields a function that starts it and
    returns (process, stdout file, stderr file). Any process still alive at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, **isolated, "PYTHONUNBUFFERED": "1"}

    def start(*extra: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
        out, err = tmp_path / f"stdout{len(started)}.txt", tmp_path / f"stderr{len(started)}.txt"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "tuner_tui", *LONG_RUN, "--data-root", str(data_root), *extra],
                env=env, stdout=stdout, stderr=stderr,
            )
        started.append(process)
        return process, out, err

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=TIMEOUT_S)


def wait_for_epochs(path: Path, count: int, process: subprocess.Popen[bytes]) -> RunRecord:
    """Poll the store read-only until its one run has `count` committed epochs; fail at the deadline."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended early with exit code {process.returncode}"
        try:
            with ResultsStore.open_existing(path) as reader:
                runs = reader.list_runs()
        except StoreError:
            runs = []  # not created yet, or mid-migration
        if runs and len(runs[0].epochs) >= count:
            return runs[0]
        time.sleep(POLL_S)
    pytest.fail(f"no run with {count} committed epochs in {path} after {TIMEOUT_S:.0f} s")


def stored_run(path: Path) -> RunRecord:
    with ResultsStore.open_existing(path) as reader:
        [run] = reader.list_runs()
    return run


def epoch_lines(text: str) -> list[int]:
    """The epochs a run's stderr reports as finished (`epoch 3: train loss …`)."""
    return [int(match) for match in re.findall(r"^epoch (\d+): ", text, flags=re.MULTILINE)]


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)],
    ids=["SIGTERM", "SIGHUP", "SIGINT"],
)
def test_a_stop_signal_after_an_epoch_stores_the_run_cancelled_with_its_epochs(
    headless, store_path: Path, signum: int, code: int
) -> None:
    process, out, err = headless()
    wait_for_epochs(store_path, 1, process)
    process.send_signal(signum)
    assert process.wait(timeout=TIMEOUT_S) == code
    stderr, stdout = err.read_text(), out.read_text()
    assert "Traceback" not in stderr
    run = stored_run(store_path)
    assert run.status == RunStatus.CANCELLED.value
    assert len(run.epochs) >= 1
    assert [e.epoch for e in run.epochs] == epoch_lines(stderr)  # every epoch it printed is stored
    assert run.message.startswith("stopped in epoch ")
    assert "cancelled" in stdout  # the run's table is still printed


def test_sigkill_loses_at_most_the_epoch_in_progress(headless, store_path: Path) -> None:
    process, _, err = headless()
    wait_for_epochs(store_path, 2, process)
    process.kill()
    process.wait(timeout=TIMEOUT_S)
    printed = epoch_lines(err.read_text())  # an epoch is printed only after the store has it

    run = stored_run(store_path)
    stored = [e.epoch for e in run.epochs]
    assert stored == list(range(1, len(stored) + 1)) and len(stored) >= 2
    assert stored[: len(printed)] == printed and len(stored) - len(printed) <= 1
    assert run.train_accuracy == run.epochs[-1].train_accuracy  # the row carries the last epoch's figures
    # Its process is gone from this host: readers say so, and the next writer records it.
    assert run.status == RunStatus.INTERRUPTED.value
    with sqlite3.connect(store_path) as raw:
        assert raw.execute("SELECT status FROM runs").fetchone()[0] == RunStatus.RUNNING.value
    ResultsStore(store_path).close()
    with sqlite3.connect(store_path) as raw:
        assert raw.execute("SELECT status FROM runs").fetchone()[0] == RunStatus.INTERRUPTED.value


# Ctrl-C while the run is being prepared (imports, dataset loading): SIGINT arrives from inside
# prepare_run, exactly as a key press during start-up would.
CTRL_C_DURING_START_UP = """
import os, signal, sys
import tuner_tui.engine.runner
real_resolve_device = tuner_tui.engine.runner.resolve_device
def pressed_ctrl_c(name):
    os.kill(os.getpid(), signal.SIGINT)
    return real_resolve_device(name)
tuner_tui.engine.runner.resolve_device = pressed_ctrl_c
from tuner_tui.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_during_start_up_is_one_line_exit_130_and_stores_nothing(
    isolated: dict[str, str], data_root: Path, store_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_DURING_START_UP, *LONG_RUN, "--data-root", str(data_root)],
        env={**os.environ, **isolated}, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.count("\n") == 1 and "interrupted" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert not store_path.exists() and not store_path.parent.exists()


def test_ctrl_c_before_the_run_is_set_up_is_one_line_exit_130(capsys, monkeypatch, data_root: Path) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("tuner_tui.commands.run.resolve_config", interrupted)
    code = main([*LONG_RUN, "--data-root", str(data_root)])
    captured = capsys.readouterr()
    assert code == 130
    assert captured.err == "tuner-tui: interrupted\n" and captured.out == ""


# --- a store that stops taking writes mid-run -------------------------------------------------------


def test_a_store_locked_past_the_retry_budget_mid_run_is_one_line_exit_1_and_the_result_is_printed(
    capsys, monkeypatch, data_root: Path, store_path: Path
) -> None:
    # A tiny retry budget: the first write after the lock is taken gives up at once.
    monkeypatch.setenv("TUNER_TUI_LOCK_WAIT_S", "0.01")
    locks: list[sqlite3.Connection] = []
    real_start_run = ResultsStore.start_run

    def start_run_then_lock(self: ResultsStore, *args: Any, **kwargs: Any) -> int:
        run_id = real_start_run(self, *args, **kwargs)
        lock = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        lock.execute("BEGIN EXCLUSIVE")  # another writer holds the file from here on
        locks.append(lock)
        return run_id

    monkeypatch.setattr(ResultsStore, "start_run", start_run_then_lock)
    try:
        code = main(["--no-ui", "--json", "--set", "hidden=16", "--set", "batch_size=20", "--set", "epochs=2",
                     "--device", "cpu", "--data-root", str(data_root)])
    finally:
        for lock in locks:
            lock.rollback()
            lock.close()
    captured = capsys.readouterr()

    assert code == 1
    [line] = [line for line in captured.err.splitlines() if line.startswith("tuner-tui: error")]
    assert "not stored" in line and "locked" in line and str(store_path) in line
    assert "Traceback" not in captured.err
    result = json.loads(captured.out)  # the run's result reaches stdout all the same
    assert result["status"] == "completed" and [e["epoch"] for e in result["epochs"]] == [1, 2]
    assert result["run_id"] is None and result["uid"] is None  # not stored, and the JSON says so


def test_a_store_that_fails_mid_run_keeps_training_and_says_why_in_one_line(
    capsys, monkeypatch, data_root: Path
) -> None:
    def read_only(self: ResultsStore, *args: Any, **kwargs: Any) -> None:
        raise StoreError(f"results store {self.path}: attempt to write a readonly database")

    monkeypatch.setattr(ResultsStore, "record_epoch", read_only)
    code = main(["--no-ui", "--set", "hidden=16", "--set", "batch_size=20", "--set", "epochs=2",
                 "--device", "cpu", "--data-root", str(data_root)])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("tuner-tui: error")]
    assert len(errors) == 1 and "readonly database" in errors[0]
    assert epoch_lines(captured.err) == [1, 2]  # training went on after the failed write
    assert "completed" in captured.out and "train acc" in captured.out


def test_the_heartbeat_thread_is_stopped_when_the_run_ends(capsys, data_root: Path) -> None:
    before = {thread.name for thread in threading.enumerate()}
    code = main(["--no-ui", "--set", "hidden=16", "--set", "batch_size=20", "--set", "epochs=1",
                 "--device", "cpu", "--data-root", str(data_root)])
    assert code == 0
    assert "lease-heartbeat" not in {thread.name for thread in threading.enumerate()} - before
