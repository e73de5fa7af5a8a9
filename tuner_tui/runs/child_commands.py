"""The command lines of tuner-tui's child processes, in one place: the app's training child, the child
that runs a user's code, a sweep started from the app, a sweep's worker processes (local or SLURM
array tasks) and the lab's workers.

Every child runs this Python with `-P`: its import path holds the installed packages only, never
the folder it was started in (a stray `platformdirs.py` or `engine/` there must not be imported).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

TRAINING_CHILD: tuple[str, ...] = (sys.executable, "-P", "-m", "tuner_tui.runs.training_child")
USER_CODE_CHILD: tuple[str, ...] = (sys.executable, "-P", "-m", "tuner_tui.usercode.child")


def _tuner_tui(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "tuner_tui", *args]


def _global_options(data_root: str | None, device: str | None, storage: str | None = None) -> list[str]:
    command: list[str] = []
    for flag, value in (("--data-root", data_root), ("--device", device), ("--storage", storage)):
        if value is not None:
            command += [flag, value]
    return command


@dataclass(frozen=True)
class SweepLaunch:
    """A sweep to start from the app: a spec (name or path) and the options of `tuner-tui sweep`."""

    spec: str
    name: str | None = None
    trials: int | None = None
    overrides: tuple[str, ...] = ()
    data_root: str | None = None
    device: str | None = None
    storage: str | None = None
    options: tuple[str, ...] = ()  # more of the command's options, as given (`--workers 2`)

    def argv(self, store_path: str) -> list[str]:
        """`tuner-tui sweep SPEC --no-ui`, as a terminal would run it (an objective's sweep names it in `options`)."""
        command = _tuner_tui("sweep", *([self.spec] if self.spec else []), "--no-ui", "--store", store_path)
        if self.name:
            command += ["--name", self.name]
        if self.trials is not None:
            command += ["--trials", str(self.trials)]
        for item in self.overrides:
            command += ["--set", item]
        return command + _global_options(self.data_root, self.device, self.storage) + list(self.options)


@dataclass(frozen=True)
class WorkerArgs:
    """What every worker of a sweep is told (a local worker process, or a SLURM array task)."""

    spec_source: Path | None  # None: an Optuna objective's sweep (its `search_options` name it)
    name: str
    storage: str
    trials: int
    overrides: tuple[str, ...] = ()
    data_root: str | None = None
    device: str | None = None
    store: str | None = None  # a local worker's results store
    journal_dir: Path | None = None  # a cluster worker's journal folder
    timeout: int | None = None  # ask no new trial after this many seconds
    pack: int | str = "auto"  # trials per pack in each worker
    search_options: tuple[str, ...] = ()  # `--objective FILE.py:F --direction D ...` of an objective's sweep

    def argv(self) -> list[str]:
        """`tuner-tui sweep SPEC --no-ui --worker ...`, with this Python (every worker has the same environment)."""
        spec = [str(self.spec_source)] if self.spec_source is not None else []
        command = _tuner_tui(
            "sweep", *spec, "--no-ui", "--worker", "--name", self.name, "--storage", self.storage,
            "--trials", str(self.trials), "--pack", str(self.pack), *self.search_options,
        )
        if self.journal_dir is not None:
            command += ["--journal-dir", str(self.journal_dir)]
        if self.store is not None:
            command += ["--store", self.store]
        if self.timeout is not None:
            command += ["--timeout", str(self.timeout)]
        for item in self.overrides:
            command += ["--set", item]
        return command + _global_options(self.data_root, self.device)


def lab_worker_argv(which: str, plan: Path, *, store: str | None, force: bool) -> list[str]:
    """`tuner-tui lab WHICH --no-ui --plan PLAN`: a lab worker taking units of the plan."""
    command = _tuner_tui("lab", which, "--no-ui", "--plan", str(plan))
    if store:
        command += ["--store", store]
    return command + (["--force"] if force else [])
