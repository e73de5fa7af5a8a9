"""`tuner-tui lab`: the lab's experiments run together, each stored under its preset with the same
figures as its solo run (float32: within 0.1 pp of test accuracy), on a tiny Fashion-MNIST in the
real IDX format; and the plan that hands units to workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner_tui.cli import main
from tuner_tui.engine.config import RunConfig
from tuner_tui.runs.lab_plan import Experiment, claimed_units, lab_presets, plan_units, write_plan

TOLERANCE_PP = 0.1


@pytest.fixture
def data_root(tiny_fmnist: Path) -> Path:
    return tiny_fmnist


def run_cli(capture: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`main(argv)` in-process: (exit code, stdout, stderr); with capfd, the workers' lines too."""
    code = main(list(argv))
    out, err = capture.readouterr()
    return code, out, err


def test_the_lab_sets_are_the_shipped_experiments() -> None:
    assert [p.name for p in lab_presets("fmnist")] == [f"fmnist_exp{i}" for i in range(1, 11)]
    assert [p.name for p in lab_presets("cifar10")] == [f"cifar_exp{i}" for i in range(1, 11)]
    assert len(lab_presets("all")) == 20


def test_units_group_runs_that_can_share_a_pack_and_respect_the_pack_size() -> None:
    experiments = [Experiment(p.name, p.config, str(i)) for i, p in enumerate(lab_presets("fmnist"))]
    units = plan_units(experiments, lambda batch_size: 4)
    assert sorted(e.preset for unit in units for e in unit) == sorted(e.preset for e in experiments)
    for unit in units:
        assert 1 <= len(unit) <= 4
        assert len({(e.config.batch_size, e.config.dataset) for e in unit}) == 1
    batch_10 = [e for e in experiments if e.config.batch_size == 10]
    assert sum(1 for unit in units if unit[0].config.batch_size == 10) == -(-len(batch_10) // 4)
    assert all(len(unit) == 1 for unit in plan_units(experiments, lambda batch_size: 1))


def test_a_group_is_spread_over_the_workers_when_it_has_runs_enough() -> None:
    experiments = [Experiment(p.name, p.config, str(i)) for i, p in enumerate(lab_presets("fmnist"))]
    units = plan_units(experiments, lambda batch_size: 8, workers=2)
    batch_10 = [unit for unit in units if unit[0].config.batch_size == 10]
    assert sorted(len(unit) for unit in batch_10) == [3, 4]  # seven runs, two workers


def test_each_unit_of_a_plan_is_claimed_once(tmp_path: Path) -> None:
    experiments = [Experiment(f"e{i}", RunConfig(seed=i), str(i)) for i in range(5)]
    plan = write_plan(tmp_path, [[e] for e in experiments])
    first, second = claimed_units(plan), claimed_units(plan)
    taken = [next(first)[0].preset, next(second)[0].preset, next(first)[0].preset]
    taken += [unit[0].preset for unit in second] + [unit[0].preset for unit in first]
    assert sorted(taken) == [f"e{i}" for i in range(5)]


@pytest.mark.parametrize(("workers", "pack"), [("2", "1"), ("1", "4")])
def test_lab_fmnist_stores_every_experiment_with_its_solo_figures(
    capsys, isolated, data_root: Path, workers: str, pack: str
) -> None:
    common = ["--set", "epochs=2", "--set", "device=cpu", "--data-root", str(data_root)]
    code, out, err = run_cli(capsys, "lab", "fmnist", "--no-ui", "--json", "--workers", workers, "--pack", pack,
                             *common)
    assert code == 0, err
    runs = [json.loads(line) for line in out.splitlines()]
    assert [r["preset"] for r in runs] == [f"fmnist_exp{i}" for i in range(1, 11)]
    assert all(r["status"] == "completed" and len(r["epochs"]) == 2 for r in runs)
    if pack != "1":
        assert max(r["pack_size"] for r in runs) > 1
    for preset in ("fmnist_exp6", "fmnist_exp3"):
        code, out, err = run_cli(capsys, "--preset", preset, "--no-ui", "--json", *common)
        assert code == 0, err
        solo = json.loads(out)
        [together] = [r for r in runs if r["preset"] == preset]
        assert together["metrics"]["test_accuracy"] == pytest.approx(solo["metrics"]["test_accuracy"], abs=TOLERANCE_PP)
        assert together["metrics"]["train_loss"] == pytest.approx(solo["metrics"]["train_loss"], rel=1e-3)


def test_lab_prints_the_report_tables_and_the_wall_time_against_an_estimate(capfd, isolated, data_root) -> None:
    code, out, err = run_cli(
        capfd, "lab", "fmnist", "--no-ui", "--workers", "2", "--set", "epochs=1", "--set", "device=cpu",
        "--data-root", str(data_root),
    )
    assert code == 0, err
    assert "## Hyperparameters and results" in out and "fmnist_exp10" in out
    assert "10 runs in" in out and "estimated" in out and "wall time" in out
    assert "fmnist_exp4: epoch 1:" in err


def test_lab_with_a_bad_override_is_bad_input(capsys, isolated) -> None:
    code, out, err = run_cli(capsys, "lab", "fmnist", "--no-ui", "--set", "epochs=0")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "epochs" in err
