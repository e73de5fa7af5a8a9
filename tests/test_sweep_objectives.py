"""Several objectives, patience and a target: a tuner-tui sweep on tiny real data (the tiny
Fashion-MNIST in the IDX format) that searches accuracy against time, and sweeps that stop early."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.support import run_cli, write_spec
from tests.test_sweeps import storage_of
from tuner_tui.runs.store import ResultsStore
from tuner_tui.sweeps.scheduler import SweepEvent, run_sweep
from tuner_tui.sweeps.spec import SpecError, load_spec
from tuner_tui.sweeps.stopping import search_done
from tuner_tui.sweeps.study import open_study
from tuner_tui.sweeps.summary import load_summary

TWO_OBJECTIVES = 'objectives = { val_accuracy = "maximize", train_time_s = "minimize" }'


def spec_file(tmp_path: Path, extra: str, *, sampler: str = "random", trials: int = 6) -> Path:
    """The tiny spec with no objective or pruner of its own, one epoch a trial, `extra` in [search]."""
    return write_spec(tmp_path / "specs", "objectives", objective=None, pruner=None, epochs=1, sampler=sampler,
                      trials=trials, extra=extra)


def sweep_of(spec_path: Path, tiny_env: dict[str, str], name: str, budget: int):
    sweep = open_study(load_spec(str(spec_path)), name, storage_of(tiny_env), budget=budget, create=True)
    events: list[SweepEvent] = []
    with ResultsStore(Path(os.environ["TUNER_TUI_STORE"])) as store:
        outcome = run_sweep(sweep, store, events.append, cancel=threading.Event())
    return sweep, outcome


def test_a_sweep_of_two_objectives_finds_a_pareto_front_of_accuracy_against_time(tiny_env, tmp_path, capsys) -> None:
    spec_path = spec_file(tmp_path, TWO_OBJECTIVES, sampler="tpe")
    spec = load_spec(str(spec_path))
    assert spec.search.metric_names == ["val_accuracy", "train_time_s"] and spec.search.pruner == "none"
    sweep, outcome = sweep_of(spec_path, tiny_env, "front", 6)
    assert outcome.stopped_by == "budget"
    assert [d.name for d in sweep.study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert sweep.study.metric_names == ["val_accuracy", "train_time_s"]
    completed = sweep.trials((TrialState.COMPLETE,))
    assert len(completed) == 6 and all(len(t.values) == 2 and t.values[1] > 0 for t in completed)
    summary = load_summary(sweep.study)
    assert summary.objectives == ("val_accuracy", "train_time_s") and summary.multi_objective
    front = summary.pareto()
    assert front
    for trial in front:  # no completed trial is at least as good in both and better in one
        assert not any(o.values[0] >= trial.values[0] and o.values[1] <= trial.values[1]
                       and tuple(o.values) != trial.values for o in completed)

    code, out, err = run_cli(capsys, "sweep", "show", "front", "--storage", storage_of(tiny_env), "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["directions"] == ["maximize", "minimize"]
    assert sorted(p["number"] for p in shown["pareto"]) == [t.number for t in front]
    assert all(p["run_id"] is not None and len(p["values"]) == 2 for p in shown["pareto"])


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ('objectives = { val_accuracy = "maximize" }', "search.objectives: must name two or more"),
        ('objectives = { val_accuracy = "maximize", speed = "minimize" }', "search.objectives.speed: not a recorded"),
        ('objectives = { val_accuracy = "up", train_time_s = "minimize" }', "must be maximize or minimize"),
        (TWO_OBJECTIVES + '\npruner = "asha"', "search.pruner: pruning is off with several objectives"),
        (TWO_OBJECTIVES + "\npatience = 3", "search.patience: needs one objective"),
    ],
)
def test_bad_objectives_are_refused_naming_the_key(tiny_env, tmp_path, extra: str, problem: str) -> None:
    with pytest.raises(SpecError) as raised:
        load_spec(str(spec_file(tmp_path, extra)))
    assert any(problem in line for line in raised.value.problems), raised.value.problems


def test_a_cmaes_sampler_is_refused_with_several_objectives(tiny_env, tmp_path) -> None:
    with pytest.raises(SpecError) as raised:
        load_spec(str(spec_file(tmp_path, TWO_OBJECTIVES, sampler="cmaes")))
    assert any("search.sampler: cmaes searches one objective" in line for line in raised.value.problems)


def test_patience_stops_asking_and_sweep_show_says_why(tiny_env, tmp_path, capsys) -> None:
    spec_path = spec_file(tmp_path, "patience = 2", trials=30)
    sweep, outcome = sweep_of(spec_path, tiny_env, "patient", 30)
    assert outcome.stopped_by == "patience"
    finished = sweep.read(time.time()).finished()
    assert 3 <= finished < 30
    assert search_done(sweep.trials(), "maximize", patience=2, target=None) is not None
    code, out, err = run_cli(capsys, "sweep", "show", "patient", "--storage", storage_of(tiny_env), "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["stop_reason"].startswith("patience: no better trial in the last 2 finished")
    assert shown["state"] == "finished"
    code, out, _ = run_cli(capsys, "sweep", "show", "patient", "--storage", storage_of(tiny_env))
    assert "stopped before its budget: patience" in out


def test_a_target_stops_the_sweep_once_the_best_reaches_it(tiny_env, tmp_path, capsys) -> None:
    spec_path = spec_file(tmp_path, "", trials=20)
    code, _, err = run_cli(capsys, "sweep", str(spec_path), "--no-ui", "--workers", "1", "--name", "aimed",
                             "--target", "1", "--json")  # 1 % validation accuracy: reached by the first trial
    assert code == 0, err
    assert "(target)" in err or "target:" in err
    sweep = open_study(load_spec(str(spec_path)), "aimed", storage_of(tiny_env), budget=None, create=False)
    assert sweep.read(time.time()).finished() == 1 and sweep.read(time.time()).target == 1.0
    code, _, err = run_cli(capsys, "sweep", str(spec_path), "--no-ui", "--target", "nan")
    assert code == 2 and "--target" in err and err.count("\n") == 1


def test_search_done_counts_pruned_trials_as_no_better_and_needs_a_best() -> None:
    import optuna

    study = optuna.create_study(direction="minimize")
    for value in (5.0, 4.0, 6.0):
        study.add_trial(optuna.trial.create_trial(value=value))
    pruned = optuna.trial.create_trial(state=TrialState.PRUNED, intermediate_values={1: 9.0})
    study.add_trial(pruned)
    trials = study.get_trials()
    assert search_done(trials, "minimize", patience=2, target=None) == \
        "patience: no better trial in the last 2 finished (patience 2)"
    assert search_done(trials, "minimize", patience=3, target=None) is None
    assert search_done(trials, "minimize", patience=None, target=4.0) is not None
    assert search_done(trials, "minimize", patience=None, target=3.9) is None
    assert search_done([pruned], "minimize", patience=1, target=None) is None
