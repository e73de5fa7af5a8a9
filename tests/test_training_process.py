"""The app's runner: a run in a child process, relayed event by event, recorded by the child.

Each test runs real training in a real child process on a tiny IDX dataset under tmp_path.
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.datafiles import write_idx_dataset
from tests.support import wait_for
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import EpochEnd, Finished, Progress, RunStatus, Started
from tuner_tui.runs.records import RunLabels
from tuner_tui.runs.store import ResultsStore
from tuner_tui.runs.training_child import watch_parent
from tuner_tui.runs.training_process import (
    CANCEL,
    RunRejectedError,
    TrainingProcessError,
    run_in_child_process,
    wait_on_clock,
    warm_up,
)

TRAIN, TEST = 300, 50
GRACE_S = 5.0
WAIT_S = 60.0  # a ceiling for loaded machines; every wait below fails loudly past it

# A training process that never hears a stop: it says ready, takes its job and then, as a run stuck
# in a slow data load or one huge step would, ignores stdin. `after-an-epoch` first records a run
# with one finished epoch and reports it; `preparing` only touches the marker file given.
DEAF_CHILD = textwrap.dedent("""
    import pickle, sys, time
    from pathlib import Path
    from tests.fake_runner import _epoch_end, started_event
    from tuner_tui.runs.records import StartColumns
    from tuner_tui.runs.store import ResultsStore

    def send(message):
        pickle.dump(message, sys.stdout.buffer)
        sys.stdout.buffer.flush()

    send("ready")
    job = pickle.load(sys.stdin.buffer)
    if sys.argv[1] == "after-an-epoch":
        started, epoch = started_event(job.config), _epoch_end(job.config, 1)
        with ResultsStore(job.store_path) as store:
            run_id = store.start_run(
                job.config, StartColumns(device_name=started.device_name, params=started.params), labels=job.labels,
            )
            store.record_epoch(run_id, epoch)
        send(started)
        send(epoch)
    Path(sys.argv[2]).touch()
    time.sleep(600)
""")


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_idx_dataset(root, train=TRAIN, test=TEST)
    return root


def small_config(root: Path | None, **changes) -> RunConfig:
    values = dict(
        dataset="fmnist", hidden=(16,), batch_size=20, epochs=2, device="cpu", data_root=str(root) if root else None,
    )
    return RunConfig(**(values | changes))


def endless_config(root: Path) -> RunConfig:
    """Batch 1 for 1,000 epochs: still running when a test ends it."""
    return small_config(root, batch_size=1, epochs=1000)


def test_a_run_in_the_child_relays_every_event_and_the_child_records_it(store, data_root):
    events: list = []

    finished = run_in_child_process(
        small_config(data_root), store.path, events.append, threading.Event(), labels=RunLabels(preset="mine")
    )

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
        run_in_child_process(
            small_config(data_root, batch_size=1000), store.path, lambda event: None, threading.Event()
        )

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

    finished = run_in_child_process(
        small_config(Path(data_root.name)), store.path, lambda event: None, threading.Event()
    )

    assert finished.status is RunStatus.COMPLETED


def test_a_run_whose_parent_dies_stops_itself_and_is_stored_as_cancelled(tmp_path, data_root):
    """The app killed (an SSH session dropped): its training process must not run on for hours."""
    store_path = tmp_path / "orphan.sqlite3"
    script = textwrap.dedent(f"""
        import os, threading
        from tuner_tui.engine.config import RunConfig
        from tuner_tui.engine.events import Progress
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


class ManualClock:
    """A clock that moves only when the test moves it, and counts how often it was read."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def run_deaf_child(store, tmp_path, mode: str, cancel_when: Callable[[object], bool]):
    """Run a deaf child, stop it, and let GRACE_S pass on a manual clock only once the stop has been
    forwarded and the child has been seen alive; returns (Finished, relayed events)."""
    clock, cancel, events, result = ManualClock(), threading.Event(), [], []
    marker = tmp_path / "child-is-deaf"

    def on_event(event) -> None:
        events.append(event)
        if cancel_when(event):
            cancel.set()

    def run() -> None:
        result.append(run_in_child_process(
            small_config(None), store.path, on_event, cancel, labels=RunLabels(preset="deaf"),
            stop_grace_s=GRACE_S, clock=clock, child_command=[sys.executable, "-c", DEAF_CHILD, mode, str(marker)],
        ))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(marker.exists, WAIT_S, "the child to take its job", poll=0.01)
    cancel.set()
    wait_for(lambda: clock.reads >= 3, WAIT_S, "the stop to be forwarded and its grace period to start", poll=0.01)
    assert thread.is_alive() and not result, "killed before its grace period was over"
    clock.now = GRACE_S
    thread.join(WAIT_S)
    assert not thread.is_alive(), "the child was not killed after its grace period"
    return result[0], events


def test_a_child_deaf_to_stop_is_killed_after_the_grace_period_and_its_run_stored_cancelled_with_its_epochs(
    store, tmp_path
):
    finished, events = run_deaf_child(store, tmp_path, "after-an-epoch", lambda event: False)

    assert finished.status is RunStatus.CANCELLED
    assert finished.message == "stopped in epoch 2 (the training process did not stop within 5 s and was killed)"
    assert events[-1] is finished
    [record] = store.list_runs()
    assert (record.status, record.label, [e.epoch for e in record.epochs]) == ("cancelled", "deaf", [1])
    assert record.test_accuracy == finished.test_accuracy == events[1].test_accuracy
    with pytest.raises(ProcessLookupError):
        os.kill(record.pid, 0)  # the child is gone, reaped


def test_a_run_stopped_while_preparing_is_killed_after_the_grace_period_and_stored_cancelled_with_no_epochs(
    store, tmp_path
):
    finished, events = run_deaf_child(store, tmp_path, "preparing", lambda event: False)

    assert finished.status is RunStatus.CANCELLED
    assert finished.message.startswith("stopped before training started (the training process did not stop")
    assert events == [finished]
    [record] = store.list_runs()
    assert (record.status, record.label, record.epochs) == ("cancelled", "deaf", ())


def test_a_run_stopped_before_its_job_was_sent_is_stored_cancelled_with_no_epochs(store, tmp_path):
    cancel = threading.Event()
    cancel.set()
    clock = ManualClock()  # never moves: nothing may wait for a grace period here

    finished = run_in_child_process(
        small_config(None), store.path, lambda event: None, cancel, stop_grace_s=GRACE_S, clock=clock,
        child_command=[sys.executable, "-c", DEAF_CHILD, "preparing", str(tmp_path / "marker")],
    )

    assert (finished.status, finished.message) == (RunStatus.CANCELLED, "stopped before training started")
    assert not (tmp_path / "marker").exists()
    [record] = store.list_runs()
    assert (record.status, record.epochs) == ("cancelled", ())


def test_wait_on_clock_returns_when_done_or_when_the_time_has_passed_on_the_clock():
    clock, done = ManualClock(), threading.Event()
    waiter = threading.Thread(target=lambda: results.append(wait_on_clock(done, 3.0, clock, poll_s=0.001)))
    results: list[bool] = []
    waiter.start()
    wait_for(lambda: clock.reads >= 3, WAIT_S, "the waiter to poll", poll=0.01)
    assert waiter.is_alive()
    clock.now = 3.0
    waiter.join(WAIT_S)
    done.set()
    assert results == [False] and wait_on_clock(done, 3.0, clock)


def test_an_orphaned_child_stops_its_run_and_gives_up_on_it_after_the_grace_period():
    cancel, run_over, abandoned = threading.Event(), threading.Event(), []
    clock = ManualClock()
    watcher = threading.Thread(
        target=watch_parent, args=(io.BytesIO(b""), cancel, run_over, lambda: abandoned.append(1)),
        kwargs={"grace_s": GRACE_S, "clock": clock},
    )
    watcher.start()
    wait_for(lambda: clock.reads >= 3, WAIT_S, "the watcher to wait for the run", poll=0.01)
    assert cancel.is_set() and not abandoned
    clock.now = GRACE_S
    watcher.join(WAIT_S)
    assert abandoned == [1]


def test_an_orphaned_child_whose_run_ends_in_time_is_not_given_up_on():
    cancel, run_over, abandoned = threading.Event(), threading.Event(), []
    run_over.set()

    watch_parent(io.BytesIO(b""), cancel, run_over, lambda: abandoned.append(1), grace_s=GRACE_S, clock=ManualClock())

    assert cancel.is_set() and not abandoned


def test_a_stop_from_the_parent_sets_cancel_while_the_parent_is_still_there():
    read_end, write_end = os.pipe()
    cancel, run_over = threading.Event(), threading.Event()
    with os.fdopen(read_end, "rb") as commands:
        with os.fdopen(write_end, "wb") as parent:
            watcher = threading.Thread(
                target=watch_parent, args=(commands, cancel, run_over, lambda: None),
                kwargs={"grace_s": GRACE_S, "clock": ManualClock()}, daemon=True,
            )
            watcher.start()
            pickle.dump(CANCEL, parent)
            parent.flush()
            assert cancel.wait(WAIT_S)
            assert watcher.is_alive()  # still listening: the parent has not gone
            run_over.set()
        watcher.join(WAIT_S)  # the parent's end closed: the watcher reads EOF (before its pipe is closed)
        assert not watcher.is_alive()
