"""Run journals: what a cluster worker appends reaches the login node's store once, whole, and a
deleted run stays deleted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import EpochEnd, Finished, Resources, RunStatus
from tuner_tui.runs.journal import JournalWriter, journal_path
from tuner_tui.runs.records import RunLabels, StartColumns
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
        RunConfig(hidden=(16,), epochs=2),
        StartColumns(device_name="CPU", params=123, estimated_memory_bytes=1000, estimated_time_s=2.0,
                     data_source="/data"),
        labels=RunLabels(sweep="s", trial=trial, array_task="7_1"),
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


# --- lines that are not what a worker writes ---------------------------------------------------------

GOOD_START = {
    "kind": "start", "uid": "bad-line-run", "config": {"hidden": [16], "epochs": 2}, "device_name": "CPU",
    "params": 1, "estimated_memory_bytes": None, "estimated_time_s": None, "data_source": None,
    "labels": {"sweep": "s", "trial": 9}, "hostname": "node9", "pid": 42, "started_at": 1.0,
    "lease_expires_at": 2.0,
}
BAD_LINES = {
    "not JSON": b"{this is not json\n",
    "a start without its config": json.dumps({**GOOD_START, "config": None} | {"config": None}).encode() + b"\n",
    "a config that is a list": json.dumps({**GOOD_START, "config": [1, 2]}).encode() + b"\n",
    "an epoch that is text": json.dumps({"kind": "epoch", "uid": "bad-line-run", "epoch": {"epoch": "x"}}).encode()
    + b"\n",
    "a pid of 10^30": json.dumps({**GOOD_START, "pid": 10**30}).encode() + b"\n",
    "a finish without its params": json.dumps({"kind": "finish", "uid": "bad-line-run", "status": "completed",
                                               "finished_at": 3.0}).encode() + b"\n",
    "not an object": b"[1, 2, 3]\n",
}


def _line_of(path: Path, text: bytes) -> int:
    return path.read_bytes().split(b"\n").index(text.rstrip(b"\n")) + 1


@pytest.mark.parametrize("kind", list(BAD_LINES))
def test_a_bad_line_is_skipped_and_reported_by_file_and_line_the_rest_is_imported(
    store: ResultsStore, folder: Path, kind: str
) -> None:
    path = journal_path(folder, "w")
    if kind in ("an epoch that is text", "a finish without its params"):  # lines of a run that did start
        folder.mkdir(parents=True)
        path.write_bytes(json.dumps(GOOD_START).encode() + b"\n")
    _journaled_run(JournalWriter(path), trial=0)
    with path.open("ab") as handle:
        handle.write(BAD_LINES[kind])
    _journaled_run(JournalWriter(path), trial=1)

    imported = store.import_journals()

    [problem] = imported.problems
    assert problem.path == path and problem.line == _line_of(path, BAD_LINES[kind])
    assert str(problem).startswith(f"run journal {path} line {problem.line}: ") and "\n" not in str(problem)
    assert {r.trial for r in store.list_runs()} >= {0, 1}
    assert all(r.status == RunStatus.COMPLETED for r in store.list_runs() if r.trial in (0, 1))
    assert store.import_journals() == type(imported)()  # reported once; nothing left to read


def test_runs_lists_what_imported_and_warns_once_about_a_bad_line(
    tmp_path: Path, store: ResultsStore, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuner_tui.cli import main

    path = journal_path(folder, "w")
    _journaled_run(JournalWriter(path), trial=0)
    with path.open("ab") as handle:
        handle.write(BAD_LINES["a pid of 10^30"])
    store.close()
    store_path = str(tmp_path / "runs.sqlite3")

    assert main(["runs", "--json", "--store", store_path]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and '"trial": 0' in out
    [warning] = err.splitlines()
    assert warning.startswith(f"tuner-tui: warning: run journal {path} line 5: pid: ")
    for command in (["runs"], ["report"], ["sweeps"], ["report", "--format", "csv"]):
        assert main([*command, "--store", store_path]) == 0
        assert "Traceback" not in capsys.readouterr().err


def test_a_finish_line_with_a_local_runs_uid_changes_nothing(store: ResultsStore, folder: Path) -> None:
    local = store.start_run(RunConfig(hidden=(16,), epochs=2), StartColumns(device_name="CPU", params=1))
    store.record_epoch(local, EPOCHS[0])
    store.finish_run(local, _finished())
    before = store.get_run(local).to_json()
    uid = before["uid"]
    folder.mkdir(parents=True)
    forged = {"kind": "finish", "uid": uid, "status": "failed", "finished_at": 9.0, "params": 1,
              "train_loss": None, "train_accuracy": 1.0, "test_accuracy": 1.0, "peak_memory_bytes": None,
              "gpu_memory_bytes": None, "train_time_s": None, "total_time_s": None, "message": "forged",
              "diverged_step": None, "loss_curve": [], "epochs": []}
    (folder / "forger-1.jsonl").write_text(json.dumps({**GOOD_START, "uid": uid}) + "\n" + json.dumps(forged) + "\n")

    imported = store.import_journals()

    assert store.get_run(local).to_json() == before
    assert len(imported.problems) == 2 and all(uid in p.reason for p in imported.problems)


def test_a_second_journal_resending_a_finished_trial_changes_nothing(store: ResultsStore, folder: Path) -> None:
    first = journal_path(folder, "first")
    _journaled_run(JournalWriter(first))
    store.import_journals()
    [run] = store.list_runs()
    before = run.to_json()
    lines = first.read_text().splitlines()
    resent = json.loads(lines[-1]) | {"status": "cancelled", "epochs": [], "test_accuracy": 0.0}
    (folder / "second-2.jsonl").write_text("\n".join([lines[0], json.dumps(resent)]) + "\n")

    imported = store.import_journals()

    assert store.get_run(run.id).to_json() == before
    assert imported.applied == 0 and len(imported.problems) == 2


def test_a_finished_run_is_never_changed_by_its_own_journal_either(store: ResultsStore, folder: Path) -> None:
    path = journal_path(folder, "w")
    _journaled_run(JournalWriter(path))
    store.import_journals()
    [run] = store.list_runs()
    finish = path.read_text().splitlines()[-1]
    with path.open("a") as handle:
        handle.write(json.dumps(json.loads(finish) | {"status": "failed"}) + "\n")
    imported = store.import_journals()
    assert store.get_run(run.id).status == RunStatus.COMPLETED
    [problem] = imported.problems
    assert "has ended" in problem.reason


# --- files that are not journals ----------------------------------------------------------------------


def test_a_fifo_in_the_journal_folder_neither_hangs_nor_stops_the_import(store: ResultsStore, folder: Path) -> None:
    import os

    _journaled_run(JournalWriter(journal_path(folder, "w")))
    os.mkfifo(folder / "fifo-1.jsonl")
    imported = store.import_journals()  # a FIFO would block a plain open() forever
    assert len(store.list_runs()) == 1
    fifo = folder / "fifo-1.jsonl"
    assert [p.reason for p in imported.problems] == [f"cannot read: {fifo}: not a regular file (a FIFO)"]


def test_a_link_to_dev_zero_in_the_journal_folder_is_not_read(store: ResultsStore, folder: Path) -> None:
    _journaled_run(JournalWriter(journal_path(folder, "w")))
    (folder / "zero-1.jsonl").symlink_to("/dev/zero")
    imported = store.import_journals()
    assert len(store.list_runs()) == 1
    assert ["not a regular file" in p.reason for p in imported.problems] == [True]


def test_an_endless_last_line_is_cut_off_not_read_into_memory(store: ResultsStore, folder: Path) -> None:
    from tuner_tui.runs.journal import MAX_LINE_BYTES

    path = journal_path(folder, "w")
    _journaled_run(JournalWriter(path))
    with path.open("ab") as handle:
        handle.write(b"x" * (MAX_LINE_BYTES + 10))  # no newline: a writer that never ends its line
    imported = store.import_journals()
    assert len(store.list_runs()) == 1
    [problem] = imported.problems
    assert "longer than" in problem.reason and problem.line == 5
