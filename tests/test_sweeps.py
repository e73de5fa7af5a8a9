"""Sweeps: spec parsing and its errors, the study's determinism, the validation split, pruning,
links between trials and runs, resume after a kill, `sweep show`, and the CLI's contract.

Trials train for real on a tiny Fashion-MNIST written in the real IDX format (600 training images),
so each takes well under a second of compute; no timing is asserted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from tests.support import run_cli, wait_for, write_spec
from tuner_tui.engine.datasets import load_dataset
from tuner_tui.engine.events import EpochEnd, RunStatus
from tuner_tui.engine.validation_split import hold_out, validation_rows
from tuner_tui.runs.sqlite_access import StoreError
from tuner_tui.runs.store import ResultsStore
from tuner_tui.sweeps.scheduler import SweepEvent, TrialEnded, TrialRunEvent, run_sweep
from tuner_tui.sweeps.spec import SpecError, list_specs, load_spec, parse_spec
from tuner_tui.sweeps.study import RUN_UID_ATTR, holder_of, open_study
from tuner_tui.sweeps.summary import importances, load_summary

SUBPROCESS_TIMEOUT_S = 900  # generous: CI is a loaded 2-core machine


@pytest.fixture
def data_root(tiny_fmnist: Path) -> Path:
    return tiny_fmnist


def storage_of(tiny_env: dict[str, str]) -> str:
    store = Path(tiny_env["TUNER_TUI_STORE"])
    return f"sqlite:///{store.with_name('runs.optuna.sqlite3')}"


# --- specs ------------------------------------------------------------------------------------


def test_the_shipped_specs_load_and_search_the_lab_fields(tiny_env) -> None:
    specs, errors = list_specs()
    assert errors == []
    by_name = {spec.name: spec for spec in specs}
    assert {"fmnist_search", "cifar_search"} <= set(by_name)
    fmnist = by_name["fmnist_search"]
    assert set(fmnist.space) == {"lr", "hidden", "batch_size", "reg"}
    assert fmnist.base.dataset == "fmnist" and by_name["cifar_search"].base.dataset == "cifar10"
    assert fmnist.base.epochs == fmnist.search.epochs == 5
    assert fmnist.base.validation == fmnist.search.validation == 0.1


def test_set_overrides_the_base_config_and_epochs_sets_the_most_a_trial_trains(tiny_env) -> None:
    spec = load_spec("fmnist_search", overrides={"epochs": "2", "seed": "7"})
    assert spec.search.epochs == 2 and spec.base.epochs == 2 and spec.base.seed == 7


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[space]\nlr = { log_uniform = [0.1, 0.01] }", "space.lr.log_uniform: must be [low, high] with low < high"),
        ("[space]\nlr = { log_uniform = [0.0, 0.1] }", "space.lr.log_uniform: a log range must start above 0"),
        ("[space]\nepochs = { choice = [1, 2] }", "space.epochs: cannot be searched"),
        ("[space]\nlr = { normal = [0, 1] }", "space.lr: must name exactly one of choice"),
        ("[space]\nlr = 0.1", "space.lr: must be a table"),
        ("[space]\nbatch_size = { choice = [10, 100000] }", "space.batch_size: must be"),
        ("[space]\nhidden = { uniform = [16, 64] }", "space.hidden: layer sizes are whole numbers"),
        ("[space]\nlr = { choice = [0.1, 50.0] }", "space.lr: must be a number in (0, 10]"),
        ("[space]\nlr = { choice = [0.1] }\n[search]\nobjective = 'test_accuracy'", "search.objective: must be one of"),
        ("[space]\nlr = { choice = [0.1] }\n[search]\nsampler = 'bayes'", "search.sampler: must be one of"),
        ("[space]\nlr = { choice = [0.1] }\n[search]\nvalidation = 0.9", "search.validation: must be a share in"),
        ("[space]\nlr = { choice = [0.1] }\n[search]\ntrials = 0", "search.trials: must be a whole number in [1,"),
        ("[space]\nlr = { choice = [0.1] }\n[search]\nbudget = 3", "search.budget: unknown key"),
        ("[space]\nlr = { uniform = [0.01, 0.1] }\n[search]\nsampler = 'grid'", "space.lr: the grid sampler needs"),
        ("base = 'nope'\n[space]\nlr = { choice = [0.1] }", "base: unknown preset 'nope'"),
        ("[config]\nepochs = 0\n[space]\nlr = { choice = [0.1] }", "config.epochs: must be a whole number"),
        ("colour = 1\n[space]\nlr = { choice = [0.1] }", "colour: unknown key"),
        ("", "space: must be a table with at least one field"),
    ],
)
def test_a_bad_spec_names_the_file_the_key_and_the_rule(tiny_env, tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_spec(str(path))
    assert any(line.startswith(f"{path}: {problem}") for line in caught.value.problems), caught.value.problems


def test_every_problem_of_a_spec_is_reported_one_line_each(tiny_env, tmp_path: Path, capsys) -> None:
    path = tmp_path / "many.toml"
    path.write_text("[space]\nlr = { log_uniform = [0.0, 1.0] }\nepochs = { choice = [1] }\n[search]\npruner = 'x'\n")
    code, out, err = run_cli(capsys, "sweep", str(path), "--no-ui")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(str(path) in line for line in lines)
    assert "Traceback" not in err


def test_show_is_not_a_valid_sweep_name(tiny_env) -> None:
    with pytest.raises(SpecError, match="not 'show'"):
        parse_spec({"space": {"lr": {"choice": [0.1]}}}, source="x", name="show")


def test_an_unknown_spec_suggests_close_names(tiny_env, capsys) -> None:
    code, _, err = run_cli(capsys, "sweep", "fmnist_serch", "--no-ui")
    assert code == 2 and "did you mean fmnist_search" in err


# --- the study ------------------------------------------------------------------------------


def _asked_params(spec_path: Path, storage: str, name: str, count: int) -> list[dict]:
    sweep = open_study(load_spec(str(spec_path)), name, storage, budget=count, create=True)
    asked = []
    for _ in range(count):
        trial = sweep.study.ask()
        asked.append(sweep.params_of(trial))
        sweep.study.tell(trial, 1.0)
    return asked


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_seeded_sampler_asks_the_same_parameters_every_time(tiny_env, tmp_path: Path, sampler: str) -> None:
    spec_path = write_spec(tmp_path / "specs", sampler=sampler)
    first = _asked_params(spec_path, f"sqlite:///{tmp_path / 'a.db'}", "one", 6)
    second = _asked_params(spec_path, f"sqlite:///{tmp_path / 'b.db'}", "one", 6)
    assert first == second
    assert len({json.dumps(p, sort_keys=True) for p in first}) > 1


def test_rerunning_a_name_with_another_spec_is_refused_unless_renamed(tiny_env, tmp_path: Path, capsys) -> None:
    spec_path = write_spec(tmp_path / "specs", trials=1, epochs=1)
    assert run_cli(capsys, "sweep", str(spec_path), "--no-ui")[0] == 0
    code, _, err = run_cli(capsys, "sweep", str(spec_path), "--no-ui", "--set", "seed=5")
    assert code == 2 and "--name" in err and len(err.strip().splitlines()) == 1
    assert run_cli(capsys, "sweep", str(spec_path), "--no-ui", "--set", "seed=5", "--name", "tiny2")[0] == 0


# --- the validation split -------------------------------------------------------------------


def test_the_validation_rows_are_stable_sorted_and_the_requested_share() -> None:
    rows = validation_rows(1000, 0.1)
    assert rows.tolist() == validation_rows(1000, 0.1).tolist()
    assert rows.tolist() == sorted(rows.tolist()) and len(rows) == 100 and len(set(rows.tolist())) == 100


def test_holding_out_keeps_every_row_once_and_the_training_rows_in_file_order(data_root: Path) -> None:
    dataset = load_dataset("fmnist", data_root, download=False)
    split = hold_out(dataset, 0.25)
    held = validation_rows(600, 0.25)
    kept = torch.ones(600, dtype=torch.bool)
    kept[held] = False
    assert split.val_images is not None and split.val_labels is not None
    assert split.train_images.shape[0] + split.val_images.shape[0] == 600
    assert torch.equal(split.train_images, dataset.train_images[kept])
    assert torch.equal(split.val_images, dataset.train_images[held])
    assert torch.equal(split.val_labels, dataset.train_labels[held])
    assert torch.equal(split.test_images, dataset.test_images)


# --- running sweeps -------------------------------------------------------------------------


def _run(spec_path: Path, storage: str, name: str, budget: int) -> tuple[list[SweepEvent], ResultsStore]:
    sweep = open_study(load_spec(str(spec_path)), name, storage, budget=budget, create=True)
    store = ResultsStore(Path(os.environ["TUNER_TUI_STORE"]))
    events: list[SweepEvent] = []
    run_sweep(sweep, store, events.append, cancel=threading.Event())
    return events, store


def test_a_pruner_stops_trials_and_they_are_stored_as_pruned(tiny_env, tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path / "specs", pruner="asha", epochs=4, trials=8)
    events, store = _run(spec_path, storage_of(tiny_env), "pruning", 8)
    ended = [e for e in events if isinstance(e, TrialEnded)]
    pruned = [e for e in ended if e.status is RunStatus.PRUNED]
    assert len(ended) == 8 and pruned
    for event in pruned:
        run = store.get_run(event.run_id)
        assert run.status == "pruned" and 0 <= len(run.epochs) < 4 and run.sweep == "pruning"
        assert all(epoch.test_accuracy is None for epoch in run.epochs)  # a trial takes no test pass until it completes
    completed = [store.get_run(e.run_id) for e in ended if e.status is RunStatus.COMPLETED]
    for run in completed:  # its one test pass, at the end
        assert [e.test_accuracy is not None for e in run.epochs] == [False] * (len(run.epochs) - 1) + [True]
        assert run.test_accuracy is not None
    store.close()


def test_a_trial_is_checked_within_an_epoch_and_can_be_pruned_before_its_first_ends(tiny_env, tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path / "specs", pruner="asha", epochs=2, trials=10)
    _events, store = _run(spec_path, storage_of(tiny_env), "within", 10)
    sweep = open_study(load_spec(str(spec_path)), "within", storage_of(tiny_env), budget=None, create=False)
    parts = sweep.spec.search.reports_per_epoch
    assert parts > 1
    steps = {step for trial in sweep.trials() for step in trial.intermediate_values}
    assert set(range(1, parts)) <= steps  # checks within the first epoch reached the pruner
    within = [r for r in store.list_runs(sweep="within") if r.status == "pruned" and not r.epochs]
    assert within and all(r.message.startswith("pruned in epoch 1 at step ") for r in within)
    store.close()


def test_each_trial_is_a_stored_run_linked_both_ways(tiny_env, tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path / "specs", trials=3, epochs=2)
    _, store = _run(spec_path, storage_of(tiny_env), "links", 3)
    sweep = open_study(load_spec(str(spec_path)), "links", storage_of(tiny_env), budget=None, create=False)
    runs = {run.trial: run for run in store.list_runs(sweep="links")}
    assert sorted(runs) == [0, 1, 2]
    for trial in sweep.trials():
        run = runs[trial.number]
        assert trial.system_attrs[RUN_UID_ATTR] == run.uid
        assert run.config.lr == pytest.approx(trial.params["lr"])
        assert run.config.batch_size == trial.params["batch_size"]
        assert run.config.validation == 0.2 and run.epochs[-1].val_accuracy is not None
        if trial.state is TrialState.COMPLETE:
            assert trial.value == pytest.approx(run.epochs[-1].val_accuracy)
    assert all(run.label == f"links #{run.trial}" for run in runs.values())
    store.close()


def test_a_diverged_trial_is_told_as_pruned_with_the_worst_value(tiny_env, tmp_path: Path) -> None:
    path = tmp_path / "specs" / "diverge.toml"
    path.parent.mkdir(parents=True)
    path.write_text(
        'base = "fmnist_quick"\n[config]\nhidden = [64, 64, 64]\ndevice = "cpu"\nchance_patience = 1\n'
        "[space]\nlr = { choice = [10.0] }\n[search]\nvalidation = 0.2\npruner = 'none'\nepochs = 3\ntrials = 1\n"
    )
    events, store = _run(path, storage_of(tiny_env), "diverge", 1)
    [ended] = [e for e in events if isinstance(e, TrialEnded)]
    assert ended.status is RunStatus.DIVERGED
    sweep = open_study(load_spec(str(path)), "diverge", storage_of(tiny_env), budget=None, create=False)
    [trial] = sweep.trials()
    assert trial.state is TrialState.PRUNED
    assert trial.intermediate_values[max(trial.intermediate_values)] == 0.0
    assert store.get_run(ended.run_id).status == "diverged"
    store.close()


def test_json_reports_the_budget_counts_and_the_best_run(tiny_env, tmp_path: Path, capsys) -> None:
    spec_path = write_spec(tmp_path / "specs", trials=3, epochs=2)
    code, out, _ = run_cli(capsys, "sweep", str(spec_path), "--no-ui", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"sweep", "trials", "completed", "pruned", "failed", "cancelled", "interrupted", "best"}
    assert result["sweep"] == "tiny" and result["trials"] == 3
    assert result["completed"] + result["pruned"] == 3
    best = result["best"]
    assert set(best) == {"run_id", "trial", "params", "value", "test_accuracy", "metrics"}
    assert best["metrics"] == {}  # a run of the built-in engine reports no metrics of its own
    with ResultsStore(Path(tiny_env["TUNER_TUI_STORE"])) as store:
        run = store.get_run(best["run_id"])
    assert run.trial == best["trial"] and run.epochs[-1].val_accuracy == pytest.approx(best["value"])
    assert best["test_accuracy"] == run.test_accuracy is not None
    code, out, _ = run_cli(capsys, "runs", "--json")
    assert best["run_id"] in [json.loads(line)["run_id"] for line in out.splitlines()]


def test_sweep_show_has_the_best_trial_a_top_table_and_importances(tiny_env, tmp_path: Path, capsys) -> None:
    spec_path = write_spec(tmp_path / "specs", trials=5, epochs=2)
    assert run_cli(capsys, "sweep", str(spec_path), "--no-ui")[0] == 0
    code, out, _ = run_cli(capsys, "sweep", "show", "tiny", "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["best"]["trial"] == shown["top"][0]["trial"]
    assert set(shown["importances"]) == {"lr", "batch_size"}
    assert sum(shown["importances"].values()) == pytest.approx(1.0)
    completed = [t for t in shown["top"] if t["status"] == "completed"]
    assert completed and all(t["epochs"] == 2 for t in completed)  # every epoch of a 2-epoch trial, the last too
    code, out, _ = run_cli(capsys, "sweep", "show", "tiny")
    assert code == 0 and "parameter importances" in out and "top trials" in out
    assert f"test accuracy {shown['best']['test_accuracy']:.2f} %" in out
    code, out, _ = run_cli(capsys, "sweeps")
    assert code == 0 and "tiny" in out and "5/5" in out


def test_show_of_an_unknown_sweep_is_bad_input(tiny_env, capsys) -> None:
    code, _, err = run_cli(capsys, "sweep", "show", "nothing")
    assert code == 2 and "no sweep named 'nothing'" in err


def test_importances_need_two_completed_trials(tiny_env, tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path / "specs", trials=1, epochs=1)
    _run(spec_path, storage_of(tiny_env), "one", 1)[1].close()
    sweep = open_study(load_spec(str(spec_path)), "one", storage_of(tiny_env), budget=None, create=False)
    assert importances(sweep.study) is None


# --- faults ---------------------------------------------------------------------------------


def _sweep_process(
    tiny_env: dict[str, str], spec_path: Path, trials: int, workers: int = 1
) -> subprocess.Popen[str]:
    """A headless sweep in its own process; one trial at a time per worker (no packs)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tuner_tui", "sweep", str(spec_path), "--no-ui", "--trials", str(trials),
         "--workers", str(workers), "--pack", "1"],
        env={**os.environ, **tiny_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finished_trials(tiny_env: dict[str, str], spec_path: Path) -> int:
    try:
        sweep = open_study(load_spec(str(spec_path)), "tiny", storage_of(tiny_env), budget=None, create=False)
    except Exception:  # the storage may not exist yet
        return 0
    return sweep.read(time.time()).finished()


def _running_epochs(tiny_env: dict[str, str]) -> int:
    path = Path(tiny_env["TUNER_TUI_STORE"])
    try:
        with ResultsStore.open_existing(path) as store:
            return max((len(r.epochs) for r in store.list_runs() if r.status == "running"), default=0)
    except StoreError:  # not there yet, or still being created by the sweep
        return 0


def test_a_killed_sweep_resumes_to_exactly_its_budget(tiny_env, tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path / "specs", trials=6, epochs=60)  # long enough to be caught mid-trial
    process = _sweep_process(tiny_env, spec_path, 6)
    try:
        wait_for(lambda: _finished_trials(tiny_env, spec_path) >= 2 and _running_epochs(tiny_env) >= 1,
                 SUBPROCESS_TIMEOUT_S, "two finished trials and an epoch of a third", poll=0.2)
    finally:
        process.kill()
        process.communicate(timeout=60)
    resumed = _sweep_process(tiny_env, spec_path, 8)
    _, err = resumed.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert resumed.returncode == 0, err
    sweep = open_study(load_spec(str(spec_path)), "tiny", storage_of(tiny_env), budget=None, create=False)
    finished = sweep.trials((TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 8
    [killed] = [t for t in sweep.trials((TrialState.FAIL,))]
    again = [t for t in finished if t.user_attrs.get("requeued_from") == killed.number]
    assert len(again) == 1 and again[0].params == killed.params
    with ResultsStore(Path(tiny_env["TUNER_TUI_STORE"])) as store:
        runs = store.list_runs(sweep="tiny")
    assert sorted(r.trial for r in runs if r.status in ("completed", "pruned")) == sorted(t.number for t in finished)
    [interrupted] = [r for r in runs if r.status == "interrupted"]
    assert interrupted.trial == killed.number and len(interrupted.epochs) >= 1
    summary = load_summary(sweep.study)
    assert [t.number for t in summary.interruptions()] == [killed.number]


def test_sigterm_stops_the_sweep_stores_the_trial_cancelled_and_resume_asks_it_again(
    tiny_env, tmp_path: Path
) -> None:
    spec_path = write_spec(tmp_path / "specs", trials=4, epochs=60)
    process = _sweep_process(tiny_env, spec_path, 4)
    try:
        wait_for(lambda: _running_epochs(tiny_env) >= 1, SUBPROCESS_TIMEOUT_S, "a trial's first epoch", poll=0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    with ResultsStore(Path(tiny_env["TUNER_TUI_STORE"])) as store:
        [cancelled] = [r for r in store.list_runs(sweep="tiny") if r.status == "cancelled"]
    assert len(cancelled.epochs) >= 1
    resumed = _sweep_process(tiny_env, spec_path, 1)
    _, err = resumed.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert resumed.returncode == 0, err
    sweep = open_study(load_spec(str(spec_path)), "tiny", storage_of(tiny_env), budget=None, create=False)
    [failed] = sweep.trials((TrialState.FAIL,))
    [again] = [t for t in sweep.trials() if t.user_attrs.get("requeued_from") == failed.number]
    assert again.params == failed.params and again.state in (TrialState.COMPLETE, TrialState.PRUNED)


def test_killing_a_sweep_stops_its_workers_and_resume_meets_the_budget(tiny_env, tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path / "specs", trials=6, epochs=60)
    process = _sweep_process(tiny_env, spec_path, 6, workers=2)
    try:
        wait_for(lambda: _finished_trials(tiny_env, spec_path) >= 1 and _running_epochs(tiny_env) >= 1,
                 SUBPROCESS_TIMEOUT_S, "a finished trial and an epoch of the next", poll=0.2)
    finally:
        process.kill()  # SIGKILL: the workers are told by the kernel (their parent died) and stop
        process.communicate(timeout=60)
    wait_for(lambda: _open_runs(tiny_env) == 0, 120, "no run left open", poll=0.2)
    resumed = _sweep_process(tiny_env, spec_path, 7, workers=2)
    _, err = resumed.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert resumed.returncode == 0, err
    sweep = open_study(load_spec(str(spec_path)), "tiny", storage_of(tiny_env), budget=None, create=False)
    assert len(sweep.trials((TrialState.COMPLETE, TrialState.PRUNED))) == 7
    stopped = [t for t in sweep.trials((TrialState.FAIL,)) if t.system_attrs.get("tuner_tui.outcome") != "surplus"]
    assert stopped and all(t.system_attrs.get("tuner_tui.fault") == "SIGTERM" for t in stopped)
    asked_again = {t.user_attrs.get("requeued_from") for t in sweep.trials()}
    assert {t.number for t in stopped} <= asked_again
    workers = {holder_of(t).worker for t in sweep.trials((TrialState.COMPLETE,))}
    assert len(workers) == 2


def _open_runs(tiny_env: dict[str, str]) -> int:
    with ResultsStore.open_existing(Path(tiny_env["TUNER_TUI_STORE"])) as store:
        return sum(1 for r in store.list_runs() if r.status == "running")


def test_a_trial_asked_past_the_budget_by_a_concurrent_worker_is_surplus(tiny_env, tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path / "specs", trials=2)
    sweep = open_study(load_spec(str(spec_path)), "race", storage_of(tiny_env), budget=2, create=True)
    first, second, third = sweep.study.ask(), sweep.study.ask(), sweep.study.ask()
    for trial in (first, second, third):  # three workers asked at once; each holds its trial
        sweep.hold(trial, "worker", time.time() + 60)
    assert [sweep.surplus(t.number) for t in (first, second, third)] == [False, False, True]
    sweep.study.tell(first, 1.0)
    assert not sweep.surplus(second.number) and sweep.surplus(third.number)


def test_a_trial_waiting_to_be_asked_again_is_not_shown_as_running(tiny_env, tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path / "specs", trials=3)
    sweep = open_study(load_spec(str(spec_path)), "queued", storage_of(tiny_env), budget=3, create=True)
    trial = sweep.study.ask()
    sweep.params_of(trial)
    frozen = sweep.study.tell(trial, state=TrialState.FAIL)
    sweep.ask_again(frozen)
    summary = load_summary(sweep.study)
    assert summary.waiting == 1 and summary.state == "stopped"
    assert [row.status for row in summary.trials] == [RunStatus.FAILED]


def test_packed_trials_fill_packs_by_batch_size_and_meet_the_budget(tiny_env, tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path / "specs", pruner="asha", epochs=3, trials=9)
    sweep = open_study(load_spec(str(spec_path)), "packed", storage_of(tiny_env), budget=9, create=True)
    events: list[SweepEvent] = []
    with ResultsStore(Path(tiny_env["TUNER_TUI_STORE"])) as store:
        outcome = run_sweep(sweep, store, events.append, cancel=threading.Event(), pack=lambda batch_size: 3)
        runs = store.list_runs(sweep="packed")
    assert outcome.stopped_by == "budget"
    assert len(sweep.trials((TrialState.COMPLETE, TrialState.PRUNED))) == 9
    assert not sweep.trials((TrialState.RUNNING,)) and not sweep.trials((TrialState.FAIL,))
    assert sorted(r.trial for r in runs) == list(range(9))
    assert max(r.pack_size for r in runs) > 1
    for trial in sweep.trials():
        [run] = [r for r in runs if r.trial == trial.number]
        assert trial.system_attrs[RUN_UID_ATTR] == run.uid
        assert run.config.batch_size == trial.params["batch_size"]
        if trial.state is TrialState.COMPLETE:
            assert trial.value == pytest.approx(run.epochs[-1].val_accuracy)
    ended = [e for e in events if isinstance(e, TrialEnded)]
    assert sorted(e.number for e in ended) == list(range(9))


def test_a_packed_sweep_stopped_gives_back_its_queued_trials(tiny_env, tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path / "specs", epochs=3, trials=6)
    sweep = open_study(load_spec(str(spec_path)), "stopped", storage_of(tiny_env), budget=6, create=True)
    cancel = threading.Event()

    def stop_after_first_epoch(event: SweepEvent) -> None:
        if isinstance(event, TrialRunEvent) and isinstance(event.event, EpochEnd):
            cancel.set()

    with ResultsStore(Path(tiny_env["TUNER_TUI_STORE"])) as store:
        run_sweep(sweep, store, stop_after_first_epoch, cancel=cancel, pack=lambda batch_size: 2)
    assert not sweep.trials((TrialState.RUNNING,))
    failed = sweep.trials((TrialState.FAIL,))
    assert failed and all(t.system_attrs.get("tuner_tui.outcome") == "cancelled" for t in failed)
    waiting = [t for t in sweep.study.get_trials() if t.state is TrialState.WAITING]
    assert {t.user_attrs["requeued_from"] for t in waiting} == {t.number for t in failed}


@pytest.mark.parametrize("sampler", ["gp", "cmaes", "grid"])
def test_every_sampler_of_the_spec_asks_valid_parameters(tiny_env, tmp_path: Path, sampler: str) -> None:
    path = tmp_path / "specs" / f"{sampler}.toml"
    path.parent.mkdir(parents=True)
    path.write_text(
        "[space]\nlr = { uniform = [0.01, 0.1], step = 0.01 }\nbatch_size = { choice = [20, 50] }\n"
        f"[search]\nsampler = '{sampler}'\nepochs = 1\ntrials = 4\n"
    )
    asked = _asked_params(path, f"sqlite:///{tmp_path / 'study.db'}", sampler, 4)
    assert all(0.01 <= p["lr"] <= 0.1 and p["batch_size"] in (20, 50) for p in asked)


def test_a_worker_holds_at_most_its_share_of_what_is_left_of_the_budget(tiny_env, tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path / "specs", trials=10)
    sweep = open_study(load_spec(str(spec_path)), "share", storage_of(tiny_env), budget=10, create=True)
    assert sweep.read(time.time()).share("a") == 10  # alone, a worker may take the whole budget
    other = sweep.study.ask()
    sweep.hold(other, "b", time.time() + 60)
    assert sweep.read(time.time()).share("a") == 5  # b holds a trial: half each
    sweep.study.tell(other, 1.0)
    assert sweep.read(time.time()).share("a") == 9  # b is between trials; one trial finished
    gone = sweep.study.ask()
    sweep.hold(gone, "c", time.time() - 1)  # its lease expired: c is not counted
    assert sweep.read(time.time()).share("a") == 9


def test_a_packing_worker_leaves_trials_for_a_worker_that_is_busy(tiny_env, tmp_path: Path) -> None:
    """Another worker holds a trial while this one fills packs: this one asks at most its share."""
    spec_path = write_spec(tmp_path / "specs", trials=8)
    sweep = open_study(load_spec(str(spec_path)), "fair", storage_of(tiny_env), budget=8, create=True)
    busy = sweep.study.ask()
    sweep.params_of(busy)
    sweep.hold(busy, "busy worker", time.time() + 600)
    cancel = threading.Event()
    held_at_most = 0

    def watch(event: SweepEvent) -> None:
        nonlocal held_at_most
        mine = [t for t in sweep.trials((TrialState.RUNNING,)) if t.number != busy.number]
        held_at_most = max(held_at_most, len(mine))
        if sweep.read(time.time()).finished() >= 4:
            cancel.set()

    with ResultsStore(Path(tiny_env["TUNER_TUI_STORE"])) as store:
        run_sweep(sweep, store, watch, cancel=cancel, pack=lambda batch_size: 8)
    assert 0 < held_at_most <= 4  # (8 budget − 0 finished) / 2 workers


def test_a_trial_held_for_a_pack_reads_held_not_running(tiny_env, tmp_path: Path) -> None:
    from tuner_tui.app.components.sweep_screen import summary_text

    spec_path = write_spec(tmp_path / "specs", trials=4)
    sweep = open_study(load_spec(str(spec_path)), "held", storage_of(tiny_env), budget=4, create=True)
    training, waiting = sweep.study.ask(), sweep.study.ask()
    for trial in (training, waiting):
        sweep.params_of(trial)
        sweep.hold(trial, "w", time.time() + 60)
    sweep.study._storage.set_trial_system_attr(training._trial_id, RUN_UID_ATTR, "run-uid")  # its run started
    summary = load_summary(sweep.study)
    assert {t.number: t.state for t in summary.trials} == {training.number: "running", waiting.number: "held"}
    assert "1 running · 1 held for a pack" in summary_text(summary)
    [worker] = summary.workers
    assert worker.current_trial == training.number


def test_sweep_json_counts_cancelled_and_interrupted_trials_apart_from_failed_ones() -> None:
    from tuner_tui.commands.sweep import sweep_json
    from tuner_tui.sweeps.summary import SweepSummary, TrialRow

    def row(number: int, status: RunStatus) -> TrialRow:
        return TrialRow(number, status, {}, None, 0, {}, None, None, None, None, None, None)

    statuses = [RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.CANCELLED, RunStatus.INTERRUPTED]
    summary = SweepSummary("s", None, "maximize", "val_accuracy", 4,
                           tuple(row(n, status) for n, status in enumerate(statuses)), ())
    counts = sweep_json(summary, store_path=None)
    assert (counts["failed"], counts["cancelled"], counts["interrupted"]) == (1, 2, 1)
