"""Run journals: what a cluster worker appends reaches the login node's store once, whole, and a
deleted run stays deleted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import EpochEnd, Finished, Resources, RunStatus
from tuner_tui.runs.journal import JournalWriter, journal_path
from tuner_tui.runs.records import RunLabels
from tuner_tui.runs.store import ResultsStore, import_pending_journals

EPOCHS = (
    EpochEnd(1, train_loss=0.9, train_accuracy=70.0, test_accuracy=71.0, seconds=1.0, train_ce=0.9,
             val_loss=0.8, val_accuracy=72.0),
    EpochEnd(2, train_loss=0.5, train_accuracy=80.0, test_accuracy=79.0, seconds=1.0, train_ce=0.5,
             val_loss=0.6, val_accuracy=78.0),
)


def _finished(status: RunStatus = RunStatus.COMPLETED) -> Finished:
    return Finished(
        status=status, message="done", train_loss=0.5, train_accuracy=80.0, test_accuracy=79.0, params=123,
        resources=Resources(train_time_s=2.0, total_time_s=3.0), epochs=EPOCHS, loss_curve=(1.0, 0.5),
    )


def _journaled_run(journal: JournalWriter, *, finish: bool = True, trial: int = 0) -> int:
    run_id = journal.start_run(
        RunConfig(hidden=(16,), epochs=2), device_name="CPU", params=123, estimated_memory_bytes=1000,
        estimated_time_s=2.0, data_source="/data", labels=RunLabels(sweep="s", trial=trial, array_task="7_1"),
    )
    journal.record_epoch(run_id, EPOCHS[0])
    if finish:
        journal.record_epoch(run_id, EPOCHS[1])
        journal.finish_run(run_id, _finished())
    return run_id


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "sweeps" / "s" / "runs"


@pytest.fixture
def store(tmp_path: Path, folder: Path) -> ResultsStore:
    opened = ResultsStore(tmp_path / "runs.sqlite3")
    opened.register_sweep("s", "journal:/x", folder)
    return opened


def test_a_journaled_run_is_imported_whole_with_its_labels(store: ResultsStore, folder: Path) -> None:
    journal = JournalWriter(journal_path(folder, "node1 task 7_1"))
    _journaled_run(journal)
    assert store.import_journals().applied == 4
    [run] = store.list_runs()
    assert run.status == "completed" and run.sweep == "s" and run.trial == 0 and run.array_task == "7_1"
    assert [e.epoch for e in run.epochs] == [1, 2] and run.epochs[1].val_accuracy == 78.0
    assert run.test_accuracy == 79.0 and run.loss_curve == (1.0, 0.5)


def test_importing_again_changes_nothing(store: ResultsStore, folder: Path) -> None:
    _journaled_run(JournalWriter(journal_path(folder, "w")))
    store.import_journals()
    before = [r.to_json() for r in store.list_runs()]
    assert store.import_journals().applied == 0
    assert [r.to_json() for r in store.list_runs()] == before


def test_a_running_run_is_imported_with_its_finished_epochs_then_completed(store: ResultsStore, folder: Path) -> None:
    journal = JournalWriter(journal_path(folder, "w"))
    run_id = _journaled_run(journal, finish=False)
    store.import_journals()
    [run] = store.list_runs()
    assert run.status == "running" and [e.epoch for e in run.epochs] == [1]
    journal.record_epoch(run_id, EPOCHS[1])
    journal.finish_run(run_id, _finished())
    store.import_journals()
    [run] = store.list_runs()
    assert run.status == "completed" and len(run.epochs) == 2


def test_a_line_cut_short_by_a_kill_waits_until_it_is_whole(store: ResultsStore, folder: Path) -> None:
    path = journal_path(folder, "w")
    journal = JournalWriter(path)
    _journaled_run(journal)
    whole = path.read_bytes()
    cut = whole.rfind(b'{"kind": "finish"')
    path.write_bytes(whole[: cut + 20])
    store.import_journals()
    [run] = store.list_runs()
    assert run.status == "running"
    path.write_bytes(whole)
    store.import_journals()
    assert store.list_runs()[0].status == "completed"


def test_a_damaged_line_is_skipped_and_the_rest_imported(store: ResultsStore, folder: Path) -> None:
    path = journal_path(folder, "w")
    _journaled_run(JournalWriter(path), trial=0)
    with path.open("ab") as handle:
        handle.write(b"not json\n")
    _journaled_run(JournalWriter(path), trial=1)
    store.import_journals()
    assert sorted(r.trial for r in store.list_runs()) == [0, 1]


def test_a_deleted_run_is_not_imported_again(tmp_path: Path, store: ResultsStore, folder: Path) -> None:
    _journaled_run(JournalWriter(journal_path(folder, "w")))
    store.import_journals()
    [run] = store.list_runs()
    store.delete_run(run.id)
    store.close()
    with ResultsStore(tmp_path / "runs.sqlite3") as again:  # as if every journal were new again
        again._transaction(lambda conn: conn.execute("DELETE FROM imported_files"), write=True)
        assert again.import_journals().applied == 4
        assert again.list_runs() == []


def test_a_reader_imports_before_it_reads(tmp_path: Path, store: ResultsStore, folder: Path) -> None:
    _journaled_run(JournalWriter(journal_path(folder, "w")))
    store.close()
    assert import_pending_journals(tmp_path / "runs.sqlite3").applied == 4
    with ResultsStore.open_existing(tmp_path / "runs.sqlite3") as reader:
        assert len(reader.list_runs()) == 1
        assert reader.pending_journal_bytes() == 0


def test_each_worker_writes_its_own_file(folder: Path) -> None:
    first, second = journal_path(folder, "node1 task 7_0"), journal_path(folder, "node2 task 7_1")
    assert first != second and first.parent == folder and "/" not in first.name[:-6].replace(" ", "")
    record = JournalWriter(first)
    _journaled_run(record)
    kinds = [json.loads(line)["kind"] for line in first.read_text().splitlines()]
    assert kinds == ["start", "epoch", "epoch", "finish"]
