"""The `tuner-tui` command line's specification: headless runs (text and `--json`), the `runs`,
`presets` and `report` subcommands, and the exit codes (0 completed, 1 diverged or failed,
2 bad input with one line on stderr and the store untouched). Signals and other faults: test_faults.py.

Most tests call `tuner_tui.cli.main` in-process; a few run the module in a subprocess to see the
real exit code and stderr. Every test gets its own config, cache and store paths; datasets come
only from a tiny Fashion-MNIST in the real IDX format (tests/datafiles.py; no download, no Debian copy).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.datafiles import write_idx_dataset
from tuner_tui.cli import main
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import EpochEnd, Finished, Resources, RunStatus
from tuner_tui.runs.records import RunLabels, RunRecord, StartColumns
from tuner_tui.runs.store import ResultsStore

TINY_TRAIN, TINY_TEST = 600, 100
TINY_HIDDEN = 16
TINY_PARAMS = 784 * TINY_HIDDEN + TINY_HIDDEN + TINY_HIDDEN * 10 + 10
TINY = [
    "--set", "dataset=fmnist", "--set", f"hidden={TINY_HIDDEN}", "--set", "batch_size=20",
    "--set", "epochs=2", "--set", "device=cpu",
]
# lr at its maximum with three hidden layers collapses to chance within two epochs, whatever the seed.
DIVERGING = ["--set", "lr=10", "--set", "hidden=64,64,64", "--set", "chance_patience=2"]
SETTABLE_KEYS = (
    "dataset", "hidden", "lr", "batch_size", "epochs", "reg", "seed", "conventions", "engine", "device",
)
LAB_TITLES = (
    "layers", "lr", "batch", "epochs", "reg", "train acc", "train loss", "test acc", "params",
    "est. memory", "actual memory", "est. time", "actual time",
)
JSON_KEYS = {"run_id", "status", "config", "device", "metrics", "epochs"}
METRIC_KEYS = {
    "train_accuracy", "train_loss", "test_accuracy", "params", "estimated_memory_bytes",
    "peak_memory_bytes", "gpu_memory_bytes", "estimated_time_s", "train_time_s", "total_time_s", "train_ce",
}
EPOCH_KEYS = {
    "epoch", "train_loss", "train_ce", "train_accuracy", "test_accuracy", "val_loss", "val_accuracy", "seconds",
}
SHIPPED_PRESETS = (
    *(f"fmnist_exp{i}" for i in range(1, 11)), *(f"cifar_exp{i}" for i in range(1, 11)), "fmnist_quick",
)
HYPERPARAMETER_HEADER = ["run", "layers", "lr", "batch", "epochs", "reg", "train acc", "train loss", "test acc"]
RESOURCE_HEADER = ["run", "params", "est. memory", "actual memory", "est. time", "actual time"]
CSV_HEADER = [
    "run_id", "run", "dataset", "layers", "lr", "batch_size", "epochs", "reg", "train_accuracy_percent", "train_loss",
    "test_accuracy_percent", "params", "estimated_memory_bytes", "actual_memory_bytes", "estimated_time_s",
    "actual_time_s",
]
EPOCH_LINE = re.compile(r"^epoch (\d+): train loss ", re.MULTILINE)
SUBPROCESS_TIMEOUT_S = 60


# --- tiny data, isolation and helpers ---------------------------------------------------------


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny learnable Fashion-MNIST (`tests.datafiles`), shared by every test."""
    root = tmp_path_factory.mktemp("data")
    write_idx_dataset(root, train=TINY_TRAIN, test=TINY_TEST)
    return root


@pytest.fixture(autouse=True)
def isolated(isolated: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """conftest's per-test paths with datasets offline, and an 80-column, non-terminal console.
    Returns the environment for subprocesses."""
    monkeypatch.setenv("COLUMNS", "80")
    return {**isolated, "COLUMNS": "80"}


@pytest.fixture
def store_path(isolated: dict[str, str]) -> Path:
    return Path(isolated["TUNER_TUI_STORE"])


def stored_runs(path: Path) -> list[RunRecord]:
    """The runs in the store at `path`, newest first (the file must exist: opening creates it)."""
    assert path.is_file(), f"no store at {path}"
    with ResultsStore(path) as store:
        return store.list_runs()


def seed_run(path: Path, preset: str | None = None) -> int:
    """Write one completed run into the store at `path` directly; returns its id."""
    epoch = EpochEnd(epoch=1, train_loss=0.5, train_accuracy=80.0, test_accuracy=78.0, seconds=0.1)
    finished = Finished(
        status=RunStatus.COMPLETED, message="seeded", train_loss=0.5, train_accuracy=80.0,
        test_accuracy=78.0, params=TINY_PARAMS,
        resources=Resources(train_time_s=0.1, total_time_s=0.2, peak_rss_growth_bytes=4096),
        epochs=(epoch,), loss_curve=(0.9, 0.5),
    )
    with ResultsStore(path) as store:
        run_id = store.start_run(
            RunConfig(hidden=(TINY_HIDDEN,), epochs=1, device="cpu"),
            StartColumns(device_name="CPU", params=TINY_PARAMS, estimated_memory_bytes=1000, estimated_time_s=0.1,
                         data_source="seeded"),
            labels=RunLabels(preset=preset),
        )
        store.finish_run(run_id, finished)
    return run_id


@pytest.fixture
def seeded_store(store_path: Path) -> list[dict]:
    """The store holding one completed run, written directly; returns its runs as JSON objects."""
    seed_run(store_path)
    return [record.to_json() for record in stored_runs(store_path)]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`main(argv)` in-process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tiny_run(data_root: Path, *extra: str) -> list[str]:
    return ["--no-ui", *TINY, "--data-root", str(data_root), *extra]


def subprocess_env(isolated: dict[str, str], data_root: Path) -> dict[str, str]:
    return {**os.environ, **isolated, "TUNER_TUI_DATA": str(data_root), "PYTHONUNBUFFERED": "1"}


# --- headless runs --------------------------------------------------------------------------


def test_headless_run_prints_the_lab_columns_on_stdout(capsys, data_root: Path) -> None:
    code, out, _ = run_cli(capsys, *tiny_run(data_root))
    assert code == 0
    for title in LAB_TITLES:
        assert re.search(rf"│ {re.escape(title)} +│", out), f"no {title!r} row in:\n{out}"
    assert "784→16→10" in out
    assert f"{TINY_PARAMS:,}" in out
    assert not EPOCH_LINE.search(out)


def test_headless_run_prints_one_plain_line_per_epoch_on_stderr(capsys, data_root: Path) -> None:
    code, _, err = run_cli(capsys, *tiny_run(data_root))
    assert code == 0
    assert [int(n) for n in EPOCH_LINE.findall(err)] == [1, 2]
    assert "\x1b[" not in err  # stderr is not a terminal: no bar, no colour
    assert err.rstrip().splitlines()[-1].startswith("completed:")


def test_headless_run_stores_one_completed_run(capsys, data_root: Path, store_path: Path) -> None:
    code, _, _ = run_cli(capsys, *tiny_run(data_root))
    assert code == 0
    [record] = stored_runs(store_path)
    assert record.status == "completed"
    assert record.config.hidden == (TINY_HIDDEN,)
    assert [e.epoch for e in record.epochs] == [1, 2]


def test_json_prints_one_object_with_the_specified_keys(capsys, data_root: Path) -> None:
    code, out, _ = run_cli(capsys, *tiny_run(data_root, "--json"))
    assert code == 0
    assert len(out.strip().splitlines()) == 1
    run = json.loads(out)
    assert set(run) >= JSON_KEYS
    assert set(SETTABLE_KEYS) <= set(run["config"])
    assert set(run["metrics"]) == METRIC_KEYS
    assert all(set(epoch) == EPOCH_KEYS for epoch in run["epochs"])


def test_json_values_describe_the_run(capsys, data_root: Path, store_path: Path) -> None:
    code, out, _ = run_cli(capsys, *tiny_run(data_root, "--json", "--set", "lr=0.02", "--set", "seed=3"))
    assert code == 0
    run = json.loads(out)
    assert run["status"] == "completed"
    assert run["run_id"] == stored_runs(store_path)[0].id
    config = run["config"]
    assert (config["dataset"], config["hidden"], config["lr"], config["batch_size"]) == ("fmnist", [16], 0.02, 20)
    assert (config["epochs"], config["seed"], config["device"]) == (2, 3, "cpu")
    assert (config["reg"], config["conventions"], config["engine"]) == (0.0, "lab4", "native")
    assert run["device"].startswith("CPU")
    metrics = run["metrics"]
    assert metrics["params"] == TINY_PARAMS
    assert metrics["gpu_memory_bytes"] is None  # not applicable on the CPU
    assert metrics["estimated_memory_bytes"] > 0 and metrics["peak_memory_bytes"] > 0
    assert metrics["estimated_time_s"] >= 0 and 0 < metrics["train_time_s"] <= metrics["total_time_s"]
    assert metrics["train_loss"] > 0


def test_json_accuracies_are_in_percent(capsys, data_root: Path) -> None:
    code, out, _ = run_cli(capsys, *tiny_run(data_root, "--json"))
    assert code == 0
    run = json.loads(out)
    epochs = run["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    accuracies = [run["metrics"]["train_accuracy"], run["metrics"]["test_accuracy"]]
    accuracies += [e[key] for e in epochs for key in ("train_accuracy", "test_accuracy")]
    assert all(0 <= a <= 100 for a in accuracies)
    # The learnable tiny data is well above chance after two epochs: a fraction would be ≤ 1.
    assert run["metrics"]["train_accuracy"] > 20 and run["metrics"]["test_accuracy"] > 20
    assert run["metrics"]["test_accuracy"] == epochs[-1]["test_accuracy"]
    assert run["metrics"]["train_accuracy"] == epochs[-1]["train_accuracy"]


def test_json_without_no_ui_is_bad_input(capsys, data_root: Path) -> None:
    code, out, err = run_cli(capsys, "--json", *TINY, "--data-root", str(data_root))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "--no-ui" in err


def test_preset_by_name_with_set_overrides(capsys, data_root: Path) -> None:
    code, out, _ = run_cli(
        capsys, "--no-ui", "--json", "--preset", "fmnist_quick", "--set", "hidden=16",
        "--device", "cpu", "--data-root", str(data_root),
    )
    assert code == 0
    config = json.loads(out)["config"]
    assert (config["batch_size"], config["epochs"], config["lr"]) == (100, 1, 0.01)  # from the preset
    assert (config["hidden"], config["device"]) == ([16], "cpu")  # from the command line


def test_preset_from_a_toml_file_path(capsys, tmp_path: Path, data_root: Path) -> None:
    preset = tmp_path / "elsewhere" / "tiny.toml"
    preset.parent.mkdir()
    preset.write_text(
        'dataset = "fmnist"\nhidden = [12, 8]\nlr = 0.03\nbatch_size = 25\nepochs = 1\n'
        'reg = 0.001\nseed = 4\ndevice = "cpu"\n'
    )
    code, out, _ = run_cli(capsys, "--no-ui", "--json", "--preset", str(preset), "--data-root", str(data_root))
    assert code == 0
    run = json.loads(out)
    assert run["status"] == "completed"
    config = run["config"]
    assert (config["hidden"], config["lr"], config["batch_size"], config["epochs"]) == ([12, 8], 0.03, 25, 1)
    assert (config["reg"], config["seed"]) == (0.001, 4)


# --- runs, report, presets ------------------------------------------------------------------


@pytest.fixture
def two_runs(capsys, data_root: Path) -> list[dict]:
    """Two tiny runs (seeds 1 and 2) made through the CLI; their `--json` objects, oldest first."""
    objects = []
    for seed in (1, 2):
        code, out, _ = run_cli(capsys, *tiny_run(data_root, "--json", "--set", f"seed={seed}"))
        assert code == 0
        objects.append(json.loads(out))
    return objects


def test_runs_lists_every_stored_run(capsys, two_runs: list[dict]) -> None:
    code, out, err = run_cli(capsys, "runs")
    assert code == 0 and err == ""
    lines = [line for line in out.splitlines() if "784→16→10" in line]
    assert len(lines) == 2
    assert all("completed" in line for line in lines)
    ids = [int(line.split()[0]) for line in lines]
    assert ids == [two_runs[1]["run_id"], two_runs[0]["run_id"]]  # newest first


def test_runs_json_limit_prints_the_newest_run_as_its_run_object(capsys, two_runs: list[dict]) -> None:
    code, out, _ = run_cli(capsys, "runs", "--json", "--limit", "1")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == two_runs[1]


def test_runs_json_prints_one_object_per_line(capsys, two_runs: list[dict]) -> None:
    code, out, _ = run_cli(capsys, "runs", "--json")
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [two_runs[1], two_runs[0]]


def test_runs_limit_below_one_is_bad_input(capsys, two_runs: list[dict]) -> None:
    code, out, err = run_cli(capsys, "runs", "--limit", "0")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--limit" in err


def test_report_markdown_prints_two_tables(capsys, two_runs: list[dict]) -> None:
    code, out, _ = run_cli(capsys, "report")
    assert code == 0
    first, second = out.split("## Resources")
    assert "## Hyperparameters and results" in first
    first_rows = [line for line in first.splitlines() if line.startswith("|")]
    second_rows = [line for line in second.splitlines() if line.startswith("|")]
    assert first_rows[0] == "| " + " | ".join(HYPERPARAMETER_HEADER) + " |"
    assert second_rows[0] == "| " + " | ".join(RESOURCE_HEADER) + " |"
    assert re.fullmatch(r"\|(:?-+:?\|)+", first_rows[1]) and re.fullmatch(r"\|(:?-+:?\|)+", second_rows[1])
    assert len(first_rows) == len(second_rows) == 2 + len(two_runs)
    assert all("784→16→10" in row for row in first_rows[2:])
    assert all(f"{TINY_PARAMS:,}" in row for row in second_rows[2:])


def test_report_csv_is_one_table_of_raw_numbers_in_base_units(capsys, two_runs: list[dict]) -> None:
    code, out, _ = run_cli(capsys, "report", "--format", "csv")
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))  # one header, then a row per run: nothing else
    assert len(table) == len(two_runs) and "" not in out.splitlines()
    assert list(table[0]) == CSV_HEADER
    for row, run in zip(table, two_runs, strict=True):  # oldest first, like the lab's tables
        metrics, config = run["metrics"], run["config"]
        assert int(row["run_id"]) == run["run_id"] and row["layers"] == "784→16→10"
        assert (float(row["lr"]), int(row["batch_size"]), int(row["epochs"])) == (config["lr"], 20, 2)
        assert float(row["train_accuracy_percent"]) == metrics["train_accuracy"]  # percent, as a number
        assert float(row["test_accuracy_percent"]) == metrics["test_accuracy"]
        assert float(row["train_loss"]) == metrics["train_loss"]
        assert int(row["params"]) == TINY_PARAMS
        assert int(row["estimated_memory_bytes"]) == metrics["estimated_memory_bytes"]  # bytes
        assert int(row["actual_memory_bytes"]) == metrics["peak_memory_bytes"]
        assert float(row["estimated_time_s"]) == metrics["estimated_time_s"]  # seconds
        assert float(row["actual_time_s"]) == metrics["train_time_s"]


def test_presets_lists_the_shipped_presets_on_a_wide_terminal(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0
    names = set(re.findall(r"[a-z]+_[a-z]+\d*", out))
    assert set(SHIPPED_PRESETS) <= names


def test_presets_lists_the_shipped_presets_at_80_columns(capsys) -> None:
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0
    names = set(re.findall(r"[a-z]+_[a-z]+\d*", out))
    assert set(SHIPPED_PRESETS) <= names


def test_presets_lists_a_saved_user_preset(capsys, monkeypatch, isolated: dict[str, str]) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    user = Path(isolated["TUNER_TUI_CONFIG_DIR"]) / "presets"
    user.mkdir(parents=True)
    (user / "my_tiny.toml").write_text('dataset = "fmnist"\nhidden = [16]\nepochs = 3\n')
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0
    assert re.search(r"my_tiny .*784→16→10", out)


# --- bad input ------------------------------------------------------------------------------

# Each case: (arguments given the tmp dir and the tiny data root, words the one stderr line names).
BadInputCase = Callable[[Path, Path], list[str]]


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


BAD_INPUT: dict[str, tuple[BadInputCase, tuple[str, ...]]] = {
    "unknown preset": (
        lambda tmp, data: ["--no-ui", "--preset", "fmnist_exp55", "--data-root", str(data)],
        ("fmnist_exp55", "fmnist_exp5"),
    ),
    "set value not a number": (
        lambda tmp, data: tiny_run(data, "--set", "lr=abc"), ("lr", "abc"),
    ),
    "set value out of range": (
        lambda tmp, data: tiny_run(data, "--set", "epochs=0"), ("epochs", "[1, 1000]"),
    ),
    "set unknown key": (
        lambda tmp, data: tiny_run(data, "--set", "bogus=1"), ("bogus",),
    ),
    "set without equals": (
        lambda tmp, data: tiny_run(data, "--set", "lr"), ("lr", "KEY=VALUE"),
    ),
    "malformed preset file": (
        lambda tmp, data: tiny_run(data, "--preset", _write(tmp / "broken.toml", "hidden = [16\n")),
        ("broken.toml", "TOML"),
    ),
    "preset file with unknown key": (
        lambda tmp, data: tiny_run(data, "--preset", _write(tmp / "odd.toml", 'colour = "red"\n')),
        ("odd.toml", "colour"),
    ),
    "dataset not found": (
        lambda tmp, data: ["--no-ui", *TINY, "--data-root", str(tmp / "empty")],
        ("Fashion-MNIST", "--data-root", "TUNER_TUI_DATA"),
    ),
    "store is a directory": (
        lambda tmp, data: tiny_run(data, "--store", str(tmp)), ("results store", "is a directory"),
    ),
    "store is not a database": (
        lambda tmp, data: tiny_run(data, "--store", _write(tmp / "notes.txt", "not sqlite\n" * 200)),
        ("notes.txt",),
    ),
    "unknown option": (
        lambda tmp, data: tiny_run(data, "--bogus"), ("--bogus",),
    ),
}
if not torch.cuda.is_available():
    BAD_INPUT["cuda without CUDA"] = (lambda tmp, data: tiny_run(data, "--device", "cuda"), ("device", "cuda"))


@pytest.fixture(params=sorted(BAD_INPUT), ids=lambda name: name.replace(" ", "-"))
def bad_input(request, tmp_path: Path, data_root: Path) -> tuple[list[str], tuple[str, ...]]:
    make, words = BAD_INPUT[request.param]
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    (case_dir / "empty").mkdir()
    return make(case_dir, data_root), words


def test_bad_input_exits_2_with_one_line_naming_the_problem(capsys, bad_input) -> None:
    argv, words = bad_input
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


def test_bad_input_leaves_the_stored_runs_unchanged(capsys, bad_input, seeded_store, store_path: Path) -> None:
    argv, _ = bad_input
    code, _, _ = run_cli(capsys, *argv)
    assert code == 2
    assert [record.to_json() for record in stored_runs(store_path)] == seeded_store


def test_bad_input_does_not_create_the_store(capsys, bad_input, store_path: Path) -> None:
    argv, _ = bad_input
    code, _, _ = run_cli(capsys, *argv)
    assert code == 2
    assert not store_path.exists()
    assert not store_path.parent.exists()


def test_store_that_is_not_a_database_is_left_as_it_was(capsys, tmp_path: Path, data_root: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not sqlite\n" * 200)
    before = notes.read_bytes()
    code, _, _ = run_cli(capsys, *tiny_run(data_root, "--store", str(notes)))
    assert code == 2
    assert notes.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("notes")) == ["notes.txt"]


def test_unknown_preset_suggests_the_closest_names(capsys, data_root: Path) -> None:
    code, _, err = run_cli(capsys, "--no-ui", "--preset", "fmnist_exp55", "--data-root", str(data_root))
    assert code == 2
    assert "did you mean" in err and "fmnist_exp5" in err.split("did you mean", 1)[1]


# --- runs that end badly --------------------------------------------------------------------


def test_diverging_run_exits_1_and_is_stored_as_diverged(capsys, data_root: Path, store_path: Path) -> None:
    code, out, err = run_cli(capsys, *tiny_run(data_root, *DIVERGING))
    assert code == 1
    assert "diverged" in out  # the table's title names the status
    assert err.rstrip().splitlines()[-1].startswith("diverged:")
    [record] = stored_runs(store_path)
    assert record.status == "diverged"
    assert record.diverged_step is not None


def test_failing_run_exits_1_and_is_stored_as_failed(capsys, monkeypatch, data_root: Path, store_path: Path) -> None:
    def broken_backend(*args, **kwargs):
        raise RuntimeError("backend exploded")

    monkeypatch.setattr("tuner_tui.engine.runner.make_backend", broken_backend)
    code, out, err = run_cli(capsys, *tiny_run(data_root, "--json"))
    assert code == 1
    run = json.loads(out)
    assert run["status"] == "failed"
    assert run["epochs"] == []
    assert run["metrics"]["train_accuracy"] is None and run["metrics"]["test_accuracy"] is None
    assert "Traceback" not in err
    [record] = stored_runs(store_path)
    assert record.status == "failed"
    assert "backend exploded" in record.message


# --- the real process -----------------------------------------------------------------------


def test_module_run_exits_0_with_epoch_lines_and_no_traceback(isolated, data_root: Path) -> None:
    env = subprocess_env(isolated, data_root)
    result = subprocess.run(
        [sys.executable, "-m", "tuner_tui.cli", "--no-ui", *TINY, "--data-root", str(data_root)],
        env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert [int(n) for n in EPOCH_LINE.findall(result.stderr)] == [1, 2]
    assert "train acc" in result.stdout and "actual time" in result.stdout
    assert [r.status for r in stored_runs(Path(isolated["TUNER_TUI_STORE"]))] == ["completed"]


def test_module_bad_input_exits_2_with_one_line_and_no_traceback(isolated, data_root: Path) -> None:
    env = subprocess_env(isolated, data_root)
    result = subprocess.run(
        [sys.executable, "-m", "tuner_tui.cli", "--no-ui", "--preset", "fmnist_exp55"],
        env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "fmnist_exp5" in result.stderr
    assert "Traceback" not in result.stderr
    assert not Path(isolated["TUNER_TUI_STORE"]).exists()


def test_module_diverging_run_exits_1(isolated, data_root: Path) -> None:
    env = subprocess_env(isolated, data_root)
    result = subprocess.run(
        [sys.executable, "-m", "tuner_tui.cli", "--no-ui", "--json", *TINY, *DIVERGING, "--data-root", str(data_root)],
        env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout)["status"] == "diverged"


def test_console_script_lists_presets(isolated) -> None:
    script = Path(sys.executable).parent / "tuner-tui"
    assert script.is_file(), "the project is installed with its `tuner-tui` console script"
    result = subprocess.run(
        [str(script), "presets"], env={**os.environ, **isolated, "COLUMNS": "200"},
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "fmnist_quick" in result.stdout


# --- the command line's shape: global options, --help, --version, python -m ---------------------


@pytest.mark.parametrize("order", ["before", "after"])
def test_global_options_work_before_or_after_the_command(capsys, tmp_path: Path, order: str) -> None:
    store = tmp_path / "elsewhere.sqlite3"
    seed_run(store, preset="placed_by_path")
    argv = ["--store", str(store), "runs"] if order == "before" else ["runs", "--store", str(store)]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "placed_by_path" in out


def test_help_lists_every_command(isolated: dict[str, str]) -> None:
    from tuner_tui.cli import COMMANDS

    done = subprocess.run(
        [sys.executable, "-m", "tuner_tui", "--help"], env={**os.environ, **isolated, "COLUMNS": "200"},
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False,
    )
    assert done.returncode == 0, done.stderr
    listed = set(re.findall(r"^ {4}(\w+) ", done.stdout, flags=re.MULTILINE))
    assert listed == {name for name in COMMANDS if name is not None}
    assert "--store" in done.stdout and "--version" in done.stdout


def test_version_is_the_installed_distributions(isolated: dict[str, str]) -> None:
    from importlib.metadata import version

    done = subprocess.run(
        [sys.executable, "-m", "tuner_tui", "--version"], env={**os.environ, **isolated},
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False,
    )
    assert done.returncode == 0
    assert done.stdout == f"tuner-tui {version('tuner-tui')}\n"


def test_runs_piped_prints_full_width_rows(capsys, store_path: Path) -> None:
    label = "a_preset_name_much_longer_than_eighty_columns_" + "x" * 60  # COLUMNS is 80
    seed_run(store_path, preset=label)
    code, out, _ = run_cli(capsys, "runs")
    assert code == 0
    [row] = [line for line in out.splitlines() if label in line]
    assert "784→16→10" in row and "completed" in row and len(row) > 120


def test_plain_pytest_from_the_repository_root_collects_like_python_m_pytest() -> None:
    repo = Path(__file__).resolve().parents[1]
    pytest_script = Path(sys.executable).parent / "pytest"
    done = subprocess.run(
        [str(pytest_script), "--collect-only", "-q", "-p", "no:cacheprovider", "tests/test_require.py"],
        cwd=repo, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\d+ tests? collected", done.stdout)


# --- the store: read without side effects, refused when it keeps nothing -----------------------


@pytest.mark.parametrize("command", [["runs"], ["runs", "--json"], ["report"], ["report", "--format", "csv"]])
def test_reading_a_missing_store_says_no_store_and_creates_nothing(capsys, tmp_path: Path, command) -> None:
    missing = tmp_path / "typo" / "runs.sqlite3"
    code, out, err = run_cli(capsys, *command, "--store", str(missing))
    assert code == 2 and out == ""
    assert err == f"tuner-tui: error: no store at {missing}\n"
    assert not missing.parent.exists()


def test_reading_a_foreign_sqlite_file_changes_nothing(capsys, tmp_path: Path) -> None:
    import sqlite3

    foreign = tmp_path / "invoices.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.close()
    before = foreign.read_bytes()
    for command in (["runs"], ["report"]):
        code, _, err = run_cli(capsys, *command, "--store", str(foreign))
        assert code == 2 and "not a tuner-tui results store" in err and err.count("\n") == 1
    assert foreign.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["invoices.db"]


def _without_root_overrides() -> list[str]:
    """A command prefix under which mode bits bind: root's override capabilities dropped."""
    if os.getuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: mode bits cannot make a file read-only here")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def test_a_read_only_store_can_be_listed(isolated: dict[str, str]) -> None:
    prefix = _without_root_overrides()
    with tempfile.TemporaryDirectory(prefix="tuner-tui-read-only-") as shared:
        folder = Path(shared)
        store = folder / "runs.sqlite3"
        seed_run(store, preset="on_a_read_only_disk")
        with ResultsStore(store):  # a clean close checkpoints the WAL: one file, as a copied store would be
            pass
        assert [p.name for p in folder.iterdir()] == ["runs.sqlite3"]
        store.chmod(0o444)
        folder.chmod(0o555)
        before = store.read_bytes()
        try:
            done = subprocess.run(
                [*prefix, sys.executable, "-B", "-m", "tuner_tui", "runs", "--store", str(store)],
                env={**os.environ, **isolated, "COLUMNS": "200"}, capture_output=True, text=True,
                timeout=SUBPROCESS_TIMEOUT_S, check=False,
            )
        finally:
            folder.chmod(0o755)
        assert done.returncode == 0, done.stderr
        assert "on_a_read_only_disk" in done.stdout
        assert store.read_bytes() == before
        assert [p.name for p in folder.iterdir()] == ["runs.sqlite3"]


@pytest.mark.parametrize("command", ["run", "runs", "report"])
def test_an_in_memory_store_is_refused(capsys, data_root: Path, command: str) -> None:
    argv = tiny_run(data_root) if command == "run" else [command]
    code, out, err = run_cli(capsys, *argv, "--store", ":memory:")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "in-memory store keeps nothing" in err


def test_a_limit_too_large_for_the_store_is_one_line_exit_2(capsys, seeded_store) -> None:
    code, out, err = run_cli(capsys, "runs", "--limit", "99999999999999999999")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--limit" in err and "99999999999999999999" in err


# --- a row this version cannot read ---------------------------------------------------------------


@pytest.fixture
def store_with_an_unreadable_row(store_path: Path) -> tuple[int, int]:
    """Two readable runs and, between them, one whose config came from a newer version."""
    import sqlite3

    first = seed_run(store_path, preset="readable_one")
    bad = seed_run(store_path, preset="from_the_future")
    seed_run(store_path, preset="readable_two")
    with sqlite3.connect(store_path) as conn:
        config = {**RunConfig().to_dict(), "optimizer": "adam"}
        conn.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(config), bad))
    conn.close()
    return first, bad


def test_runs_lists_the_readable_runs_and_shows_an_unreadable_one(capsys, store_with_an_unreadable_row) -> None:
    _, bad = store_with_an_unreadable_row
    code, out, err = run_cli(capsys, "runs")
    assert code == 0 and err == ""
    assert "readable_one" in out and "readable_two" in out
    [line] = [line for line in out.splitlines() if re.match(rf"\s*{bad} ", line)]
    assert "unreadable" in line and "optimizer" in line


def test_runs_json_prints_the_readable_runs_and_warns_of_the_unreadable_one(
    capsys, store_with_an_unreadable_row
) -> None:
    _, bad = store_with_an_unreadable_row
    code, out, err = run_cli(capsys, "runs", "--json")
    assert code == 0
    assert [json.loads(line)["preset"] for line in out.splitlines()] == ["readable_two", "readable_one"]
    assert err.count("\n") == 1 and err.startswith(f"tuner-tui: warning: run {bad} ") and "optimizer" in err


@pytest.mark.parametrize("fmt", ["markdown", "csv"])
def test_report_lists_the_readable_runs_and_names_the_unreadable_one(
    capsys, store_with_an_unreadable_row, fmt: str
) -> None:
    _, bad = store_with_an_unreadable_row
    code, out, err = run_cli(capsys, "report", "--format", fmt)
    assert code == 0
    assert "readable_one" in out and "readable_two" in out and "from_the_future" not in out
    said = out if fmt == "markdown" else err  # the CSV stays one table; the note goes to stderr
    assert re.search(rf"run {bad} \(completed\) cannot be read by this version.*optimizer", said)


# --- store and user text is shown as text ---------------------------------------------------------

HOSTILE_LABELS = {
    "closing tag": "[/]",
    "hyperlink": "[link=https://example.com]y[/link]",
    "escape sequence": "\x1b[31mred\x1b]8;;https://example.com\x07",
    "table breaker": "a|b\nc",
}


def test_runs_prints_markup_in_stored_labels_literally(capsys, store_path: Path) -> None:
    for label in HOSTILE_LABELS.values():
        seed_run(store_path, preset=label)
    code, out, err = run_cli(capsys, "runs")
    assert code == 0, err
    assert "[/]" in out and "[link=https://example.com]y[/link]" in out
    assert "\x1b" not in out and "\x07" not in out  # nothing reaches the terminal as a command
    assert "\ufffd[31mred" in out


def test_the_run_table_prints_markup_in_its_label_literally() -> None:
    from rich.console import Console

    from tuner_tui.reports.run_tables import run_table

    record = RunRecord(
        id=7, status=RunStatus.COMPLETED, config=RunConfig(), device_name="CPU", data_source=None, started_at=0.0,
        finished_at=1.0, hostname="h", pid=1, params=1, estimated_memory_bytes=None, estimated_time_s=None,
        train_loss=0.5, train_accuracy=50.0, test_accuracy=50.0, peak_memory_bytes=None, gpu_memory_bytes=None,
        train_time_s=1.0, total_time_s=1.0, message="", diverged_step=None, epochs=(), loss_curve=(),
    )
    for label in HOSTILE_LABELS.values():
        screen = io.StringIO()
        console = Console(file=screen, width=200, force_terminal=True, color_system="truecolor")
        console.print(run_table(dataclasses.replace(record, preset=label)))
        shown = screen.getvalue()
        assert "\x1b]8;" not in shown  # no hidden hyperlink
        assert "\x1b[31m" not in shown and "\x07" not in shown
        if "[" in label and "\x1b" not in label:  # the title wraps at the table's width
            assert label in "".join(line.strip() for line in shown.splitlines())


def test_the_markdown_report_escapes_pipes_and_newlines_in_labels(capsys, store_path: Path) -> None:
    for label in HOSTILE_LABELS.values():
        seed_run(store_path, preset=label)
    code, out, _ = run_cli(capsys, "report")
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out
    for table in out.split("## Resources"):
        table_rows = [line for line in table.splitlines() if line.startswith("|")]
        assert len(table_rows) == 2 + len(HOSTILE_LABELS)  # no row broken in two by a newline
        cells = {len(re.split(r"(?<!\\)\|", row)) for row in table_rows}  # unescaped | only
        assert len(cells) == 1, table
    assert r"| a\|b c |" in out
    assert "| [link=https://example.com]y[/link] |" in out


# --- refuse what cannot fit -----------------------------------------------------------------------

GIB = 1024**3
HUGE = ["--set", "hidden=16384,16384,16384,16384,16384,16384,16384,16384", "--set", "batch_size=60000"]


def test_a_run_that_cannot_fit_is_refused_before_anything_is_loaded(
    capsys, monkeypatch, tmp_path: Path, store_path: Path
) -> None:
    monkeypatch.setattr("tuner_tui.engine.capacity.host_available_bytes", lambda: 23 * GIB)  # the machine
    empty = tmp_path / "no-data-here"  # loading would fail with "not found": the check comes first
    code, out, err = run_cli(capsys, "--no-ui", *HUGE, "--device", "cpu", "--data-root", str(empty))
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert "memory" in err and "95.3 GiB" in err and "23.0 GiB" in err and "--force" in err
    assert not store_path.exists()


def test_force_skips_the_memory_check(capsys, monkeypatch, data_root: Path) -> None:
    monkeypatch.setattr("tuner_tui.engine.capacity.host_available_bytes", lambda: 1)  # nothing fits
    code, _, err = run_cli(capsys, *tiny_run(data_root))
    assert code == 2 and "memory" in err and "--force" in err
    code, out, err = run_cli(capsys, *tiny_run(data_root, "--json", "--force"))
    assert code == 0, err
    assert json.loads(out)["status"] == "completed"


# --- bad preset files -----------------------------------------------------------------------------


def test_a_preset_that_never_ends_is_refused_quickly_in_one_line(isolated: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tuner_tui", "--no-ui", "--preset", "/dev/zero"], env={**os.environ, **isolated},
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "/dev/zero" in done.stderr and "not a regular file" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_deeply_nested_preset_is_refused_in_one_line(capsys, tmp_path: Path, data_root: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("hidden = " + "[" * 100_000 + "]" * 100_000 + "\n")
    code, out, err = run_cli(capsys, *tiny_run(data_root, "--preset", str(deep)))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "deep.toml" in err and "nested too deeply" in err


def test_presets_lists_broken_and_shadowed_user_presets_with_the_reason(capsys, isolated: dict[str, str]) -> None:
    user = Path(isolated["TUNER_TUI_CONFIG_DIR"]) / "presets"
    user.mkdir(parents=True)
    (user / "broken.toml").write_text("hidden = [16\n")
    (user / "wrong_value.toml").write_text("epochs = 0\n")
    (user / "fmnist_quick.toml").write_text("epochs = 3\n")
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0
    skipped = [line for line in out.splitlines() if line.startswith("skipped: ")]
    assert any(str(user / "broken.toml") in line and "not valid TOML" in line for line in skipped), skipped
    assert any(str(user / "wrong_value.toml") in line and "epochs" in line for line in skipped), skipped
    assert any(str(user / "fmnist_quick.toml") in line and "hidden by the shipped preset" in line for line in skipped)


# --- a run that ends at chance --------------------------------------------------------------------


def test_a_run_that_ends_at_chance_is_flagged_in_its_status_line_table_and_json(capsys, data_root: Path) -> None:
    at_chance = ["--set", "lr=10", "--set", "hidden=64,64,64", "--set", "epochs=1"]  # patience 5 never stops it
    code, out, err = run_cli(capsys, *tiny_run(data_root, *at_chance, "--json"))
    assert code == 0
    run = json.loads(out)
    assert run["status"] == "completed" and run["at_chance"] is True
    assert err.rstrip().splitlines()[-1].endswith("; test accuracy at chance (10 %)")
    code, out, _ = run_cli(capsys, *tiny_run(data_root, *at_chance))
    assert code == 0 and "completed (test accuracy at chance)" in " ".join(out.split())  # the title wraps


def test_an_error_naming_a_hostile_path_shows_its_control_characters_as_text(capsys, tmp_path: Path) -> None:
    hostile = tmp_path / "\x1b[31mred\x1b]8;;https://example.com\x07.toml"
    code, out, err = run_cli(capsys, "--no-ui", "--preset", str(hostile))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "\x1b" not in err and "\x07" not in err
    assert "\ufffd[31mred" in err
