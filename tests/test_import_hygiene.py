"""Import hygiene, checked in fresh interpreters (as Harlequin does): the engine and the headless
modules never pull in Textual, and the app's module does not import torch (the first screen must
not wait for it; torch loads in a worker)."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import tuner_tui.engine

REPO_ROOT = Path(__file__).resolve().parents[1]
ENGINE_MODULES = sorted(
    info.name for info in pkgutil.iter_modules(tuner_tui.engine.__path__, prefix="tuner_tui.engine.")
)
HEADLESS_MODULES = [
    "tuner_tui.cli", "tuner_tui.headless", "tuner_tui.runs.lab_table", "tuner_tui.runs.presets",
    "tuner_tui.runs.session", "tuner_tui.runs.store",
    # the app's parts that the headless commands use (`sweep SPEC` and `lab` open the app with them)
    "tuner_tui.app.sweep_process", "tuner_tui.app.slots", "tuner_tui.sweeps.commands", "tuner_tui.runs.lab",
]
NO_TEXTUAL = """
    import sys
    import {module}
    loaded = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
    assert not loaded, "{module} imported " + ", ".join(loaded[:5])
"""
NO_TORCH = """
    import sys
    import tuner_tui.app.app
    assert "torch" not in sys.modules, "tuner_tui.app.app imported torch"
"""
CLI_TO_APP_WITHOUT_TORCH = """
    import sys
    from tuner_tui.cli import resolve_config
    resolve_config("fmnist_exp5", ["epochs=3"], data_root=None, device=None)
    import tuner_tui.app.app
    assert "torch" not in sys.modules, "the CLI's path to the app imported torch"
"""

LAB_TO_APP_WITHOUT_TORCH = """
    import sys
    from tuner_tui.runs.lab import lab_presets
    lab_presets("fmnist")
    import tuner_tui.app.app
    assert "torch" not in sys.modules, "the lab's path to the app (tuner-tui lab without --no-ui) imported torch"
"""


def _checks() -> dict[str, str]:
    checks = {module: NO_TEXTUAL.format(module=module) for module in ENGINE_MODULES + HEADLESS_MODULES}
    checks["tuner_tui.app.app without torch"] = NO_TORCH
    checks["cli to app without torch"] = CLI_TO_APP_WITHOUT_TORCH
    checks["lab to app without torch"] = LAB_TO_APP_WITHOUT_TORCH
    return checks


def _run(code: str) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    return result.returncode, result.stderr


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[int, str]]:
    """Every check in its own fresh interpreter, as many at a time as there are CPUs."""
    checks = _checks()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip(checks, pool.map(_run, checks.values()), strict=True))


def test_the_engine_package_has_modules_to_check():
    assert {"tuner_tui.engine.runner", "tuner_tui.engine.nodes", "tuner_tui.engine.gpu"} <= set(ENGINE_MODULES)


@pytest.mark.parametrize("module", ENGINE_MODULES + HEADLESS_MODULES)
def test_module_does_not_import_textual(results, module):
    returncode, stderr = results[module]
    assert returncode == 0, stderr


def test_importing_the_app_does_not_import_torch(results):
    returncode, stderr = results["tuner_tui.app.app without torch"]
    assert returncode == 0, stderr


def test_the_clis_path_to_the_app_does_not_import_torch(results):
    returncode, stderr = results["cli to app without torch"]
    assert returncode == 0, stderr


def test_the_labs_path_to_the_app_does_not_import_torch(results):
    returncode, stderr = results["lab to app without torch"]
    assert returncode == 0, stderr


def test_a_users_own_engine_package_neither_shadows_ours_nor_is_shadowed(tmp_path):
    """Students write their own autograd engine, often in a folder named `engine`, beside their code."""
    theirs = tmp_path / "engine"
    theirs.mkdir()
    (theirs / "__init__.py").write_text("WHOSE = 'the student'\n")
    code = textwrap.dedent("""
        import engine
        from tuner_tui.engine.runner import execute_run
        from tuner_tui.engine.config import RunConfig
        assert engine.WHOSE == "the student", engine
        assert "tuner_tui" in RunConfig.__module__
    """)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr
