"""Import hygiene, checked in fresh interpreters (as Harlequin does): the engine and the headless
modules never pull in Textual, and the app's module does not import torch (the first screen must
not wait for it; torch loads in a worker)."""

from __future__ import annotations

import ast
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
    "tuner_tui.cli", "tuner_tui.commands.run", "tuner_tui.commands.listing", "tuner_tui.commands.sweep",
    "tuner_tui.commands.lab", "tuner_tui.reports.run_tables", "tuner_tui.reports.sweeps",
    "tuner_tui.runs.lab_table", "tuner_tui.runs.presets", "tuner_tui.runs.session", "tuner_tui.runs.store",
    "tuner_tui.runs.records", "tuner_tui.runs.lab_plan",
    # the app's parts that the CLI uses to open the app (`sweep SPEC` and `lab` without --no-ui)
    "tuner_tui.app.sweep_process", "tuner_tui.app.slots",
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
    from tuner_tui.commands.common import resolve_config
    resolve_config("fmnist_exp5", ["epochs=3"], data_root=None, device=None)
    import tuner_tui.app.app
    assert "torch" not in sys.modules, "the CLI's path to the app imported torch"
"""

LAB_TO_APP_WITHOUT_TORCH = """
    import sys
    from tuner_tui.runs.lab_plan import lab_presets
    lab_presets("fmnist")
    import tuner_tui.app.app
    assert "torch" not in sys.modules, "the lab's path to the app (tuner-tui lab without --no-ui) imported torch"
"""

RECORDS_WITHOUT_SQLITE = """
    import sys
    import tuner_tui.runs.records
    assert "sqlite3" not in sys.modules, "the record types imported sqlite3"
"""


def _checks() -> dict[str, str]:
    checks = {module: NO_TEXTUAL.format(module=module) for module in ENGINE_MODULES + HEADLESS_MODULES}
    checks["tuner_tui.app.app without torch"] = NO_TORCH
    checks["cli to app without torch"] = CLI_TO_APP_WITHOUT_TORCH
    checks["lab to app without torch"] = LAB_TO_APP_WITHOUT_TORCH
    checks["records without sqlite"] = RECORDS_WITHOUT_SQLITE
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


def test_the_record_types_come_without_sqlite(results):
    """The app and the reports use the store's record types without its SQLite plumbing."""
    returncode, stderr = results["records without sqlite"]
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


def _imports(module_path: Path) -> set[str]:
    """Every module a source file imports, at any depth (lazy imports inside functions too)."""
    tree = ast.parse(module_path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _package_modules() -> dict[str, Path]:
    package = REPO_ROOT / "tuner_tui"
    modules = {}
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(REPO_ROOT).with_suffix("")
        modules[".".join(relative.parts)] = path
    return modules


def _importers_of(prefix: str, among: dict[str, Path]) -> list[str]:
    return sorted(
        name for name, path in among.items()
        if any(imported == prefix or imported.startswith(prefix + ".") for imported in _imports(path))
    )


def test_only_the_entry_point_imports_the_cli():
    """Imports go one way: the commands sit below the CLI, which only parses and dispatches."""
    assert _importers_of("tuner_tui.cli", _package_modules()) == ["tuner_tui.__main__"]


def test_no_sweeps_module_imports_the_app():
    sweeps = {name: path for name, path in _package_modules().items() if name.startswith("tuner_tui.sweeps.")}
    assert sweeps
    assert _importers_of("tuner_tui.app", sweeps) == []


def test_nothing_below_the_cli_imports_the_app_or_textual():
    """Commands, reports, runs, sweeps and the engine run headless: only `tuner_tui.app` and the CLI
    (which decides between app and command) may import the app or Textual."""
    below = {
        name: path for name, path in _package_modules().items()
        if not name.startswith("tuner_tui.app") and name not in ("tuner_tui.cli", "tuner_tui.__main__")
    }
    assert _importers_of("tuner_tui.app", below) == []
    assert _importers_of("textual", below) == []


def test_no_module_imports_the_top_level_engine_name():
    """The engine is `tuner_tui.engine`; a bare `engine` would be a student's own package."""
    assert _importers_of("engine", _package_modules()) == []
