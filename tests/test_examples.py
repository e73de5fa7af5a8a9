"""The two shipped examples of your own training code, `lab4_student` (the lab's loop with a student's
own layer classes) and `torch_mlp` (idiomatic PyTorch), used as a user would: listed by `presets`,
headless, in the app, in their shipped sweep specs (pruning, resume after SIGTERM), in a SLURM array
on the real local cluster, and (`lab4_student`) against the built-in engine, on the tiny
Fashion-MNIST and on the real one. Real child processes, real studies; no mocks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select

from tests.conftest import require, require_path
from tests.doubles import FakeGpuProbe, FixedSystemInfo
from tests.support import run_cli
from tuner_tui.app.app import TunerApp
from tuner_tui.app.components.metrics_view import MetricsLiveView
from tuner_tui.app.components.model_screen import ModelScreen
from tuner_tui.engine.events import RunStatus
from tuner_tui.engine.gpu import GpuSnapshot
from tuner_tui.runs.presets import SHIPPED_PRESETS_DIR
from tuner_tui.runs.store import ResultsStore
from tuner_tui.sweeps.spec import load_spec
from tuner_tui.usercode.config import user_config
from tuner_tui.usercode.model_file import load_model_file

EXAMPLES = ("lab4_student", "torch_mlp")
SPECS = {"lab4_student": "lab4_student_search", "torch_mlp": "torch_mlp_search"}
REPORTED = {  # what each reports every epoch of a run of its own (no validation share)
    "lab4_student": {"train_loss", "train_accuracy", "test_accuracy"},
    "torch_mlp": {"val_accuracy", "val_loss", "train_loss"},
}
TUNER_TUI = [sys.executable, "-m", "tuner_tui"]
TIMEOUT_S = 600.0
UI_TIMEOUT_S = 60.0
REAL_RUN_TIMEOUT_S = 2400.0  # fmnist_exp5's 60,000 SGD steps on a busy 2-core CPU
MAX_GAP_PP = 0.5  # the bound on lab4_student against the built-in fmnist_exp5


def stored(env: dict[str, str], sweep: str | None = None) -> list:
    with ResultsStore(Path(env["TUNER_TUI_STORE"])) as store:
        return store.list_runs(sweep=sweep) if sweep else store.list_runs()


def headless(capsys: pytest.CaptureFixture[str], preset: str, *settings: str) -> dict:
    """`tuner-tui --preset PRESET --no-ui --json --set ...` in this process; its JSON (exit 0 asserted)."""
    argv = ["--preset", preset, "--no-ui", "--json"]
    for setting in settings:
        argv += ["--set", setting]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    return json.loads(out)


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# --- listed and headless ---------------------------------------------------------------------------


def test_presets_lists_both_examples_as_shipped_models_and_their_sweep_specs(isolated, capsys) -> None:
    code, out, err = run_cli(capsys, "presets")
    assert code == 0, err
    models = out.split("models (your own code)", 1)[1].split("sweep specs", 1)[0]
    specs = out.split("sweep specs", 1)[1]
    for name in EXAMPLES:
        row = next(line for line in models.splitlines() if line.split()[:1] == [name])
        assert f"{name}.py:train" in row and "shipped" in row
        spec_row = next(line for line in specs.splitlines() if line.split()[:1] == [SPECS[name]])
        assert name in spec_row and "shipped" in spec_row
    assert "skipped" not in out


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_runs_headless_and_is_stored_with_what_it_reported(tiny_env, capsys, name) -> None:
    result = headless(capsys, name, "epochs=2")
    assert result["status"] == "completed"
    assert result["model"]["file"] == str((SHIPPED_PRESETS_DIR / f"{name}.toml").resolve())
    assert result["code"]["file"] == str((SHIPPED_PRESETS_DIR / f"{name}.py").resolve())
    assert [e["epoch"] for e in result["epochs"]] == [1, 2]
    assert all(set(e) >= REPORTED[name] for e in result["epochs"])
    assert set(result["metrics"]) >= REPORTED[name] | {"test_accuracy"}  # test accuracy returned at the end
    assert result["metrics"]["test_accuracy"] > 50.0  # the tiny set is learnable: both learn it
    [run] = stored(tiny_env)
    assert run.status is RunStatus.COMPLETED and run.model is not None


def test_torch_mlp_takes_either_optimizer(tiny_env, capsys) -> None:
    sgd = headless(capsys, "torch_mlp", "epochs=1", "optimizer=sgd", "lr=0.1")
    adam = headless(capsys, "torch_mlp", "epochs=1", "optimizer=adam", "lr=0.001")
    assert sgd["config"]["optimizer"] == "sgd" and adam["config"]["optimizer"] == "adam"
    assert sgd["metrics"] != adam["metrics"]
    code, _, err = run_cli(capsys, "--preset", "torch_mlp", "--no-ui", "--set", "optimizer=rmsprop")
    assert code == 2 and "optimizer: must be one of sgd | adam" in err


@pytest.mark.parametrize("batch_size", [20, 32])  # 32 leaves a partial last batch of the 600 rows
def test_lab4_student_reproduces_the_built_in_engine_under_the_lab_conventions(tiny_env, capsys,
                                                                                 batch_size) -> None:
    """The student's own layers and the built-in engine, from the same seeded init, walk the same batches
    and report the same lab figures (training loss and accuracy of each epoch, test accuracy)."""
    settings = ("epochs=3", f"batch_size={batch_size}", "reg=0.001", "lr=0.01")
    student = headless(capsys, "lab4_student", *settings)
    engine = headless(capsys, "fmnist_exp5", *settings, "device=cpu")
    assert len(student["epochs"]) == len(engine["epochs"]) == 3
    for mine, theirs in zip(student["epochs"], engine["epochs"], strict=True):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4)
        assert mine["train_accuracy"] == pytest.approx(theirs["train_accuracy"], abs=100 / 600 + 1e-9)
        assert mine["test_accuracy"] == pytest.approx(theirs["test_accuracy"], abs=100 / 200 + 1e-9)


# --- in the app ------------------------------------------------------------------------------------


def example_app(store: ResultsStore, name: str, settings: Mapping[str, object]) -> TunerApp:
    model = load_model_file(SHIPPED_PRESETS_DIR / f"{name}.toml")
    probe = FakeGpuProbe(GpuSnapshot.unavailable("no NVIDIA driver"))
    return TunerApp(store, model=model, model_config=user_config(model, settings), gpu_probe=probe,
                    system=FixedSystemInfo(probe, free=8 * 1024**3), list_gpus=list, watch_gpu=False)


async def wait_until(pilot: Pilot, done: Callable[[], object], timeout: float = UI_TIMEOUT_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done():
        assert loop.time() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


# Long enough that F6 lands mid-run: hundreds of epochs of one-row batches (minutes), stopped after one.
LONG_RUNS = {
    "lab4_student": {"epochs": 500, "batch_size": 1},
    "torch_mlp": {"epochs": 200, "batch_size": 1, "hidden": 512},
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_in_the_app_form_from_fields_f5_live_metrics_f6_cancelled(tiny_env, name) -> None:
    with ResultsStore(Path(tiny_env["TUNER_TUI_STORE"])) as store:
        app = example_app(store, name, LONG_RUNS[name])

        async def scenario() -> None:
            async with app.run_test(size=(120, 40)) as pilot:
                await wait_until(pilot, lambda: isinstance(app.screen, ModelScreen))
                screen = app.screen
                assert isinstance(screen, ModelScreen)
                form = screen.form
                for field_name, spec in screen.model.fields.items():  # a select for choices, else an input
                    widget = form.query_one(f"#field-{field_name}")
                    assert isinstance(widget, Select if spec.choices else Input), field_name
                assert form.query_one("#field-epochs", Input).value == str(LONG_RUNS[name]["epochs"])
                if name == "torch_mlp":
                    assert str(form.query_one("#field-optimizer", Select).value) == "adam"
                await wait_until(pilot, lambda: screen.form_state is not None and screen.form_state.values is not None)
                await pilot.press("f5")
                await wait_until(pilot, lambda: screen.running)
                live = screen.query_one(MetricsLiveView)
                await wait_until(pilot, lambda: len(live.reports) >= 1, TIMEOUT_S)
                assert set(live.reports[0].metrics) == REPORTED[name]
                await pilot.press("f6")
                await wait_until(pilot, lambda: not screen.running, TIMEOUT_S)
                [run] = store.list_runs()
                assert run.status is RunStatus.CANCELLED
                assert 1 <= len(run.epochs) < LONG_RUNS[name]["epochs"]

        asyncio.run(scenario())


# --- in their shipped sweep specs -----------------------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_shipped_spec_sweeps_its_example_and_prunes(tiny_env, capsys, name) -> None:
    spec = SPECS[name]
    code, out, err = run_cli(capsys, "sweep", spec, "--no-ui", "--workers", "1", "--json", "--trials", "8")
    assert code == 0, err
    result = json.loads(out)
    assert result["trials"] == 8 and result["completed"] + result["pruned"] == 8
    assert result["pruned"] >= 1, err  # ASHA stops the hopeless learning rates after their first epoch
    runs = stored(tiny_env, spec)
    assert {r.trial for r in runs} == set(range(8)) and all(r.model is not None for r in runs)
    best = next(r for r in runs if r.trial == result["best"]["trial"])
    assert best.status is RunStatus.COMPLETED and best.config.validation == 0.1
    assert best.metrics["val_accuracy"] == pytest.approx(result["best"]["value"])
    assert "test_accuracy" in best.metrics  # measured once, when the trial completed
    assert result["best"]["test_accuracy"] == pytest.approx(best.metrics["test_accuracy"])
    assert result["best"]["metrics"] == pytest.approx(dict(best.metrics))
    assert set(result["best"]["params"]) == set(load_spec(spec).space)


def resumable_spec(tmp_path: Path, name: str) -> Path:
    """A spec over the shipped example (by name), no pruner, trials of 30 epochs (of 120 steps with
    `--set batch_size=4`): long enough that one is caught after its first epoch."""
    path = tmp_path / f"{name}_resume.toml"
    path.write_text(
        f'base = "{name}"\n[space]\nlr = {{ log_uniform = [0.001, 0.01] }}\n'
        "[search]\nvalidation = 0.2\nsampler = \"random\"\npruner = \"none\"\nepochs = 30\ntrials = 3\nseed = 1\n"
    )
    return path


@pytest.mark.parametrize("name", EXAMPLES)
def test_a_sweep_of_each_example_resumes_after_sigterm_without_losing_or_repeating_a_trial(
    tiny_env, tmp_path, name
) -> None:
    env = {**os.environ, **tiny_env, "OMP_NUM_THREADS": "1"}  # one thread: small steps are not slowed by a busy CPU
    argv = [*TUNER_TUI, "sweep", str(resumable_spec(tmp_path, name)), "--set", "batch_size=4", "--no-ui",
            "--workers", "1"]
    sweep = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def trial_1_mid_run() -> bool:
        assert sweep.poll() is None, "the sweep ended before it was stopped"
        runs = stored(tiny_env) if Path(tiny_env["TUNER_TUI_STORE"]).exists() else []
        return any(r.trial == 1 and r.status is RunStatus.RUNNING and r.epochs for r in runs)

    try:
        wait_for(trial_1_mid_run, TIMEOUT_S, "trial 1 to report an epoch")
        sweep.send_signal(signal.SIGTERM)  # trial 1 has reported at least one of its thirty epochs
        _, err = sweep.communicate(timeout=TIMEOUT_S)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    assert sweep.returncode == 143, err
    interrupted = stored(tiny_env)
    assert [r.trial for r in interrupted if r.status is RunStatus.COMPLETED] == [0]
    [cancelled] = [r for r in interrupted if r.status is RunStatus.CANCELLED]
    assert cancelled.trial == 1 and len(cancelled.epochs) >= 1  # kept what it reported

    again = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["trials"] == 3
    finished = [r for r in stored(tiny_env) if r.status is RunStatus.COMPLETED]
    assert len(finished) == 3 and len({r.trial for r in finished}) == 3


# --- on the cluster ------------------------------------------------------------------------------------


@pytest.mark.requires("slurm")
@pytest.mark.parametrize("name", EXAMPLES)
def test_each_shipped_spec_runs_as_a_slurm_array(tiny_env, name) -> None:
    require("slurm")
    spec = SPECS[name]
    env = {**os.environ, **tiny_env, "PYTHONUNBUFFERED": "1"}
    submitted = subprocess.run([*TUNER_TUI, "sweep", spec, "--slurm", "--array", "2", "--trials", "4",
                                "--set", "epochs=1"], env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
                               check=False)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.split("submitted job ", 1)[1].split(":", 1)[0]

    def array_ended() -> bool:
        queued = subprocess.run(["squeue", "--noheader", "--jobs", job], capture_output=True, text=True, timeout=60,
                                check=False)
        return not queued.stdout.strip()

    wait_for(array_ended, TIMEOUT_S, f"array job {job} to end")
    shown = subprocess.run([*TUNER_TUI, "sweep", "show", spec, "--json"], env=env, capture_output=True, text=True,
                           timeout=TIMEOUT_S, check=False)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["trials"] == 4
    finished = [r for r in stored(tiny_env, spec) if r.status in (RunStatus.COMPLETED, RunStatus.PRUNED)]
    assert len(finished) == 4 and len({r.trial for r in finished}) == 4
    assert all(r.model is not None and r.model.train == f"{name}.py:train" and r.array_task for r in finished)


# --- on the real Fashion-MNIST ---------------------------------------------------------------------------


@pytest.mark.requires("fashion-mnist")
@pytest.mark.timeout(2 * REAL_RUN_TIMEOUT_S)
def test_lab4_student_matches_the_built_in_fmnist_exp5_on_the_real_fashion_mnist(isolated) -> None:
    """fmnist_exp5's settings (784→256→10, lr 0.01, batch 20, 20 epochs, λ 0.001, seed 0), both headless.
    Measured here: built-in 88.04 %, lab4_student 88.07 % test accuracy."""
    env = {**os.environ, **isolated, "TUNER_TUI_DATA": str(require_path("fashion-mnist"))}

    def test_accuracy(preset: str) -> float:
        done = subprocess.run([*TUNER_TUI, "--preset", preset, "--no-ui", "--json"], env=env, capture_output=True,
                              text=True, timeout=REAL_RUN_TIMEOUT_S, check=False)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["status"] == "completed" and len(result["epochs"]) == 20
        return float(result["metrics"]["test_accuracy"])

    built_in, student = test_accuracy("fmnist_exp5"), test_accuracy("lab4_student")
    assert built_in > 85.0
    assert abs(student - built_in) <= MAX_GAP_PP, (student, built_in)
