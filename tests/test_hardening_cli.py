"""Faults and odd input that once ended in a traceback or touched what a read must not: each ends in
one line with the right exit code, and nothing changes that should not."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from tests.sweep_script import write_tiny_spec
from tuner_tui.cli import main
from tuner_tui.sweeps.spec import user_specs_dir

TIMEOUT_S = 300.0


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- a study storage that fails mid-sweep ---------------------------------------------------------


def test_a_study_storage_deleted_mid_sweep_is_one_line_and_exit_1(
    isolated: dict[str, str], tiny_fmnist: Path, tmp_path: Path
) -> None:
    spec = write_tiny_spec(user_specs_dir(), trials=200)
    folder = tmp_path / "shared" / "sweep"
    folder.mkdir(parents=True)
    env = {**os.environ, **isolated, "TUNER_TUI_DATA": str(tiny_fmnist)}
    sweep = subprocess.Popen(
        [sys.executable, "-m", "tuner_tui", "sweep", str(spec), "--no-ui", "--workers", "1",
         "--storage", f"journal:{folder / 'study.journal'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(sweep.stderr or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not any(": completed after" in line or ": pruned after" in line for line in lines):
            assert sweep.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "no trial ended"
            time.sleep(0.1)
        shutil.rmtree(folder.parent)  # the shared folder is gone (unmounted, deleted)
        code = sweep.wait(timeout=TIMEOUT_S)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    reader.join(timeout=10)
    errors = [line for line in lines if line.startswith("tuner-tui: error:")]
    assert code == 1, "".join(lines)
    assert "Traceback" not in "".join(lines)
    assert len(errors) == 1 and "study storage journal:" in errors[0] and "the sweep stopped" in errors[0]


# --- a terminal that cannot show every character --------------------------------------------------


@pytest.mark.parametrize("command", [["presets"], ["runs"], ["sweeps"], ["--no-ui", "--set", "hidden=8",
                                                                         "--set", "epochs=1", "--device", "cpu"]])
def test_an_ascii_terminal_gets_escaped_characters_not_a_traceback(
    isolated: dict[str, str], tiny_fmnist: Path, command: list[str]
) -> None:
    env = {**os.environ, **isolated, "TUNER_TUI_DATA": str(tiny_fmnist), "PYTHONIOENCODING": "ascii"}
    subprocess.run([sys.executable, "-m", "tuner_tui", "--no-ui", "--set", "epochs=1", "--set", "hidden=8"],
                   env=env, capture_output=True, timeout=TIMEOUT_S, check=False)  # a run to list
    done = subprocess.run([sys.executable, "-m", "tuner_tui", *command], env=env, capture_output=True,
                          timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr.decode("ascii", "replace")
    assert b"Traceback" not in done.stderr and b"UnicodeEncodeError" not in done.stderr
    done.stdout.decode("ascii")  # nothing but ASCII reached the stream


# --- what reads show and what they leave alone ------------------------------------------------------


def test_a_study_name_with_escape_sequences_is_shown_as_text(
    isolated: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    study = optuna.create_study(study_name="evil\x1b[2J\x1b[31mred", storage=url)
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    assert main(["sweeps", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "evil\ufffd[2J\ufffd[31mred" in out
    assert main(["sweep", "show", "evil\x1b[2J\x1b[31mred", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "evil\ufffd[2J" in out


@pytest.mark.parametrize("kind", ["sqlite", "journal", "bare journal path"])
def test_reading_a_storage_that_is_not_there_creates_nothing(
    isolated: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    target = tmp_path / "new" / "folder" / ("study.db" if kind == "sqlite" else "study.journal")
    storage = {"sqlite": f"sqlite:///{target}", "journal": f"journal:{target}", "bare journal path": str(target)}[kind]
    for command in (["sweeps"], ["sweep", "show", "any"]):
        assert main([*command, "--storage", storage]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no" in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_reading_an_existing_study_leaves_its_file_byte_for_byte(
    isolated: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    if kind == "sqlite":
        path = tmp_path / "study.db"
        url = f"sqlite:///{path}"
        storage: optuna.storages.BaseStorage | str = url
    else:
        path = tmp_path / "study.journal"
        url = f"journal:{path}"
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="plain", storage=storage, direction="minimize")
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=3)
    before = sorted(os.listdir(tmp_path)), _digest(path)
    assert main(["sweeps", "--storage", url]) == 0
    assert main(["sweep", "show", "plain", "--storage", url, "--json"]) == 0
    capsys.readouterr()
    assert (sorted(os.listdir(tmp_path)), _digest(path)) == before


@pytest.mark.requires("postgresql")
def test_reading_an_empty_postgresql_database_creates_no_tables(
    isolated: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlalchemy

    from tests.conftest import require
    from tuner_tui.sweeps.storages import with_driver

    url = str(require("postgresql"))
    engine = sqlalchemy.create_engine(with_driver(url))
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE SCHEMA IF NOT EXISTS empty_for_reads"))
    reading = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3Dempty_for_reads"

    def tables() -> set[str]:
        return set(sqlalchemy.inspect(engine).get_table_names(schema="empty_for_reads"))

    try:
        assert tables() == set()
        main(["sweeps", "--storage", reading])
        main(["sweep", "show", "any", "--storage", reading])
        capsys.readouterr()
        assert tables() == set()
    finally:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("DROP SCHEMA empty_for_reads CASCADE"))
        engine.dispose()


def test_a_postgresql_password_is_never_echoed(isolated: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://tuner:s3cret-pa55@127.0.0.1:9/nowhere"
    for command in (["sweeps"], ["sweep", "show", "x"], ["sweep", "fmnist_search", "--no-ui"]):
        assert main([*command, "--storage", url]) == 2
        err = capsys.readouterr().err
        assert "s3cret-pa55" not in err and "***" in err and err.count("\n") == 1


# --- files that are not files ------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["preset", "spec"])
def test_a_fifo_given_as_a_preset_or_spec_is_refused_not_waited_on(
    isolated: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    fifo = tmp_path / "named-pipe.toml"
    os.mkfifo(fifo)
    argv = ["--preset", str(fifo), "--no-ui"] if where == "preset" else ["sweep", str(fifo), "--no-ui"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a regular file (a FIFO)" in err


@pytest.mark.timeout(60)
def test_a_link_to_dev_zero_given_as_a_preset_is_refused(
    isolated: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "zero.toml"
    link.symlink_to("/dev/zero")
    assert main(["--preset", str(link), "--no-ui"]) == 2
    assert "not a regular file (a character device)" in capsys.readouterr().err
