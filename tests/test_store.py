"""The results store: round trips, migrations, crash recovery, many writers, bad paths."""

from __future__ import annotations

import os
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.events import EpochEnd, Finished, Resources, RunStatus
from tuner_tui.runs import store
from tuner_tui.runs.store import ResultsStore, StoreError, default_store_path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _start(s: ResultsStore, config: RunConfig | None = None, device: str = "cpu") -> int:
    return s.start_run(
        config or RunConfig(),
        device_name=device,
        params=203_530,
        estimated_memory_bytes=1_000_000,
        estimated_time_s=12.5,
        data_source="/data/fmnist",
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
        worker.join()
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
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store.MIGRATIONS)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "run_epochs"} <= tables


def test_reopening_is_idempotent_and_keeps_runs(path: Path) -> None:
    with ResultsStore(path) as s:
        run_id = _start(s)
    with ResultsStore(path) as s:
        assert [r.id for r in s.list_runs()] == [run_id]
    assert _raw(path).execute("PRAGMA user_version").fetchone()[0] == len(store.MIGRATIONS)


def test_appended_migration_runs_once(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ResultsStore(path) as s:
        run_id = _start(s)
    calls = []

    def add_notes(conn: sqlite3.Connection) -> None:
        calls.append(1)
        conn.execute("ALTER TABLE runs ADD COLUMN notes TEXT")

    monkeypatch.setattr(store, "MIGRATIONS", [*store.MIGRATIONS, add_notes])
    ResultsStore(path).close()
    ResultsStore(path).close()
    conn = _raw(path)
    assert calls == [1]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store.MIGRATIONS)
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
    child.wait()
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


WRITER = textwrap.dedent(
    """
    import sys
    from engine.config import RunConfig
    from engine.events import Finished, Resources, RunStatus
    from tuner_tui.runs.store import ResultsStore

    with ResultsStore(sys.argv[1]) as s:
        for i in range(25):
            run_id = s.start_run(RunConfig(seed=i), device_name="cpu", params=1,
                                 estimated_memory_bytes=None, estimated_time_s=None,
                                 data_source=None)
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


def test_finish_run_is_all_or_nothing(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_row = store._epoch_row

    def failing_row(run_id: int, epoch: EpochEnd):
        if epoch.epoch > 1:
            raise RuntimeError("disk on fire")
        return real_row(run_id, epoch)

    with ResultsStore(path) as s:
        run_id = _start(s)
        monkeypatch.setattr(store, "_epoch_row", failing_row)
        with pytest.raises(RuntimeError, match="disk on fire"):
            s.finish_run(run_id, _finished())
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
