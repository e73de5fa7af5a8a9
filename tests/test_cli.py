"""The `tuner-tui` command line's specification: headless runs (text and `--json`), the `runs`,
`presets` and `report` subcommands, and the exit codes (0 completed, 1 diverged or failed,
2 bad input with one line on stderr and the store untouched). Signals and other faults: test_faults.py.

Most tests call `tuner_tui.cli.main` in-process; a few run the module in a subprocess to see the
real exit code and stderr. Every test gets its own config, cache and store paths; datasets come
only from a tiny Fashion-MNIST in the real IDX format (tests/datafiles.py; no download, no Debian copy).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from engine.config import RunConfig
from engine.events import EpochEnd, Finished, Resources, RunStatus
from tests.datafiles import write_idx_dataset
from tuner_tui.cli import main
from tuner_tui.runs.store import ResultsStore, RunRecord

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


@pytest.fixture
def seeded_store(store_path: Path) -> list[dict]:
    """The store holding one completed run, written directly; returns its runs as JSON objects."""
    epoch = EpochEnd(epoch=1, train_loss=0.5, train_accuracy=80.0, test_accuracy=78.0, seconds=0.1)
    finished = Finished(
        status=RunStatus.COMPLETED, message="seeded", train_loss=0.5, train_accuracy=80.0,
        test_accuracy=78.0, params=TINY_PARAMS, resources=Resources(train_time_s=0.1, total_time_s=0.2),
        epochs=(epoch,), loss_curve=(0.9, 0.5),
    )
    with ResultsStore(store_path) as store:
        run_id = store.start_run(
            RunConfig(hidden=(TINY_HIDDEN,), epochs=1, device="cpu"), device_name="CPU", params=TINY_PARAMS,
            estimated_memory_bytes=1000, estimated_time_s=0.1, data_source="seeded",
        )
        store.finish_run(run_id, finished)
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


def test_report_csv_prints_two_tables(capsys, two_runs: list[dict]) -> None:
    code, out, _ = run_cli(capsys, "report", "--format", "csv")
    assert code == 0
    first, second = (list(csv.reader(io.StringIO(block))) for block in out.strip().split("\n\n"))
    assert first[0] == HYPERPARAMETER_HEADER
    assert second[0] == RESOURCE_HEADER
    assert len(first) == len(second) == 1 + len(two_runs)
    assert all(row[1] == "784→16→10" and row[2] == "0.01" and row[3] == "20" for row in first[1:])
    assert all(row[1] == f"{TINY_PARAMS:,}" for row in second[1:])


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

    monkeypatch.setattr("engine.runner.make_backend", broken_backend)
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
