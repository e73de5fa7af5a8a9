"""Sweeps of your own code: a spec whose base is a model file, and a plain Optuna objective run
unchanged, each with pruning, resume after SIGTERM, several workers, and a SLURM array on the real
local cluster. Real child processes, real studies, the tiny Fashion-MNIST."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import require
from tests.test_user_code import MODEL_PY, MODEL_TOML
from tuner_tui.cli import main
from tuner_tui.engine.events import RunStatus
from tuner_tui.runs.store import ResultsStore
from tuner_tui.sweeps.spec import SpecError, load_spec

TIMEOUT_S = 600.0

SPEC = """
base = "{model}"
[space]
lr = {{ log_uniform = [0.001, 1.5] }}
width = {{ choice = [4, 16] }}
[search]
validation = 0.2
sampler = "random"
pruner = "{pruner}"
epochs = {epochs}
trials = {trials}
seed = 5
"""

OBJECTIVE = '''
import optuna


def objective(trial):
    x = trial.suggest_float("x", -4.0, 4.0)
    shape = trial.suggest_categorical("shape", ["bowl", "ramp"])
    trial.set_user_attr("seen", True)
    value = 0.0
    for step in range(4):
        value = (x - 1.0) ** 2 + (0.5 if shape == "ramp" else 0.0) + 1.0 / (step + 1)
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


def slow_objective(trial):
    import time
    x = trial.suggest_float("x", -4.0, 4.0)
    for step in range(40):
        time.sleep(0.05)
        trial.report((x - 1.0) ** 2 + 1.0 / (step + 1), step)
    return (x - 1.0) ** 2
'''


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny.py").write_text(MODEL_PY)
    path = folder / "tiny.toml"
    path.write_text(MODEL_TOML.format(file="tiny.py", function="train"))
    (folder / "objective.py").write_text(OBJECTIVE)
    return path


def spec_file(tmp_path: Path, model: Path, *, pruner: str = "median", epochs: int = 3, trials: int = 6) -> Path:
    path = tmp_path / "tiny_search.toml"
    path.write_text(SPEC.format(model=model, pruner=pruner, epochs=epochs, trials=trials))
    return path


def runs(tiny_env: dict[str, str]) -> list:
    with ResultsStore(Path(tiny_env["TUNER_TUI_STORE"])) as store:
        return store.list_runs()


# --- specs over a model's fields ------------------------------------------------------------------


def test_a_spec_over_a_model_takes_its_fields_its_headline_and_the_validation_rows(tiny_env, tmp_path, model) -> None:
    spec = load_spec(str(spec_file(tmp_path, model)))
    assert spec.model is not None and set(spec.space) == {"lr", "width"}
    assert (spec.search.objective, spec.search.direction) == ("val_accuracy", "maximize")
    assert spec.base.fields["epochs"] == 3 and spec.base.validation == 0.2  # type: ignore[union-attr]
    trial = spec.trial_config({"lr": 0.01, "width": 16})
    assert trial.fields == {"lr": 0.01, "epochs": 3, "width": 16, "optimizer": "sgd", "shuffle": False}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("space", "search", "says"),
    [
        ("momentum = { uniform = [0.1, 0.9] }", "", "space.momentum: not a field of tiny.toml"),
        ("lr = { uniform = [0.001, 5.0] }", "", "space.lr: lr: must be a number in [0.0001, 2], got 5.0"),
        ("width = { int = [4, 16] }", "", "space.width: a field with choices takes choice, not int"),
        ("optimizer = { uniform = [0.0, 1.0] }", "", "space.optimizer: a field with choices takes choice, not uniform"),
        ("lr = { uniform = [0.01, 0.1] }", 'objective = "f1"', "search.objective: f1 is not in the model's [metrics]"),
        ("lr = { uniform = [0.01, 0.1] }", 'objective = "loss"', None),
    ],
)
def test_a_model_spec_checks_its_space_and_objective_against_the_model(tiny_env, tmp_path, model, space, search,
                                                                       says) -> None:
    path = tmp_path / "checked.toml"
    path.write_text(f'base = "{model}"\n[space]\n{space}\n[search]\n{search}\n')
    if says is None:
        spec = load_spec(str(path))
        assert (spec.search.objective, spec.search.direction) == ("loss", "minimize")
        return
    with pytest.raises(SpecError) as refused:
        load_spec(str(path))
    assert any(says in problem for problem in refused.value.problems), refused.value.problems


# --- sweeping a model ------------------------------------------------------------------------------------


def test_a_sweep_of_a_model_prunes_trials_and_stores_each_as_a_run(tiny_env, tmp_path, model, capsys) -> None:
    spec = spec_file(tmp_path, model, pruner="median", trials=8)
    code = main(["sweep", str(spec), "--no-ui", "--workers", "1", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["trials"] == 8 and result["completed"] + result["pruned"] == 8
    assert result["pruned"] >= 1, err  # a median pruner over eight trials of three epochs stops some
    stored = runs(tiny_env)
    assert {r.trial for r in stored} == set(range(8)) and all(r.model is not None for r in stored)
    pruned = [r for r in stored if r.status is RunStatus.PRUNED]
    assert pruned and all(len(r.epochs) < 3 for r in pruned)
    best = next(r for r in stored if r.trial == result["best"]["trial"])
    assert best.metrics["val_accuracy"] == pytest.approx(result["best"]["value"])
    assert best.config.validation == 0.2  # type: ignore[union-attr]


def test_a_sweep_of_a_model_with_two_workers_meets_its_budget(tiny_env, tmp_path, model, capsys) -> None:
    spec = spec_file(tmp_path, model, pruner="none", epochs=1, trials=4)
    assert main(["sweep", str(spec), "--no-ui", "--workers", "2"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    stored = runs(tiny_env)
    assert sorted(r.trial for r in stored if r.status is RunStatus.COMPLETED) == [0, 1, 2, 3]
    assert len({r.pid for r in stored}) == 2  # each worker process recorded its own trials


def _resumed_after_sigterm(tiny_env: dict[str, str], argv: list[str], budget: int, running: str) -> list:
    """Start a sweep, SIGTERM it once a trial has ended and another runs, run it again; its runs."""
    sweep = subprocess.Popen([sys.executable, "-m", "tuner_tui", *argv, "--no-ui", "--workers", "1"],
                             env={**os.environ, **tiny_env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + TIMEOUT_S
        assert sweep.stderr is not None
        while True:
            line = sweep.stderr.readline()
            assert line or sweep.poll() is None, "".join(lines)
            lines.append(line)
            ended = sum(1 for seen in lines if "completed after" in seen or "pruned after" in seen)
            if ended >= 1 and line.startswith(running):
                break
            assert time.monotonic() < deadline
        time.sleep(0.5)  # into the trial's run
        sweep.send_signal(signal.SIGTERM)
        _, rest = sweep.communicate(timeout=TIMEOUT_S)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    assert sweep.returncode == 143, "".join(lines) + rest
    again = subprocess.run([sys.executable, "-m", "tuner_tui", *argv, "--no-ui", "--workers", "1", "--json"],
                           env={**os.environ, **tiny_env}, capture_output=True, text=True, timeout=TIMEOUT_S,
                           check=False)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["trials"] == budget
    return runs(tiny_env)


def test_a_sweep_of_a_model_resumes_after_sigterm_without_losing_or_repeating_a_trial(
    tiny_env, tmp_path, model
) -> None:
    spec = spec_file(tmp_path, model, pruner="none", epochs=3, trials=4)
    stored = _resumed_after_sigterm(tiny_env, ["sweep", str(spec)], 4, "trial 1")
    finished = [r for r in stored if r.status in (RunStatus.COMPLETED, RunStatus.PRUNED)]
    assert len(finished) == 4 and len({r.trial for r in finished}) == 4
    cancelled = [r for r in stored if r.status is RunStatus.CANCELLED]
    assert len(cancelled) == 1  # the trial SIGTERM stopped, stored with what it reported, and asked again


# --- plain Optuna objectives -----------------------------------------------------------------------------


def test_a_plain_optuna_objective_runs_unchanged_with_pruning(tiny_env, model, capsys) -> None:
    target = f"{model.parent / 'objective.py'}:objective"
    code = main(["sweep", "--objective", target, "--name", "bowl", "--trials", "10", "--direction", "minimize",
                 "--pruner", "median", "--no-ui", "--workers", "1", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["trials"] == 10 and result["pruned"] >= 1
    assert set(result["best"]["params"]) == {"x", "shape"}
    storage = f"sqlite:///{Path(tiny_env['TUNER_TUI_STORE']).with_name('runs.optuna.sqlite3')}"
    study = optuna.load_study(study_name="bowl", storage=storage)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete and all(t.user_attrs.get("seen") is True for t in complete)
    assert all(len(t.intermediate_values) == 4 for t in complete)  # every trial.report reached the study
    assert study.best_value == pytest.approx(result["best"]["value"])
    stored = {r.trial: r for r in runs(tiny_env)}
    best = stored[result["best"]["trial"]]
    assert best.config.fields == result["best"]["params"]  # type: ignore[union-attr]
    assert [e.epoch for e in best.epochs] == [0, 1, 2, 3] and best.metrics["value"] == study.best_value


def test_an_objective_sweep_resumes_after_sigterm(tiny_env, model) -> None:
    target = f"{model.parent / 'objective.py'}:slow_objective"
    argv = ["sweep", "--objective", target, "--name", "slow", "--trials", "3", "--direction", "minimize"]
    stored = _resumed_after_sigterm(tiny_env, argv, 3, "trial 1")
    assert sum(r.status is RunStatus.COMPLETED for r in stored) == 3
    assert sum(r.status is RunStatus.CANCELLED for r in stored) == 1


def test_an_objective_needs_a_name_and_a_file_that_is_there(tiny_env, model, capsys) -> None:
    assert main(["sweep", "--objective", f"{model.parent / 'objective.py'}:objective", "--no-ui"]) == 2
    assert "--name: a sweep of an objective needs a name" in capsys.readouterr().err
    assert main(["sweep", "--objective", "nowhere.py:objective", "--name", "x", "--no-ui"]) == 2
    assert "--objective: no file" in capsys.readouterr().err
    assert main(["sweep", "fmnist_search", "--direction", "minimize", "--no-ui"]) == 2
    assert "--direction goes with --objective" in capsys.readouterr().err


# --- on the cluster ------------------------------------------------------------------------------------


@pytest.mark.requires("slurm")
@pytest.mark.parametrize("kind", ["model", "objective"])
def test_user_code_sweeps_as_a_slurm_array(tiny_env, tmp_path, model, kind) -> None:
    require("slurm")
    store = Path(tiny_env["TUNER_TUI_STORE"])
    if kind == "model":
        argv = ["sweep", str(spec_file(tmp_path, model, pruner="none", epochs=1, trials=4))]
        name = "tiny_search"
    else:
        argv = ["sweep", "--objective", f"{model.parent / 'objective.py'}:objective", "--name", "onslurm",
                "--direction", "minimize"]
        name = "onslurm"
    base = [sys.executable, "-m", "tuner_tui"]
    full_env = {**os.environ, **tiny_env, "PYTHONUNBUFFERED": "1"}
    submitted = subprocess.run([*base, *argv, "--slurm", "--array", "2", "--trials", "4"], env=full_env,
                               capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.split("submitted job ", 1)[1].split(":", 1)[0]
    deadline = time.monotonic() + TIMEOUT_S
    while subprocess.run(["squeue", "--noheader", "--jobs", job], capture_output=True, text=True,
                         timeout=60, check=False).stdout.strip():
        assert time.monotonic() < deadline, "the array did not finish"
        time.sleep(1.0)
    shown = subprocess.run([*base, "sweep", "show", name, "--json"], env=full_env, capture_output=True, text=True,
                           timeout=TIMEOUT_S, check=False)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["trials"] == 4
    with ResultsStore(store) as opened:  # the workers' journals were imported by the read above
        imported = opened.list_runs(sweep=name)
    finished = [r for r in imported if r.status in (RunStatus.COMPLETED, RunStatus.PRUNED)]
    assert len(finished) == 4 and all(r.model is not None and r.array_task for r in finished)
