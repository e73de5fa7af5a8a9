"""The wheel as users install it: built from this checkout, installed with its declared
dependencies into a fresh virtual environment, and run from a folder outside the checkout.

Slow (pip installs torch into the new environment from this machine's disk), so it runs once per
session for all its checks. It needs the real Fashion-MNIST for the headless run.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_path

REPO = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT_S = 1500
RUN_TIMEOUT_S = 300
FIRST_SCREEN_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
        check=True, capture_output=True, timeout=INSTALL_TIMEOUT_S,
    )
    [built] = out.glob("tuner_tui-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A fresh environment with the wheel and its dependencies; its PATH, run from outside the checkout."""
    root = tmp_path_factory.mktemp("fresh")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    home = root / "home"
    home.mkdir()
    yield {
        "PATH": f"{env_dir / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "TUNER_TUI_STORE": str(root / "store" / "runs.sqlite3"),
        "TUNER_TUI_CONFIG_DIR": str(root / "config"),
        "TUNER_TUI_CACHE_DIR": str(root / "cache"),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "CWD": str(home),
    }


def run(installed: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in installed.items() if k != "CWD"}
    return subprocess.run(
        ["tuner-tui", *args], env=env, cwd=installed["CWD"], capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S, check=False,
    )


def test_the_wheel_carries_every_subpackage_the_stylesheet_and_every_shipped_preset(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for package in packages:
        folder = package.replace(".", "/")
        assert any(name.startswith(folder + "/") for name in names), package
    assert "tuner_tui/app/app.tcss" in names
    for preset in (REPO / "presets").rglob("*.toml"):
        assert f"tuner_tui/presets/{preset.relative_to(REPO / 'presets')}" in names
    for code in (REPO / "presets").glob("*.py"):  # the example models' training code
        assert f"tuner_tui/presets/{code.name}" in names
    top_level = {name.split("/", 1)[0] for name in names if not name.startswith("tuner_tui-")}
    assert top_level == {"tuner_tui"}  # no generic top-level package (engine, presets) to shadow a user's own


def test_installed_presets_lists_every_shipped_preset_and_spec(installed: dict[str, str]) -> None:
    result = run(installed, "presets")
    assert result.returncode == 0, result.stderr
    for preset in (REPO / "presets").glob("*.toml"):
        assert preset.stem in result.stdout
    for spec in (REPO / "presets" / "sweeps").glob("*.toml"):
        assert spec.stem in result.stdout
    assert "skipped" not in result.stdout
    models = result.stdout.split("models (your own code)", 1)[1]
    assert "lab4_student.py:train" in models and "torch_mlp.py:train" in models


@pytest.mark.parametrize("example", ["lab4_student", "torch_mlp"])
def test_installed_example_models_run_headless_from_the_wheel(installed: dict[str, str], tiny_fmnist: Path,
                                                              example: str) -> None:
    result = run({**installed, "TUNER_TUI_DATA": str(tiny_fmnist)}, "--preset", example, "--no-ui", "--json",
                 "--set", "epochs=1")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["status"] == "completed" and "test_accuracy" in record["metrics"]
    code_file = Path(record["code"]["file"])
    assert code_file.name == f"{example}.py" and REPO not in code_file.parents  # the wheel's copy, not the checkout's


def test_installed_version_help_and_module_entry_point(installed: dict[str, str]) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert run(installed, "--version").stdout.strip() == f"tuner-tui {version}"
    helped = run(installed, "--help").stdout
    listed = re.findall(r"^    (\w+) ", helped.split("commands:", 1)[1], re.MULTILINE)
    assert set(listed) == {"runs", "presets", "report", "sweep", "sweeps", "lab", "watch"}


@pytest.mark.requires("fashion-mnist")
def test_installed_headless_fmnist_quick_runs_and_is_stored(installed: dict[str, str]) -> None:
    require_path("fashion-mnist")
    result = run(installed, "--preset", "fmnist_quick", "--no-ui", "--json", "--set", "device=cpu")
    assert result.returncode == 0, result.stderr
    assert '"status": "completed"' in result.stdout and '"preset": "fmnist_quick"' in result.stdout
    assert "fmnist_quick" in run(installed, "runs").stdout


def test_installed_app_reaches_its_first_screen_and_quits(installed: dict[str, str]) -> None:
    env = {k: v for k, v in installed.items() if k != "CWD"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the app on a 100x30 terminal
        os.chdir(installed["CWD"])
        os.execvpe(
            "tuner-tui", ["tuner-tui", "--store", env["TUNER_TUI_STORE"]], {**env, "COLUMNS": "100", "LINES": "30"}
        )
    seen = b""
    deadline = time.monotonic() + FIRST_SCREEN_TIMEOUT_S
    try:
        while b"Start" not in seen:
            assert time.monotonic() < deadline, f"no first screen; the terminal showed: {seen[-2000:]!r}"
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                try:
                    seen += os.read(fd, 65536)
                except OSError:
                    break
        assert b"Start" in seen
        os.write(fd, b"\x11")  # ctrl+q
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, "the app did not quit on ctrl+q"
            select.select([fd], [], [], 0.5)
            with contextlib.suppress(OSError):
                os.read(fd, 65536)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
