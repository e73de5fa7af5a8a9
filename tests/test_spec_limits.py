"""Limits that keep a spec or a flag from asking for the impossible: a grid too large to list, a
validation share that holds out nothing, a budget above what a spec may ask. Each is refused in one
line, before anything runs or is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner_tui.cli import main
from tuner_tui.engine.config import ConfigError, RunConfig
from tuner_tui.sweeps.spec import MAX_GRID_POINTS, MAX_TRIALS, SpecError, load_spec

GRID_SPEC = "[space]\n{space}\n[search]\nsampler = 'grid'\n"


@pytest.mark.parametrize(
    "space",
    [
        "lr = { uniform = [0.001, 0.5], step = 1e-300 }",
        "seed = { int = [0, 4000000000] }",
        "seed = { int = [0, 1000] }\nbatch_size = { choice = [10, 20, 32, 64, 128] }\n"
        "lr = { uniform = [0.01, 0.1], step = 0.0001 }",
        "lr = { uniform = [0.001, 0.5], step = 2.2250738585072014e-308 }",  # the smallest normal float
    ],
)
def test_a_grid_above_the_limit_is_refused_without_building_it(
    isolated: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], space: str
) -> None:
    path = tmp_path / "huge.toml"
    path.write_text(GRID_SPEC.format(space=space))
    code = main(["sweep", str(path), "--no-ui"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "MemoryError" not in err
    assert f"more than {MAX_GRID_POINTS:,} a grid sweep may have" in err
    assert len([line for line in err.splitlines() if line.startswith("tuner-tui: error:")]) == 1


def test_a_grid_within_the_limit_still_loads(isolated: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "fine.toml"
    path.write_text(GRID_SPEC.format(space="seed = { int = [0, 9] }\nlr = { uniform = [0.01, 0.1], step = 0.01 }"))
    spec = load_spec(str(path))
    assert spec.space["seed"].grid_size() == 10 and spec.space["lr"].grid_size() == 10


@pytest.mark.parametrize("share", [1e-300, 0.0001])
def test_a_validation_share_that_holds_out_almost_nothing_is_refused(
    isolated: dict[str, str], tmp_path: Path, share: float
) -> None:
    path = tmp_path / "tiny_share.toml"
    path.write_text(f"[space]\nlr = {{ choice = [0.1] }}\n[search]\nvalidation = {share}\n")
    with pytest.raises(SpecError) as refused:
        load_spec(str(path))
    assert any("search.validation: must be 0 or hold out at least 100" in p for p in refused.value.problems)
    with pytest.raises(ConfigError, match="validation: must be 0 or hold out at least 100"):
        RunConfig(validation=share)


def test_a_run_with_validation_set_too_small_is_bad_input(
    isolated: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--no-ui", "--set", "validation=1e-300"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "validation: must be 0 or hold out at least 100" in err


def test_trials_above_the_specs_own_limit_is_refused(isolated: dict[str, str], capsys) -> None:
    assert main(["sweep", "fmnist_search", "--no-ui", "--trials", str(MAX_TRIALS + 1)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--trials: must be a whole number in [1, {MAX_TRIALS}]" in err
