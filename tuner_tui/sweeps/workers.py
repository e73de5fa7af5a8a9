"""Sweep workers: the processes that share one study, on this machine or as SLURM array tasks.

A worker is `tuner-tui sweep SPEC --no-ui --worker ...`: the ordinary scheduler, seeded apart from
the other workers, with one torch thread per CPU it was given. Local workers are started by
`tuner_tui.runs.parallel.run_local_workers` and record their runs in the results store (one host:
SQLite's locks hold); on a cluster each records in its own journal.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WorkerArgs:
    """What every worker of a sweep is told."""

    spec_source: Path
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

    def argv(self) -> list[str]:
        """The worker's command line, with this Python (so every worker has the same environment)."""
        command = [
            sys.executable, "-P", "-m", "tuner_tui", "sweep", str(self.spec_source), "--no-ui", "--worker",
            "--name", self.name, "--storage", self.storage, "--trials", str(self.trials), "--pack", str(self.pack),
        ]
        if self.journal_dir is not None:
            command += ["--journal-dir", str(self.journal_dir)]
        if self.store is not None:
            command += ["--store", self.store]
        if self.timeout is not None:
            command += ["--timeout", str(self.timeout)]
        for item in self.overrides:
            command += ["--set", item]
        if self.data_root is not None:
            command += ["--data-root", self.data_root]
        if self.device is not None:
            command += ["--device", self.device]
        return command
