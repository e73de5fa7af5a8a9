"""Your own training code: a model file's function run headless, its faults, where its code comes
from, and what it is given. Real child processes and the real store throughout; the models here are
tiny (a few thousand multiply-adds) so every test trains for real in well under a second a report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import run_cli
from tuner_tui.engine.events import RunStatus
from tuner_tui.runs.store import ResultsStore

TIMEOUT_S = 300.0

MODEL_TOML = """
train = "{file}:{function}"
title = "Tiny linear"
[fields]
lr = {{ default = 0.5, min = 0.0001, max = 2.0, log = true }}
epochs = {{ default = 3, min = 1, max = 50 }}
width = {{ default = 8, choices = [4, 8, 16] }}
optimizer = {{ default = "sgd", choices = ["sgd", "adam"] }}
shuffle = {{ default = false }}
[metrics]
val_accuracy = "maximize"
loss = "minimize"
"""

MODEL_PY = '''
import os
import sys
import time

import torch

from tuner_tui import Run, Stop

NOT_CALLABLE = 3


def train(config: dict, run: Run) -> dict:
    torch.manual_seed(0)
    data = run.load_dataset("fmnist")
    width = config["width"]
    model = torch.nn.Sequential(torch.nn.Linear(784, width), torch.nn.ReLU(), torch.nn.Linear(width, 10))
    make = torch.optim.Adam if config["optimizer"] == "adam" else torch.optim.SGD
    optimizer = make(model.parameters(), lr=config["lr"] / (100 if config["optimizer"] == "adam" else 1))
    x, y = data.train_x, data.train_y
    val_x, val_y = (data.val_x, data.val_y) if len(data.val_y) else (data.test_x, data.test_y)
    run.log(f"train rows {len(y)} val rows {len(data.val_y)} on {run.device} from {run.data_root}")
    for epoch in range(1, config["epochs"] + 1):
        for start in range(0, len(y), 50):
            loss = torch.nn.functional.cross_entropy(model(x[start:start + 50]), y[start:start + 50])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            accuracy = (model(val_x).argmax(1) == val_y).float().mean()
        run.report(epoch, val_accuracy=accuracy, loss=loss.item())
    with torch.no_grad():
        test = (model(data.test_x).argmax(1) == data.test_y).float().mean().item()
    return {"test_accuracy": test}


def fails(config: dict, run: Run) -> None:
    run.report(1, loss=1.0)
    raise ValueError("the learning rate is silly")


def noisy(config: dict, run: Run) -> dict:
    print("a print", "with", {"a": 1})
    print("to stderr", file=sys.stderr)
    os.write(1, b"\\x80\\x04raw bytes on fd 1 that look like a pickle\\n")
    os.write(2, b"raw bytes on fd 2\\n")
    run.report(1, val_accuracy=0.5, loss=0.25)
    return {"val_accuracy": 0.75}


def deaf(config: dict, run: Run) -> None:
    marker = os.environ["TINY_MARKER"]
    run.report(1, val_accuracy=0.1, loss=2.0)
    open(marker, "w").close()  # the test waits for this before it stops the run
    while True:  # catches every stop and keeps going: it must be killed
        try:
            time.sleep(0.05)
            run.report(2, val_accuracy=0.2, loss=1.0)
        except BaseException:
            pass


def polite(config: dict, run: Run) -> None:
    marker = os.environ["TINY_MARKER"]
    try:
        epoch = 0
        while True:
            epoch += 1
            time.sleep(0.05)
            run.report(epoch, val_accuracy=0.1 * min(epoch, 9), loss=1.0 / epoch)
            if epoch == 2:
                open(marker, "w").close()
    finally:
        open(marker + ".finally", "w").close()
'''


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """A folder with the tiny model's code and a model file per function of it."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny.py").write_text(MODEL_PY)
    for function in ("train", "fails", "noisy", "deaf", "polite", "missing"):
        (folder / f"{function}.toml").write_text(MODEL_TOML.format(file="tiny.py", function=function))
    return folder


def stored(tiny_env: dict[str, str]) -> list:
    with ResultsStore(Path(tiny_env["TUNER_TUI_STORE"])) as store:
        return store.list_runs()


# --- headless ----------------------------------------------------------------------------------------


def test_a_model_files_function_runs_headless_and_is_stored_with_its_metrics(tiny_env, models, capsys) -> None:
    code, out, err = run_cli(capsys, "--preset", str(models / "train.toml"), "--no-ui", "--json", "--set", "epochs=2")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "completed"
    assert result["config"] == {"lr": 0.5, "epochs": 2, "width": 8, "optimizer": "sgd", "shuffle": False}
    assert [e["epoch"] for e in result["epochs"]] == [1, 2]
    assert set(result["epochs"][0]) == {"epoch", "val_accuracy", "loss", "seconds"}
    assert result["metrics"]["val_accuracy"] == result["epochs"][-1]["val_accuracy"]
    assert 0.0 < result["metrics"]["test_accuracy"] <= 1.0  # the returned dict, besides the last reports
    assert result["model"]["headline"] == "val_accuracy" and result["model"]["direction"] == "maximize"
    assert "epoch 1: val_accuracy " in err and "train rows 600 val rows 0 on cpu" in err
    [run] = stored(tiny_env)
    assert run.status is RunStatus.COMPLETED and run.label == "train (edited)"
    assert run.metrics["test_accuracy"] == result["metrics"]["test_accuracy"]
    assert [e.metrics["loss"] for e in run.epochs] == [e["loss"] for e in result["epochs"]]


def test_the_run_records_where_its_code_came_from(tiny_env, models, capsys) -> None:
    subprocess.run(["git", "init", "-q", str(models)], check=True, timeout=60)
    subprocess.run(["git", "-C", str(models), "add", "tiny.py"], check=True, timeout=60)
    subprocess.run(["git", "-C", str(models), "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"],
                   check=True, timeout=60)
    commit = subprocess.run(["git", "-C", str(models), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True, timeout=60).stdout.strip()
    code, out, _ = run_cli(capsys, "--preset", str(models / "train.toml"), "--no-ui", "--json", "--set", "epochs=1")
    assert code == 0
    origin = json.loads(out)["code"]
    assert origin["file"] == str(models / "tiny.py") and origin["function"] == "tiny.py:train"
    import hashlib

    assert origin["sha256"] == hashlib.sha256((models / "tiny.py").read_bytes()).hexdigest()
    assert origin["git_commit"] == commit and origin["git_dirty"] is False
    assert origin["python"] == ".".join(map(str, sys.version_info[:3])) and origin["torch"] and origin["tuner_tui"]
    with (models / "tiny.py").open("a") as handle:
        handle.write("\n# changed after the commit\n")
    code, out, _ = run_cli(capsys, "--preset", str(models / "train.toml"), "--no-ui", "--json", "--set", "epochs=1")
    assert json.loads(out)["code"]["git_dirty"] is True


def test_runs_and_the_csv_report_show_the_metrics_a_run_reported(tiny_env, models, capsys) -> None:
    assert run_cli(capsys, "--preset", str(models / "train.toml"), "--no-ui", "--set", "epochs=1")[0] == 0
    code, out, _ = run_cli(capsys, "runs")
    assert code == 0 and "metric" in out and "val_accuracy" in out and "train (edited)" in out
    code, out, _ = run_cli(capsys, "report", "--format", "csv")
    header, row = out.splitlines()
    assert "metric:val_accuracy" in header.split(",") and "metric:test_accuracy" in header.split(",")
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert values["model"] == "Tiny linear" and values["headline_metric"] == "val_accuracy"
    code, out, _ = run_cli(capsys, "report")
    assert "## Your own code" in out and "Tiny linear" in out


# --- bad input: one line, exit 2, nothing stored ------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("lr=5", "lr: must be a number in [0.0001, 2], got '5'"),
        ("epochs=2.5", "epochs: must be a whole number in [1, 50], got '2.5'"),
        ("width=12", "width: must be one of 4 | 8 | 16, got '12'"),
        ("optimizer=rmsprop", "optimizer: must be one of sgd | adam"),
        ("shuffle=maybe", "shuffle: must be true or false"),
        ("momentum=0.9", "momentum: not a field of this model; its fields are lr, epochs, width, optimizer, shuffle"),
    ],
)
def test_a_bad_set_value_is_refused_in_one_line_naming_the_file(tiny_env, models, capsys, setting, says) -> None:
    code, out, err = run_cli(capsys, "--preset", str(models / "train.toml"), "--no-ui", "--set", setting)
    assert code == 2 and out == ""
    assert err == f"tuner-tui: error: {models / 'train.toml'}: {says}\n" or (err.count("\n") == 1 and says in err)
    assert not Path(tiny_env["TUNER_TUI_STORE"]).exists()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('train = "tiny.py:train"\n[fields]\nlr = { default = 0.1 }\n', "metrics: must name the metric that matters"),
        ('train = "nothere.py:train"\n[metrics]\nx = "maximize"\n', "train: no file"),
        ('train = "tiny.py"\n[metrics]\nx = "maximize"\n', "train: must name a .py file"),
        ('train = "tiny.py:train"\n[fields]\nlr = { default = [1, 2] }\n[metrics]\nx = "maximize"\n',
         "fields.lr.default: must be a number, text or true/false"),
        ('train = "tiny.py:train"\n[fields]\nlr = { default = 0.1, min = 1.0 }\n[metrics]\nx = "maximize"\n',
         "fields.lr.default: lr: must be a number in [1, inf]"),
        ('train = "tiny.py:train"\n[metrics]\nx = "best"\n', "metrics.x: must be maximize or minimize"),
        ('train = "tiny.py:train"\ncolour = 1\n[metrics]\nx = "maximize"\n', "colour: unknown key"),
        ('train = "tiny.py:missing"\n[metrics]\nx = "maximize"\n', "train: tiny.py has no function 'missing'"),
        ('train = "tiny.py:NOT_CALLABLE"\n[metrics]\nx = "maximize"\n', "train: tiny.py:NOT_CALLABLE is not callable"),
    ],
)
def test_a_malformed_model_file_is_refused_in_one_line_naming_it(tiny_env, models, capsys, text, says) -> None:
    path = models / "broken.toml"
    path.write_text(text)
    code, out, err = run_cli(capsys, "--preset", str(path), "--no-ui")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(path) in err and says in err
    assert not Path(tiny_env["TUNER_TUI_STORE"]).exists()


def test_code_is_imported_only_from_the_file_or_module_named_never_the_current_folder(tiny_env, tmp_path, capsys,
                                                                                       monkeypatch) -> None:
    cwd = tmp_path / "workdir"
    cwd.mkdir()
    (cwd / "strayhelper.py").write_text("def train(config, run):\n    raise SystemExit('imported by accident')\n")
    (cwd / "model.toml").write_text('train = "strayhelper:train"\n[metrics]\nx = "maximize"\n')
    monkeypatch.chdir(cwd)
    code, _, err = run_cli(capsys, "--preset", "model.toml", "--no-ui")
    assert code == 2 and "importing strayhelper raised ModuleNotFoundError" in err
    assert not Path(tiny_env["TUNER_TUI_STORE"]).exists()


# --- faults: the code fails, prints, or will not stop --------------------------------------------------


def test_an_exception_in_the_function_is_a_failed_run_with_its_traceback_in_the_log(tiny_env, models, capsys) -> None:
    code, out, err = run_cli(capsys, "--preset", str(models / "fails.toml"), "--no-ui", "--json")
    assert code == 1
    assert err.rstrip().splitlines()[-1] == "tuner-tui: error: ValueError: the learning rate is silly"
    assert "Traceback (most recent call last)" in err and 'tiny.py", line' in err  # their own traceback
    result = json.loads(out)
    assert result["status"] == "failed" and result["message"] == "ValueError: the learning rate is silly"
    [run] = stored(tiny_env)
    assert run.status is RunStatus.FAILED and "Traceback" in run.log and "raise ValueError" in run.log
    assert [e.metrics for e in run.epochs] == [{"loss": 1.0}]  # what it reported before it failed


def test_whatever_the_code_prints_goes_to_the_log_not_into_the_events(tiny_env, models, capsys) -> None:
    code, out, err = run_cli(capsys, "--preset", str(models / "noisy.toml"), "--no-ui", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["metrics"] == {"val_accuracy": 0.75, "loss": 0.25}  # the returned value wins over the report
    assert "a print with {'a': 1}" in err and "to stderr" in err


def _wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not path.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _no_child_left(parent_pid: int) -> None:
    """No process of ours outlives the run: the code's child process has gone with it."""
    children = subprocess.run(["pgrep", "-P", str(parent_pid)], capture_output=True, text=True, check=False)
    assert children.stdout.strip() == ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_raises_stop_in_the_code_its_finally_runs_and_the_run_is_cancelled(tiny_env, models, tmp_path,
                                                                                     signum) -> None:
    marker = tmp_path / "reached"
    run = subprocess.Popen(
        [sys.executable, "-m", "tuner_tui", "--preset", str(models / "polite.toml"), "--no-ui", "--json"],
        env={**os.environ, **tiny_env, "TINY_MARKER": str(marker)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(marker, run)
    run.send_signal(signum)
    out, err = run.communicate(timeout=TIMEOUT_S)
    assert run.returncode == 128 + signum, err
    assert Path(f"{marker}.finally").exists()  # Stop was raised in the code: its finally block ran
    result = json.loads(out)
    assert result["status"] == "cancelled" and len(result["epochs"]) >= 2
    assert "Traceback" not in err


def test_code_that_ignores_stop_is_killed_after_the_grace_period_and_stored_cancelled(
    tiny_env, models, tmp_path
) -> None:
    marker = tmp_path / "reached"
    run = subprocess.Popen(
        [sys.executable, "-m", "tuner_tui", "--preset", str(models / "deaf.toml"), "--no-ui", "--json"],
        env={**os.environ, **tiny_env, "TINY_MARKER": str(marker)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(marker, run)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=TIMEOUT_S)
    assert run.returncode == 143, err
    result = json.loads(out)
    assert result["status"] == "cancelled" and "did not stop within" in result["message"]
    assert result["epochs"][0]["epoch"] == 1
    _no_child_left(run.pid)
