"""Where a run's code came from: the function's file and its hash, its git commit (and whether the
tree had changes), and the versions of Python, torch and tuner-tui, so a result can be reproduced."""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tuner_tui.usercode.events import CodeOrigin
from tuner_tui.usercode.model_file import ModelFile

GIT_TIMEOUT_S = 5.0


def code_origin(model: ModelFile, module_file: str | None) -> CodeOrigin:
    """The origin of `model`'s function, whose module was loaded from `module_file` (None: built in)."""
    file = Path(module_file).resolve() if module_file else None
    commit, dirty = _git_state(file) if file is not None else (None, None)
    return CodeOrigin(
        function=model.train, file=str(file) if file else None,
        sha256=hashlib.sha256(file.read_bytes()).hexdigest() if file is not None and file.is_file() else None,
        git_commit=commit, git_dirty=dirty, python=platform.python_version(),
        torch=_version("torch"), tuner_tui=_version("tuner-tui") or "unknown",
    )


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _git_state(file: Path) -> tuple[str | None, bool | None]:
    """The commit of the repository holding `file`, and whether its tree differs from it."""
    git = shutil.which("git")
    if git is None:
        return None, None

    def ask(*args: str) -> str | None:
        try:
            done = subprocess.run([git, "-C", str(file.parent), *args], capture_output=True, text=True,
                                  timeout=GIT_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = ask("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = ask("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)
