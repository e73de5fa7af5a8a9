"""What a sweep's name and the cluster options may reach: the sweeps folder and the batch script.

A name follows the spec-name rule (it names a folder and a SLURM job); every value written into
`array.sbatch` is checked; a submission that fails leaves no study, spec copy or script behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuner_tui.cli import main

SPEC = "fmnist_search"


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("name", ["../../../escaped", "a/b", "two\nlines", "x" * 65, "show", "semi;colon"])
@pytest.mark.parametrize("mode", [["--slurm", "--array", "2", "--dry-run"], ["--no-ui"]])
def test_a_sweep_name_outside_the_rule_is_refused_before_anything_is_written(
    isolated: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, mode: list[str]
) -> None:
    before = _files(tmp_path)
    code = main(["sweep", SPEC, "--name", name, *mode])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("tuner-tui: error: --name ") and "1 to 64" in err
    assert out == ""
    assert _files(tmp_path) == before
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--partition", "debug\n#SBATCH --wrap=id"),
        ("--partition", "debug evil"),
        ("--gres", "gpu:1\nrm -rf ~"),
        ("--time", "1:00:00\necho pwned"),
        ("--sbatch-arg", "--comment=x\necho pwned"),
        ("--sbatch-arg", 'echo "quoted"'),
    ],
)
def test_a_cluster_option_that_would_inject_a_line_into_the_script_is_refused(
    isolated: dict[str, str], capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    code = main(["sweep", SPEC, "--slurm", "--array", "2", "--dry-run", f"{option}={value}"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"tuner-tui: error: {option} " in err


def test_the_dry_run_script_has_one_directive_per_line_and_a_quoted_output_path(
    isolated: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["sweep", SPEC, "--slurm", "--array", "3", "--dry-run", "--partition", "gpu-a100",
                 "--gres", "gpu:a100:1", "--time", "2:00:00", "--sbatch-arg=--requeue"])
    out, _ = capsys.readouterr()
    assert code == 0
    directives = [line for line in out.splitlines() if line.startswith("#SBATCH")]
    assert directives[:3] == ["#SBATCH --job-name=tuner-tui-fmnist_search", "#SBATCH --array=0-2",
                              directives[2]]
    assert directives[2].startswith('#SBATCH --output="') and directives[2].endswith('slurm-%A_%a.out"')
    assert directives[3:] == ["#SBATCH --partition=gpu-a100", "#SBATCH --gres=gpu:a100:1", "#SBATCH --time=2:00:00",
                              "#SBATCH --requeue"]


def test_without_sbatch_nothing_is_created(
    isolated: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    store_dir = Path(isolated["TUNER_TUI_STORE"]).parent
    code = main(["sweep", SPEC, "--slurm", "--array", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "sbatch not found" in err
    assert _files(store_dir) == []


@pytest.mark.requires("slurm")
def test_a_submission_sbatch_refuses_leaves_no_study_spec_or_script_behind(
    isolated: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store_dir = Path(isolated["TUNER_TUI_STORE"]).parent
    code = main(["sweep", SPEC, "--slurm", "--array", "2", "--sbatch-arg=--no-such-sbatch-option"])
    err = capsys.readouterr().err
    assert code == 2 and "sbatch refused the array" in err and err.count("\n") == 1
    assert not (store_dir / "sweeps" / SPEC).exists()
    assert main(["sweeps", "--storage", f"journal:{store_dir / 'sweeps' / SPEC / 'study.journal'}"]) == 2
    assert not (store_dir / "sweeps").exists() or os.listdir(store_dir / "sweeps") == []
