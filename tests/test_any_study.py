"""Any Optuna study, made by plain Optuna code (tests/optuna_studies.py) in an SQLite file, a journal
file or PostgreSQL, read by tuner-tui: summaries, listings, importances and `sweep show`; reading is
read-only (a file's hash, a schema's rows unchanged) and never blocks a writer; `sweep export` copies
a study into SQLite, which optuna-dashboard opens, as it opens tuner-tui's own default storage.

PostgreSQL tests skip without $TUNER_TUI_TEST_POSTGRES_URL and fail without it under CI=true. Every
wait has a deadline; no timing is asserted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from tests.conftest import on_ci, require
from tests.optuna_studies import (
    DIRECTIONS,
    LOG_PARAMS,
    METRIC_NAMES,
    MULTI,
    PARAMS,
    SINGLE,
    SINGLE_PLAN,
    STUDY_ATTRS,
    optuna_rows,
    plain_storage,
    postgres_schema,
    single_objective,
    two_objectives,
)
from tests.support import run_cli, wait_for, write_spec
from tuner_tui.engine.events import RunStatus
from tuner_tui.sweeps.locations import default_storage_url
from tuner_tui.sweeps.spec import sweep_name_problem
from tuner_tui.sweeps.study import load_study
from tuner_tui.sweeps.study_listing import list_studies
from tuner_tui.sweeps.summary import importances, load_summary

REPO = Path(__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT_S = 300  # generous: CI is a loaded 2-core machine
WRITER_TRIALS = 5
SERVER_TIMEOUT_S = 60
STATES = {"complete": RunStatus.COMPLETED, "pruned": RunStatus.PRUNED, "fail": RunStatus.FAILED,
          "running": RunStatus.RUNNING}


@pytest.fixture(params=["sqlite", "journal", pytest.param("postgresql", marks=pytest.mark.requires("postgresql"))])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty storage of each kind, as its URL (PostgreSQL: a schema of its own, dropped after)."""
    folder = tmp_path / "storage"  # its own folder: reading must add no file beside the study's
    folder.mkdir()
    if request.param == "sqlite":
        yield f"sqlite:///{folder / 'studies.db'}"
    elif request.param == "journal":
        yield f"journal:{folder / 'studies.journal'}"
    else:
        with postgres_schema(str(require("postgresql"))) as url:
            yield url


@pytest.fixture
def studies(storage: str) -> str:
    """The storage holding both plain studies."""
    single_objective(storage)
    two_objectives(storage)
    return storage


def plain_study(url: str, name: str) -> optuna.Study:
    """The study as plain Optuna reads it: what tuner-tui must show."""
    return optuna.load_study(study_name=name, storage=plain_storage(url))


def show(url: str, name: str, env: dict[str, str], *options: str) -> str:
    """`tuner-tui sweep show NAME --storage URL` in a child process; its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "tuner_tui", "sweep", "show", name, "--storage", url, *options],
        capture_output=True, text=True, env={**os.environ, **env}, cwd=REPO, timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def storage_state(url: str) -> object:
    """What reading must leave as it was: a file's hash and its folder's names, or a schema's rows."""
    if url.startswith(("sqlite:///", "journal:")):
        path = Path(url.removeprefix("sqlite:///").removeprefix("journal:"))
        return hashlib.sha256(path.read_bytes()).hexdigest(), sorted(os.listdir(path.parent))
    return optuna_rows(url)


# --- reading any study ------------------------------------------------------------------------------


def test_a_plain_study_reads_with_every_state_value_parameter_and_attribute(studies: str) -> None:
    summary = load_summary(load_study(SINGLE, studies))
    plain = {t.number: t for t in plain_study(studies, SINGLE).trials}
    assert summary.directions == ("minimize",) and summary.budget is None and summary.spec_name is None
    assert Counter(t.status for t in summary.trials) == Counter(STATES[state] for state in SINGLE_PLAN)
    for row in summary.trials:
        trial = plain[row.number]
        assert row.status is STATES[SINGLE_PLAN[row.number]]
        assert row.params == trial.params and set(row.params) == set(PARAMS)
        assert row.intermediate == trial.intermediate_values
        assert row.user_attrs == trial.user_attrs == {"note": f"trial {row.number}",
                                                      "tags": ["plain", SINGLE_PLAN[row.number]]}
        assert row.values == (tuple(trial.values) if row.status is RunStatus.COMPLETED else None)
        assert row.run_uid is None
    [running] = [t for t in summary.trials if t.status is RunStatus.RUNNING]
    assert running.state == "running" and running.finished_at is None


def test_a_plain_study_keeps_each_parameters_distribution(studies: str) -> None:
    axes = {axis.name: axis for axis in load_summary(load_study(SINGLE, studies)).axes}
    assert set(axes) == set(PARAMS)
    assert {name for name, axis in axes.items() if axis.log} == set(LOG_PARAMS)
    assert axes["decay"].choices == (None, 0.01, "auto") and axes["bias"].choices == (True, False)
    assert axes["width"].choices == (32, 64, 128) and axes["units"].low == 16 and axes["units"].high == 128


def test_the_best_of_a_plain_study_is_optunas_best(studies: str) -> None:
    summary = load_summary(load_study(SINGLE, studies))
    best = plain_study(studies, SINGLE).best_trial
    assert [t.number for t in summary.pareto()] == [best.number]
    shown = summary.best()
    assert shown is not None and shown.value == best.value


def test_two_objectives_read_with_their_directions_names_and_pareto_front(studies: str) -> None:
    summary = load_summary(load_study(MULTI, studies))
    plain = plain_study(studies, MULTI)
    assert summary.directions == DIRECTIONS and summary.objectives == METRIC_NAMES
    assert [t.number for t in summary.pareto()] == sorted(t.number for t in plain.best_trials)
    assert {t.number: t.values for t in summary.pareto()} == {t.number: tuple(t.values) for t in plain.best_trials}
    assert summary.count(RunStatus.FAILED) == 1


def test_importances_cover_every_parameter_of_either_study(studies: str) -> None:
    for name in (SINGLE, MULTI):
        weights = importances(load_study(name, studies))
        assert weights is not None and set(weights) == set(PARAMS)
        assert sum(weights.values()) == pytest.approx(1.0)


def test_the_listing_has_both_studies_with_directions_states_and_best(studies: str) -> None:
    listings = {listing.name: listing for listing in list_studies(studies)}
    assert set(listings) == {SINGLE, MULTI}
    assert listings[SINGLE].directions == ("minimize",) and listings[MULTI].directions == DIRECTIONS
    assert listings[SINGLE].states == dict(Counter(SINGLE_PLAN))
    assert listings[SINGLE].best == plain_study(studies, SINGLE).best_value
    assert listings[MULTI].trials == len(plain_study(studies, MULTI).trials)


def test_sweep_show_json_has_the_directions_and_the_pareto_front(studies: str, isolated: dict[str, str]) -> None:
    shown = json.loads(show(studies, MULTI, isolated, "--json"))
    plain = sorted(plain_study(studies, MULTI).best_trials, key=lambda t: t.number)
    assert shown["directions"] == list(DIRECTIONS)
    assert shown["pareto"] == [{"number": t.number, "values": t.values, "params": t.params, "run_id": None}
                               for t in plain]
    single = json.loads(show(studies, SINGLE, isolated, "--json"))
    best = plain_study(studies, SINGLE).best_trial
    assert single["directions"] == ["minimize"]
    assert single["pareto"] == [{"number": best.number, "values": best.values, "params": best.params,
                                 "run_id": None}]


def test_sweep_show_of_two_objectives_says_the_directions_and_lists_the_front(
    studies: str, isolated: dict[str, str]
) -> None:
    out = show(studies, MULTI, isolated)
    assert "objectives accuracy (maximize), seconds (minimize)" in out
    front = out.split("Pareto front", 1)[1].split("top trials", 1)[0]
    numbers = [line.split()[0] for line in front.splitlines() if line.strip()[:1].isdigit()]
    assert numbers == [str(t.number) for t in sorted(plain_study(studies, MULTI).best_trials, key=lambda t: t.number)]


# --- read-only ------------------------------------------------------------------------------------


def test_reading_leaves_the_storage_as_it_was(studies: str, tmp_path: Path, isolated: dict[str, str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    before = storage_state(studies)
    for name in (SINGLE, MULTI):
        study = load_study(name, studies)
        load_summary(study)
        importances(study)
        for options in ((), ("--json",)):
            assert run_cli(capsys, "sweep", "show", name, "--storage", studies, *options)[0] == 0
        assert run_cli(capsys, "sweep", "export", name, "--storage", studies, "--sqlite",
                       str(tmp_path / "copy" / "studies.db"))[0] == 0
    list_studies(studies)
    assert storage_state(studies) == before


def test_a_reader_never_blocks_a_writer(studies: str) -> None:
    reads: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            held = load_study(SINGLE, studies)  # open for the whole test, read again and again
            while not stop.is_set():
                reads.append(len(load_summary(held).trials))
                reads.append(len(load_summary(load_study(SINGLE, studies)).trials))
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: reads or errors, SUBPROCESS_TIMEOUT_S, "the reader's first read")
        writer = subprocess.run(
            [sys.executable, "-m", "tests.optuna_studies", studies, SINGLE, str(WRITER_TRIALS)],
            capture_output=True, text=True, cwd=REPO, timeout=SUBPROCESS_TIMEOUT_S, check=False,
        )
    finally:
        stop.set()
        reader.join(timeout=SUBPROCESS_TIMEOUT_S)
    assert not reader.is_alive() and errors == []
    assert writer.returncode == 0, writer.stderr
    assert len(plain_study(studies, SINGLE).trials) == len(SINGLE_PLAN) + WRITER_TRIALS
    assert len(load_summary(load_study(SINGLE, studies)).trials) == len(SINGLE_PLAN) + WRITER_TRIALS


# --- export ---------------------------------------------------------------------------------------


def test_export_copies_a_study_into_an_sqlite_file_optuna_opens(
    studies: str, tmp_path: Path, isolated: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "exported.db"
    for name in (SINGLE, MULTI):
        code, out, _ = run_cli(capsys, "sweep", "export", name, "--storage", studies, "--sqlite", str(path))
        assert code == 0 and str(path) in out and f"optuna-dashboard sqlite:///{path}" in out
        source, copy = plain_study(studies, name), plain_study(f"sqlite:///{path}", name)
        assert copy.directions == source.directions and copy.user_attrs == source.user_attrs
        assert copy.metric_names == source.metric_names
        assert [_trial(t) for t in copy.trials] == [_trial(t) for t in source.trials]
    assert plain_study(f"sqlite:///{path}", SINGLE).user_attrs == STUDY_ATTRS


def _trial(trial: optuna.trial.FrozenTrial) -> tuple[Any, ...]:
    return (trial.number, trial.state, trial.values, trial.params, trial.intermediate_values, trial.user_attrs)


def test_export_refuses_a_study_already_in_the_file(
    studies: str, tmp_path: Path, isolated: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "exported.db"
    assert run_cli(capsys, "sweep", "export", SINGLE, "--storage", studies, "--sqlite", str(path))[0] == 0
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    code, out, err = run_cli(capsys, "sweep", "export", SINGLE, "--storage", studies, "--sqlite", str(path))
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "already has a study named" in err
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_export_of_an_unknown_study_writes_nothing(
    tmp_path: Path, isolated: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"journal:{tmp_path / 'studies.journal'}"
    single_objective(url)
    path = tmp_path / "exported.db"
    code, _, err = run_cli(capsys, "sweep", "export", "nope", "--storage", url, "--sqlite", str(path))
    assert code == 2 and "no sweep named 'nope'" in err and not path.exists()


def test_export_needs_its_file_and_sqlite_needs_export(isolated: dict[str, str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "sweep", "export", SINGLE)[0] == 2
    code, _, err = run_cli(capsys, "sweep", "show", SINGLE, "--sqlite", "x.db")
    assert code == 2 and "--sqlite goes with" in err


def test_export_is_not_a_sweep_name() -> None:
    assert sweep_name_problem("export") is not None


# --- optuna-dashboard -----------------------------------------------------------------------------


def dashboard_command() -> str:
    """optuna-dashboard (the test extra installs it): skipped when absent, failed under CI=true."""
    found = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) or shutil.which("optuna-dashboard")
    if found is None:
        why = "optuna-dashboard is not installed (pip install -e '.[test]')"
        if on_ci():
            pytest.fail(f"CI=true and {why}", pytrace=False)
        pytest.skip(why)
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=SERVER_TIMEOUT_S) as response:
        return json.load(response)


def dashboard_study(storage_url: str, name: str) -> dict[str, Any]:
    """Start optuna-dashboard over `storage_url` on localhost and read study `name` through its HTTP
    API (its listing, then its detail with the trials); the server is stopped after."""
    port = free_port()
    server = subprocess.Popen(
        [dashboard_command(), storage_url, "--host", "127.0.0.1", "--port", str(port), "--server", "wsgiref",
         "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert server.poll() is None, f"optuna-dashboard exited: {server.communicate()[1]}"
        try:
            get_json(f"{base}/api/meta")
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    try:
        wait_for(answers, SERVER_TIMEOUT_S, "optuna-dashboard to answer", poll=0.2)
        listed = {s["study_name"]: s for s in get_json(f"{base}/api/studies")["study_summaries"]}
        assert name in listed, f"optuna-dashboard lists {sorted(listed)}"
        detail: dict[str, Any] = get_json(f"{base}/api/studies/{listed[name]['study_id']}")
        return detail
    finally:
        server.terminate()
        try:
            server.wait(timeout=SERVER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=SERVER_TIMEOUT_S)


def test_optuna_dashboard_shows_an_exported_study_and_its_trials(
    tmp_path: Path, isolated: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    journal = f"journal:{tmp_path / 'studies.journal'}"
    two_objectives(journal)
    path = tmp_path / "exported.db"
    assert run_cli(capsys, "sweep", "export", MULTI, "--storage", journal, "--sqlite", str(path))[0] == 0
    detail = dashboard_study(f"sqlite:///{path}", MULTI)
    source = plain_study(journal, MULTI)
    assert detail["directions"] == list(DIRECTIONS)
    assert [(t["number"], t["state"]) for t in detail["trials"]] == [
        (t.number, t.state.name.capitalize()) for t in source.trials]
    assert sorted(t["number"] for t in detail["best_trials"]) == sorted(t.number for t in source.best_trials)


def test_optuna_dashboard_shows_a_tuner_tui_sweep_in_its_default_storage(
    tmp_path: Path, isolated: dict[str, str], tiny_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "specs", trials=2, epochs=1)
    code, _, err = run_cli(capsys, "sweep", str(spec), "--no-ui", "--workers", "1", "--data-root", str(tiny_fmnist))
    assert code == 0, err
    url = default_storage_url(Path(isolated["TUNER_TUI_STORE"]))
    detail = dashboard_study(url, "tiny")
    assert detail["directions"] == ["maximize"]
    assert len(detail["trials"]) == 2 and all(t["state"] in ("Complete", "Pruned") for t in detail["trials"])
    assert {p["name"] for t in detail["trials"] for p in t["params"]} == {"lr", "batch_size"}
