"""The results store: round trips, migrations, crash recovery, many writers, bad paths."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import EpochEnd, Finished, Resources, RunStatus
from tuner_tui.runs import store_schema
from tuner_tui.runs.lease import LEASE_SECONDS, Heartbeat
from tuner_tui.runs.records import StartColumns
from tuner_tui.runs.sqlite_access import StoreError
from tuner_tui.runs.store import ResultsStore, default_store_path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _start(s: ResultsStore, config: RunConfig | None = None, device: str = "cpu") -> int:
    return s.start_run(
        config or RunConfig(),
        StartColumns(device_name=device, params=203_530, estimated_memory_bytes=1_000_000, estimated_time_s=12.5,
                     data_source="/data/fmnist"),
    )


def _finished(
    status: RunStatus = RunStatus.COMPLETED,
    train_time_s: float = 10.0,
    loss_curve: tuple[float, ...] = (2.3, 1.1, 0.6),
) -> Finished:
    return Finished(
        status=status,
        message="done",
        train_loss=0.42,
        train_accuracy=85.5,
        test_accuracy=84.25,
        params=203_530,
        resources=Resources(
            train_time_s=train_time_s,
            total_time_s=train_time_s + 1.0,
            peak_rss_growth_bytes=5_000_000,
            gpu_process_memory_bytes=None,
        ),
        epochs=(
            EpochEnd(1, train_loss=0.9, train_accuracy=70.0, test_accuracy=75.0, seconds=5.0),
            EpochEnd(2, train_loss=0.42, train_accuracy=85.5, test_accuracy=84.25, seconds=5.0),
        ),
        loss_curve=loss_curve,
    )


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "runs.sqlite3"


def test_default_path_is_in_user_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNER_TUI_STORE", raising=False)
    assert default_store_path().name == "runs.sqlite3"
    assert default_store_path().parent.name == "tuner-tui"


def test_env_var_overrides_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TUNER_TUI_STORE", str(tmp_path / "elsewhere.db"))
    assert default_store_path() == tmp_path / "elsewhere.db"
    with ResultsStore() as s:
        assert s.path == tmp_path / "elsewhere.db"


def test_opening_creates_parent_dirs_and_uses_wal(path: Path) -> None:
    with ResultsStore(path):
        pass
    assert path.is_file()
    assert _raw(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_round_trip_start_finish_get(path: Path) -> None:
    config = RunConfig(hidden=(128, 64), lr=0.05, batch_size=32, epochs=2, data_root="/data")
    with ResultsStore(path) as s:
        run_id = _start(s, config)
        s.finish_run(run_id, _finished())
        run = s.get_run(run_id)
    assert run.status == "completed"
    assert run.config == config
    assert run.device_name == "cpu"
    assert run.data_source == "/data/fmnist"
    assert run.hostname and run.pid == os.getpid()
    assert run.finished_at is not None and run.finished_at >= run.started_at
    assert (run.train_loss, run.train_accuracy, run.test_accuracy) == (0.42, 85.5, 84.25)
    assert run.peak_memory_bytes == 5_000_000
    assert run.gpu_memory_bytes is None
    assert (run.train_time_s, run.total_time_s) == (10.0, 11.0)
    assert run.message == "done"
    assert [e.epoch for e in run.epochs] == [1, 2]
    assert run.epochs[0].test_accuracy == 75.0
    assert run.loss_curve == (2.3, 1.1, 0.6)


def test_to_json_has_documented_keys_and_values(path: Path) -> None:
    with ResultsStore(path) as s:
        run_id = _start(s)
        s.finish_run(run_id, _finished())
        data = s.get_run(run_id).to_json()
    assert {"run_id", "status", "config", "device", "metrics", "epochs"} <= set(data)
    assert data["run_id"] == run_id
    assert data["config"] == RunConfig().to_dict()
    assert "data_root" in data["config"]
    assert data["device"] == "cpu"
    assert set(data["metrics"]) == {
        "train_accuracy", "train_loss", "test_accuracy", "params", "estimated_memory_bytes",
        "peak_memory_bytes", "gpu_memory_bytes", "estimated_time_s", "train_time_s",
        "total_time_s", "train_ce",
    }
    assert data["metrics"]["test_accuracy"] == 84.25
    assert data["metrics"]["gpu_memory_bytes"] is None
    assert data["epochs"][1] == {
        "epoch": 2, "train_loss": 0.42, "train_accuracy": 85.5, "test_accuracy": 84.25,
        "seconds": 5.0, "train_ce": None, "val_loss": None, "val_accuracy": None,
    }


def test_running_row_is_visible_before_finish(path: Path) -> None:
    with ResultsStore(path) as writer, ResultsStore(path) as reader:
        run_id = _start(writer)
        run = reader.get_run(run_id)
    assert run.status == "running"
    assert run.finished_at is None and run.test_accuracy is None and run.epochs == ()


def test_worker_thread_can_write(path: Path) -> None:
    with ResultsStore(path) as s:
        run_id = _start(s)
        worker = threading.Thread(target=s.finish_run, args=(run_id, _finished()))
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive()
        assert s.get_run(run_id).status == "completed"


def test_get_run_of_unknown_id_raises_key_error(path: Path) -> None:
    with ResultsStore(path) as s, pytest.raises(KeyError):
        s.get_run(999)


def test_list_runs_is_newest_first_filtered_and_limited(path: Path) -> None:
    with ResultsStore(path) as s:
        ids = [_start(s, RunConfig(dataset=d)) for d in ("fmnist", "mnist", "fmnist", "fmnist")]
        assert [r.id for r in s.list_runs()] == ids[::-1]
        assert [r.id for r in s.list_runs(dataset="fmnist")] == [ids[3], ids[2], ids[0]]
        assert [r.id for r in s.list_runs(dataset="fmnist", limit=2)] == [ids[3], ids[2]]
        assert s.list_runs(dataset="cifar10") == []


def test_loss_curve_is_downsampled_keeping_its_mean(path: Path) -> None:
    curve = tuple(2.0 / (1 + i / 500) + (i % 7) * 0.01 for i in range(10_007))
    with ResultsStore(path) as s:
        run_id = _start(s)
        s.finish_run(run_id, _finished(loss_curve=curve))
        stored = s.get_run(run_id).loss_curve
    assert 256 < len(stored) <= 512
    assert statistics.fmean(stored) == pytest.approx(statistics.fmean(curve), rel=1e-3)
    assert stored[0] > stored[-1]


def test_fresh_empty_db_migrates_to_current_version(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.touch()
    with ResultsStore(path):
        pass
    conn = _raw(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store_schema.MIGRATIONS)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "run_epochs"} <= tables


def test_reopening_is_idempotent_and_keeps_runs(path: Path) -> None:
    with ResultsStore(path) as s:
        run_id = _start(s)
    with ResultsStore(path) as s:
        assert [r.id for r in s.list_runs()] == [run_id]
    assert _raw(path).execute("PRAGMA user_version").fetchone()[0] == len(store_schema.MIGRATIONS)


def test_appended_migration_runs_once(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ResultsStore(path) as s:
        run_id = _start(s)
    calls = []

    def add_notes(conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA database_list").fetchone()[2]:  # the store's file, not a scratch schema
            calls.append(1)
        conn.execute("ALTER TABLE runs ADD COLUMN notes TEXT")

    monkeypatch.setattr(store_schema, "MIGRATIONS", [*store_schema.MIGRATIONS, add_notes])
    ResultsStore(path).close()
    ResultsStore(path).close()
    conn = _raw(path)
    assert calls == [1]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store_schema.MIGRATIONS)
    assert conn.execute("SELECT notes FROM runs WHERE id = ?", (run_id,)).fetchone() == (None,)
    with ResultsStore(path) as s:
        assert s.get_run(run_id).status == "running"


def test_newer_schema_raises_store_error(path: Path) -> None:
    ResultsStore(path).close()
    _raw(path).execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        ResultsStore(path)


def test_foreign_sqlite_db_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    _raw(path).execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StoreError, match="not a tuner-tui results store"):
        ResultsStore(path)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    return child.pid


def test_running_row_of_dead_process_becomes_interrupted(path: Path) -> None:
    with ResultsStore(path) as s:
        run_id = _start(s)
    _raw(path).execute("UPDATE runs SET pid = ? WHERE id = ?", (_dead_pid(), run_id))
    with ResultsStore(path) as s:
        run = s.get_run(run_id)
    assert run.status == "interrupted"
    assert run.finished_at is not None


def test_running_row_of_live_process_stays_running(path: Path) -> None:
    with ResultsStore(path) as s:
        run_id = _start(s)
    with ResultsStore(path) as s:
        assert s.get_run(run_id).status == "running"


def test_running_row_of_other_host_stays_running(path: Path) -> None:
    with ResultsStore(path) as s:
        run_id = _start(s)
    _raw(path).execute(
        "UPDATE runs SET pid = ?, hostname = 'node-elsewhere' WHERE id = ?", (_dead_pid(), run_id)
    )
    with ResultsStore(path) as s:
        assert s.get_run(run_id).status == "running"


OPENER = textwrap.dedent(
    """
    import sys, time
    from tuner_tui.runs.store import ResultsStore

    start = float(sys.argv[2])
    while time.time() < start:
        pass
    for path in sys.argv[3:]:
        with ResultsStore(path):
            pass
    """
)


def test_processes_creating_one_store_at_once_all_open_it(tmp_path: Path) -> None:
    """The schema is created by one of them; the others never take the half-made file for a foreign one."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    paths = [str(tmp_path / f"store{i}.sqlite3") for i in range(20)]
    start = time.time() + 1.0
    openers = [
        subprocess.Popen([sys.executable, "-c", OPENER, str(n), str(start), *paths], env=env,
                         stderr=subprocess.PIPE, text=True)
        for n in range(4)
    ]
    errors = [o.communicate(timeout=60)[1] for o in openers]
    assert [o.returncode for o in openers] == [0] * 4, errors
    for store_path in paths:
        with ResultsStore(store_path) as s:
            assert s.list_runs() == []


WRITER = textwrap.dedent(
    """
    import sys
    from tuner_tui.engine.config import RunConfig
    from tuner_tui.engine.events import Finished, Resources, RunStatus
    from tuner_tui.runs.records import StartColumns
    from tuner_tui.runs.store import ResultsStore

    with ResultsStore(sys.argv[1]) as s:
        for i in range(25):
            run_id = s.start_run(RunConfig(seed=i), StartColumns(device_name="cpu", params=1))
            s.finish_run(run_id, Finished(RunStatus.COMPLETED, "ok", 0.1, 90.0, 89.0, 1,
                                          Resources(1.0, 1.5), loss_curve=(1.0, 0.5)))
    """
)


def test_four_writer_processes_share_one_store(path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    errors = [w.communicate(timeout=60)[1] for w in writers]
    assert [w.returncode for w in writers] == [0] * 4, errors
    with ResultsStore(path) as s:
        runs = s.list_runs()
    assert len(runs) == 100
    assert {r.status for r in runs} == {"completed"}
    assert len({r.id for r in runs}) == 100


def test_directory_path_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as err:
        ResultsStore(tmp_path)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_garbage_file_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not the runs you are looking for\n" * 50)
    with pytest.raises(StoreError) as err:
        ResultsStore(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_path_under_a_file_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    path = tmp_path / "plain" / "runs.sqlite3"
    with pytest.raises(StoreError) as err:
        ResultsStore(path)
    assert str(path) in str(err.value)


def test_finish_run_is_all_or_nothing(path: Path) -> None:
    finished = _finished()
    first, second = finished.epochs
    unwritable = dataclasses.replace(second, seconds=object())  # sqlite cannot store it: the second epoch fails
    with ResultsStore(path) as s:
        run_id = _start(s)
        with pytest.raises(StoreError, match="binding"):
            s.finish_run(run_id, dataclasses.replace(finished, epochs=(first, unwritable)))
        run = s.get_run(run_id)
    assert run.status == "running"
    assert run.test_accuracy is None
    assert _raw(path).execute("SELECT count(*) FROM run_epochs").fetchone()[0] == 0


def test_history_seconds_per_step_is_median_of_matching_runs(path: Path) -> None:
    config = RunConfig(hidden=(64,), batch_size=100, epochs=2)  # 2 * 600 steps
    with ResultsStore(path) as s:
        assert s.history_seconds_per_step(config, "cpu") is None
        for seconds in (12.0, 24.0, 36.0):
            s.finish_run(_start(s, config), _finished(train_time_s=seconds))
        s.finish_run(_start(s, RunConfig(hidden=(32,), batch_size=100, epochs=2)), _finished())
        s.finish_run(_start(s, config, device="cuda"), _finished(train_time_s=1.0))
        s.finish_run(_start(s, config), _finished(RunStatus.FAILED, train_time_s=1.0))
        _start(s, config)
        assert s.history_seconds_per_step(config, "cpu") == pytest.approx(0.02)
        other_epochs = RunConfig(hidden=(64,), batch_size=100, epochs=5, lr=0.1)
        assert s.history_seconds_per_step(other_epochs, "cpu") == pytest.approx(0.02)


# --- leases: a dead writer is seen anywhere, by readers without writing ---------------------------


class Clock:
    """Seconds since the epoch, set by the test."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _raw_status(path: Path, run_id: int) -> str:
    with _raw(path) as conn:
        return str(conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0])


def _run_on_another_host(path: Path, clock: Clock) -> int:
    with ResultsStore(path, clock=clock) as s:
        run_id = s.start_run(RunConfig(), StartColumns(device_name="cpu", params=1), lease_s=LEASE_SECONDS)
    with _raw(path) as conn:  # its writer runs on node042, whose pids mean nothing here
        conn.execute("UPDATE runs SET hostname = 'node042', pid = 1 WHERE id = ?", (run_id,))
    return run_id


def test_a_running_row_of_another_host_is_running_while_its_lease_lasts(path: Path) -> None:
    clock = Clock()
    run_id = _run_on_another_host(path, clock)
    clock.now += LEASE_SECONDS - 1
    with ResultsStore.open_existing(path, clock=clock) as reader:
        assert reader.get_run(run_id).status == "running"
    with ResultsStore(path, clock=clock) as writer:
        assert writer.get_run(run_id).status == "running"
    assert _raw_status(path, run_id) == "running"


def test_readers_show_an_expired_lease_of_another_host_as_interrupted_without_writing(path: Path) -> None:
    clock = Clock()
    run_id = _run_on_another_host(path, clock)
    clock.now += LEASE_SECONDS + 1
    with ResultsStore.open_existing(path, clock=clock) as reader:
        run = reader.get_run(run_id)
        [listed] = reader.list_runs()
    assert run.status == listed.status == "interrupted"
    assert "node042" in run.message and "lease" in run.message
    assert _raw_status(path, run_id) == "running"  # nothing written by the reader


def test_the_next_writer_records_an_expired_lease_as_interrupted(path: Path) -> None:
    clock = Clock()
    run_id = _run_on_another_host(path, clock)
    clock.now += LEASE_SECONDS + 1
    ResultsStore(path, clock=clock).close()
    assert _raw_status(path, run_id) == "interrupted"
    with ResultsStore.open_existing(path, clock=clock) as reader:
        run = reader.get_run(run_id)
    assert run.finished_at == clock.now and "node042" in run.message


def test_a_finished_epoch_and_a_heartbeat_renew_the_lease(path: Path) -> None:
    clock = Clock()
    run_id = _run_on_another_host(path, clock)
    with ResultsStore(path, clock=clock) as writer:
        clock.now += LEASE_SECONDS - 1
        writer.record_epoch(run_id, EpochEnd(1, train_loss=0.5, train_accuracy=80.0, test_accuracy=79.0, seconds=1.0))
        clock.now += LEASE_SECONDS - 1
        writer.renew_lease(run_id, clock.now + LEASE_SECONDS)
        clock.now += LEASE_SECONDS - 1
    with ResultsStore.open_existing(path, clock=clock) as reader:
        run = reader.get_run(run_id)
    assert run.status == "running"
    assert [e.epoch for e in run.epochs] == [1] and run.test_accuracy == 79.0


def test_each_epoch_is_committed_when_it_ends(path: Path) -> None:
    with ResultsStore(path) as writer:
        run_id = _start(writer)
        writer.record_epoch(run_id, EpochEnd(1, train_loss=0.5, train_accuracy=80.0, test_accuracy=79.0, seconds=1.0))
        with _raw(path) as other:  # another process's view, while the writer is still open
            rows = other.execute("SELECT epoch, test_accuracy FROM run_epochs WHERE run_id = ?", (run_id,)).fetchall()
    assert rows == [(1, 79.0)]


def test_the_heartbeat_renews_with_its_clock_and_survives_a_failed_renewal() -> None:
    clock = Clock(100.0)
    renewals: list[float] = []
    errors: list[Exception] = []

    def renew(expiry: float) -> None:
        if not renewals and not errors:
            raise StoreError("results store x: database is locked")
        renewals.append(expiry)

    beat = Heartbeat(renew, lease_s=90.0, clock=clock, on_error=errors.append)
    beat.beat()
    clock.now = 115.0
    beat.beat()
    assert [str(e) for e in errors] == ["results store x: database is locked"]
    assert renewals == [205.0]


def test_the_heartbeat_thread_renews_until_stopped() -> None:
    renewed = threading.Event()
    count = 0

    def renew(expiry: float) -> None:
        nonlocal count
        count += 1
        if count >= 3:
            renewed.set()

    beat = Heartbeat(renew, interval_s=0.001).start()
    try:
        assert renewed.wait(timeout=60), "the heartbeat did not renew three times"
    finally:
        beat.stop()
    stopped_at = count
    assert not any(t.name == "lease-heartbeat" for t in threading.enumerate())
    assert count == stopped_at


# --- reading changes nothing; bad paths and files are refused before any change ------------------


def test_open_existing_on_a_missing_path_says_no_store_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "runs.sqlite3"
    with pytest.raises(StoreError, match=f"no store at {missing}"):
        ResultsStore.open_existing(missing)
    assert not missing.parent.exists()


def test_reading_a_store_leaves_its_files_as_they_were(path: Path) -> None:
    with ResultsStore(path) as s:
        run_id = _start(s)
    _raw(path).execute("UPDATE runs SET pid = ? WHERE id = ?", (_dead_pid(), run_id))
    files = sorted(path.parent.iterdir())
    # The database and its write-ahead log; -shm is SQLite's shared-memory index, which every reader
    # of a WAL file uses to coordinate (it holds no data).
    data = [p for p in files if not p.name.endswith("-shm")]
    before = {p: p.read_bytes() for p in data}
    with ResultsStore.open_existing(path) as reader:
        assert reader.get_run(run_id).status == "interrupted"  # shown so...
    assert sorted(path.parent.iterdir()) == files
    assert {p: p.read_bytes() for p in data} == before  # ...but not written
    assert _raw_status(path, run_id) == "running"


@pytest.mark.parametrize("opener", ["writer", "reader"])
def test_a_foreign_sqlite_file_is_refused_before_any_change(tmp_path: Path, opener: str) -> None:
    foreign = tmp_path / "invoices.db"
    with _raw(foreign) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
        conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
    before = foreign.read_bytes()
    with pytest.raises(StoreError, match="not a tuner-tui results store"):
        ResultsStore(foreign) if opener == "writer" else ResultsStore.open_existing(foreign)
    assert foreign.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["invoices.db"]  # no -wal, no -shm
    with _raw(foreign) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


@pytest.mark.parametrize("name", [":memory:", "file::memory:?cache=shared", "", "  "])
def test_a_store_that_is_not_a_file_path_is_refused(name: str) -> None:
    with pytest.raises(StoreError, match="must be a file path"):
        ResultsStore(name)


def test_a_store_from_an_older_version_is_not_upgraded_by_a_reader(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with _raw(path) as conn:
        store_schema.MIGRATIONS[0](conn)
        conn.execute("PRAGMA user_version = 1")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="older tuner-tui"):
        ResultsStore.open_existing(path)
    assert path.read_bytes() == before


# --- a row this version cannot read is shown, never breaks the rest ------------------------------


def _damage(path: Path, run_id: int, config: str) -> None:
    with _raw(path) as conn:
        conn.execute("UPDATE runs SET config = ? WHERE id = ?", (config, run_id))


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ("{not json", "JSONDecodeError"),
        (json.dumps({**RunConfig().to_dict(), "optimizer": "adam"}), "optimizer"),  # a newer version's field
        (json.dumps({**RunConfig().to_dict(), "engine": "quantum"}), "engine"),
    ],
    ids=["not-json", "newer-field", "unknown-value"],
)
def test_an_unreadable_row_is_listed_apart_and_the_rest_are_read(path: Path, config: str, reason: str) -> None:
    with ResultsStore(path) as s:
        good, bad, other = (_start(s) for _ in range(3))
        s.finish_run(good, _finished())
    _damage(path, bad, config)
    with ResultsStore.open_existing(path) as reader:
        assert [r.id for r in reader.list_runs()] == [other, good]
        [unreadable] = reader.list_unreadable()
        with pytest.raises(KeyError):
            reader.get_run(bad)
    assert unreadable.id == bad and reason in unreadable.reason and "\n" not in unreadable.reason


FOREIGN_RUNS_TABLES = {
    1: "CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT, started_at REAL)",
    2: "CREATE TABLE runs (id INTEGER PRIMARY KEY, status TEXT, config TEXT)",
}


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("opener", ["writer", "reader"])
def test_a_foreign_file_with_a_runs_table_and_our_version_number_is_refused_untouched(
    tmp_path: Path, version: int, opener: str
) -> None:
    """Another program's database that happens to have a `runs` table and user_version 1 or 2."""
    foreign = tmp_path / "experiments.db"
    with _raw(foreign) as conn:
        conn.execute(FOREIGN_RUNS_TABLES[version])
        conn.execute("INSERT INTO runs (id) VALUES (1)")
        conn.execute(f"PRAGMA user_version = {version}")
    before = foreign.read_bytes()
    with pytest.raises(StoreError) as refused:
        ResultsStore(foreign) if opener == "writer" else ResultsStore.open_existing(foreign)
    assert "not a tuner-tui results store" in str(refused.value)
    assert "open it" not in str(refused.value) and "upgrade" not in str(refused.value)
    assert foreign.read_bytes() == before
    assert not Path(f"{foreign}-wal").exists()
    with _raw(foreign) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version


def test_the_cli_refuses_a_foreign_file_as_a_store_in_one_line(tmp_path: Path, capsys) -> None:
    from tuner_tui.cli import main

    foreign = tmp_path / "experiments.db"
    with _raw(foreign) as conn:
        conn.execute(FOREIGN_RUNS_TABLES[1])
        conn.execute("PRAGMA user_version = 1")
    before = foreign.read_bytes()
    for command in (["runs"], ["report"], ["sweeps"]):
        assert main([*command, "--store", str(foreign)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a tuner-tui results store" in err
    assert foreign.read_bytes() == before


def test_an_older_store_of_ours_is_still_upgraded_by_a_writer(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with _raw(path) as conn:
        for migration in store_schema.MIGRATIONS[:2]:
            migration(conn)
        conn.execute("PRAGMA user_version = 2")
        conn.execute(
            "INSERT INTO runs (status, config, dataset, device_name, started_at, hostname, pid, params) "
            "VALUES ('completed', '{}', 'fmnist', 'CPU', 1.0, 'h', 1, 10)"
        )
    with ResultsStore(path) as upgraded:
        assert len(upgraded.list_runs()) == 1
    assert _raw(path).execute("PRAGMA user_version").fetchone()[0] == len(store_schema.MIGRATIONS)
