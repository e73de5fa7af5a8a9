"""The app's runner: a run in a child process, relayed event by event, recorded by the child.

Each test runs real training in a real child process on a tiny IDX dataset under tmp_path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.events import EpochEnd, Finished, Progress, RunStatus, Started
from tests.datafiles import write_idx_dataset
from tuner_tui.runs.store import ResultsStore, RunLabels
from tuner_tui.runs.training_process import RunRejectedError, TrainingProcessError, run_in_child_process, warm_up

TRAIN, TEST = 300, 50


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_idx_dataset(root, train=TRAIN, test=TEST)
    return root


@pytest.fixture
def store(tmp_path: Path) -> ResultsStore:
    with ResultsStore(tmp_path / "runs.sqlite3") as opened:
        yield opened


def small_config(root: Path | None, **changes) -> RunConfig:
    values = dict(dataset="fmnist", hidden=(16,), batch_size=20, epochs=2, device="cpu", data_root=str(root) if root else None)
    return RunConfig(**(values | changes))


def endless_config(root: Path) -> RunConfig:
    """Batch 1 for 1,000 epochs: still running when a test ends it."""
    return small_config(root, batch_size=1, epochs=1000)


def test_a_run_in_the_child_relays_every_event_and_the_child_records_it(store, data_root):
    events: list = []

    finished = run_in_child_process(small_config(data_root), store.path, events.append, threading.Event(), labels=RunLabels(preset="mine"))

    assert isinstance(events[0], Started) and events[-1] is finished
    assert finished.status is RunStatus.COMPLETED
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1, 2]
    assert any(isinstance(e, Progress) for e in events)
    [record] = store.list_runs()
    assert record.status == "completed" and record.label == "mine"
    assert record.test_accuracy == pytest.approx(finished.test_accuracy)
    assert record.pid != os.getpid()  # trained (and recorded) by another process


def test_stop_reaches_the_child_and_the_run_is_stored_as_cancelled(store, data_root):
    cancel = threading.Event()

    def on_event(event) -> None:
        if isinstance(event, Progress):
            cancel.set()

    finished = run_in_child_process(endless_config(data_root), store.path, on_event, cancel)

    assert finished.status is RunStatus.CANCELLED
    assert store.list_runs()[0].status == "cancelled"


def test_bad_input_found_by_the_child_is_rejected_in_one_line_with_nothing_stored(store, data_root):
    with pytest.raises(RunRejectedError, match=r"^batch_size: must be in \[1, 300\]") as caught:
        run_in_child_process(small_config(data_root, batch_size=1000), store.path, lambda event: None, threading.Event())

    assert "\n" not in str(caught.value)
    assert store.list_runs() == []


def test_a_child_killed_mid_run_fails_the_call_and_its_row_is_marked_interrupted(store, data_root):
    def on_event(event) -> None:
        if isinstance(event, Progress):
            os.kill(store.list_runs()[0].pid, signal.SIGKILL)

    with pytest.raises(TrainingProcessError, match=r"exit code -9"):
        run_in_child_process(endless_config(data_root), store.path, on_event, threading.Event())

    [record] = store.list_runs()
    assert record.status == "interrupted"


def test_the_child_runs_with_the_environment_of_the_moment_the_run_starts(store, data_root, monkeypatch):
    warm_up(wait=True)  # a standby started before the variable below was set
    monkeypatch.setenv("TUNER_TUI_DATA", str(data_root))

    finished = run_in_child_process(small_config(None), store.path, lambda event: None, threading.Event())

    assert finished.status is RunStatus.COMPLETED
    assert store.list_runs()[0].data_source.startswith(str(data_root))


def test_a_relative_data_root_means_the_working_directory_of_the_moment_the_run_starts(store, data_root, monkeypatch):
    warm_up(wait=True)  # a standby started in another directory
    monkeypatch.chdir(data_root.parent)

    finished = run_in_child_process(small_config(Path(data_root.name)), store.path, lambda event: None, threading.Event())

    assert finished.status is RunStatus.COMPLETED


def test_a_run_whose_parent_dies_stops_itself_and_is_stored_as_cancelled(tmp_path, data_root):
    """The app killed (an SSH session dropped): its training process must not run on for hours."""
    store_path = tmp_path / "orphan.sqlite3"
    script = textwrap.dedent(f"""
        import os, threading
        from engine.config import RunConfig
        from engine.events import Progress
        from tuner_tui.runs.training_process import run_in_child_process

        def on_event(event):
            if isinstance(event, Progress):
                os._exit(0)  # the parent vanishes mid-run, cleaning nothing up

        config = RunConfig(dataset="fmnist", hidden=(16,), batch_size=1, epochs=1000, device="cpu",
                           data_root={str(data_root)!r})
        run_in_child_process(config, {str(store_path)!r}, on_event, threading.Event())
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)

    deadline = time.monotonic() + 30
    with ResultsStore(store_path) as store:
        while store.list_runs()[0].status == "running":
            assert time.monotonic() < deadline, "the orphaned run is still running"
            time.sleep(0.1)
        [record] = store.list_runs()
    assert record.status == "cancelled"


def test_a_finished_event_is_returned_only_after_the_store_has_it(store, data_root):
    seen_in_store: list[str] = []

    def on_event(event) -> None:
        if isinstance(event, Finished):
            seen_in_store.append(store.list_runs()[0].status)

    run_in_child_process(small_config(data_root), store.path, on_event, threading.Event())

    assert seen_in_store == ["completed"]
