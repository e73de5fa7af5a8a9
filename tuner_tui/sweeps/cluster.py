"""Sweeps on a SLURM cluster: a job array whose tasks are sweep workers sharing one study.

`tuner-tui sweep SPEC --slurm --array N` writes a batch script into the sweep's folder and submits
it with `sbatch`: each array task runs `tuner-tui sweep ... --worker`, the same scheduler as a
local sweep, against the shared study storage. Why a generated script rather than submitit: the
workers are the installed `tuner-tui` command itself, so nothing is pickled across machines;
`--dry-run` prints exactly what is submitted; and stopping is ours to handle (SLURM's SIGTERM on
`scancel` or at the time limit stops the trial, stores it cancelled and asks it again), where
submitit's own SIGTERM handler only logs.

The sweep's folder (`<store folder>/sweeps/<name>/` by default) must be on a filesystem every node
sees, as the Python environment must be: it holds the spec the workers read, the study journal
(Optuna's JournalStorage with its file lock, the default storage here; an RDB URL works too), the
workers' run journals (`runs/`, one append-only file per worker, imported by readers on the login
node) and SLURM's output files. No node ever writes the login node's SQLite results store.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tuner_tui.runs.child_commands import WorkerArgs
from tuner_tui.runs.parallel import WORKER_INDEX_ENV


class ClusterError(Exception):
    """The array could not be submitted; `str()` is one line."""


@dataclass(frozen=True)
class ArrayRequest:
    """What to submit: the sweep, its worker count and SLURM's options."""

    spec_source: Path | None  # the spec file the workers read (a copy in the sweep's folder); None: an objective
    name: str
    array: int
    trials: int
    storage: str
    folder: Path
    overrides: tuple[str, ...] = ()
    data_root: str | None = None
    device: str | None = None
    partition: str | None = None
    gres: str | None = None
    pack: int | str = "auto"
    time: str | None = None
    sbatch_args: tuple[str, ...] = ()
    search_options: tuple[str, ...] = ()  # an objective sweep's `--objective …` options

    @property
    def journal_dir(self) -> Path:
        return self.folder / "runs"


# What each `#SBATCH` value may hold: sbatch reads these lines itself, so a newline would start a
# new line of the script and a quote would end a quoted value. Values are checked, not escaped.
_OPTION_PATTERNS = {
    "--partition": re.compile(r"[A-Za-z0-9_.,-]{1,256}"),
    "--gres": re.compile(r"[A-Za-z0-9_.,:=-]{1,256}"),
    "--time": re.compile(r"[0-9:-]{1,32}|infinite|UNLIMITED"),
}
_UNSAFE_IN_SCRIPT = re.compile(r'[\x00-\x1f\x7f"]')


def request_problems(request: ArrayRequest) -> list[str]:
    """Why the array's options cannot go into a batch script: one line each, naming the option."""
    problems = []
    for option, value in (("--partition", request.partition), ("--gres", request.gres), ("--time", request.time)):
        if value is not None and not _OPTION_PATTERNS[option].fullmatch(value):
            problems.append(f"{option} {value!r}: not a SLURM {option.removeprefix('--')} value")
    for arg in request.sbatch_args:
        if not arg.startswith("-") or _UNSAFE_IN_SCRIPT.search(arg):
            problems.append(
                f"--sbatch-arg {arg!r}: an sbatch option (starting with -), with no quote or control character"
            )
    if _UNSAFE_IN_SCRIPT.search(str(request.folder)):
        problems.append(f"sweep folder {str(request.folder)!r}: a path with a quote or control character")
    return problems


def sweep_folder(store_path: Path, name: str) -> Path:
    """The default shared folder of sweep `name`: beside the results store."""
    return store_path.parent / "sweeps" / name


def journal_storage_url(folder: Path) -> str:
    return f"journal:{folder / 'study.journal'}"


def worker_args(request: ArrayRequest) -> WorkerArgs:
    """What every array task runs (this Python, so the nodes use the same environment).

    A task given a GPU (`--gres gpu...`) trains its trials in packs; on CPU nodes each task is one
    worker training one trial at a time (`--pack 1`, unless asked otherwise): there the tasks are
    the parallelism, a pack gains little per core, and one task holding a pack of trials would
    leave the others without any (and lose them all to one scancel).
    """
    pack = request.pack
    if pack == "auto" and not (request.gres or "").startswith("gpu"):
        pack = 1
    return WorkerArgs(
        spec_source=request.spec_source, name=request.name, storage=request.storage, trials=request.trials,
        overrides=request.overrides, data_root=request.data_root, device=request.device,
        journal_dir=request.journal_dir, pack=pack, search_options=request.search_options,
    )


def batch_script(request: ArrayRequest) -> str:
    """The sbatch script of the array."""
    directives = [
        f"--job-name=tuner-tui-{request.name}",
        f"--array=0-{request.array - 1}",
        f'--output="{request.folder / "slurm-%A_%a.out"}"',
    ]
    if request.partition:
        directives.append(f"--partition={request.partition}")
    if request.gres:
        directives.append(f"--gres={request.gres}")
    if request.time:
        directives.append(f"--time={request.time}")
    directives += list(request.sbatch_args)
    lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives)]
    lines += [
        f"# tuner-tui sweep {request.name}: {request.array} workers share one study until {request.trials} "
        "trials have finished.",
        "# Each task is one worker; SIGTERM (scancel, the time limit) stores its trial as cancelled and",
        "# asks it again, so another task (or a resubmitted array) finishes it.",
        "export PYTHONUNBUFFERED=1",
        "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}  # torch's threads: the task's CPUs, not the node's",
        "exec " + shlex.join(worker_args(request).argv()),
        "",
    ]
    return "\n".join(lines)


def sbatch_command() -> str:
    """Where `sbatch` is; ClusterError when this is not a SLURM login node."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ClusterError("sbatch not found: --slurm runs on a SLURM login node (or use --dry-run)")
    return sbatch


def submit(request: ArrayRequest) -> str:
    """Write the script into the sweep's folder and `sbatch` it; the job id."""
    sbatch = sbatch_command()
    request.journal_dir.mkdir(parents=True, exist_ok=True)
    script = request.folder / "array.sbatch"
    script.write_text(batch_script(request))
    result = subprocess.run(
        [sbatch, "--parsable", str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise ClusterError(f"sbatch refused the array: {reason[-1] if reason else f'exit {result.returncode}'}")
    return result.stdout.strip().split(";")[0]


def worker_name() -> tuple[str, str | None]:
    """(a worker's name for `sweep show`, its array task `JOB_TASK` or None outside SLURM)."""
    host = socket.gethostname()
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if job and task:
        return f"{host} task {job}_{task}", f"{job}_{task}"
    local = os.environ.get(WORKER_INDEX_ENV)
    if local is not None:
        return f"{host} worker {local}", None
    return f"{host} pid {os.getpid()}", None


def copy_spec(source: Path, folder: Path) -> Path:
    """The spec as the workers will read it: a copy in the sweep's shared folder."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "spec.toml"
    shutil.copyfile(source, target)
    return target


def describe_submission(job_id: str, request: ArrayRequest, show_args: Sequence[str]) -> str:
    watch = shlex.join(["tuner-tui", *show_args, "sweep", "show", request.name])
    return (
        f"submitted job {job_id}: {request.array} array tasks for sweep {request.name} "
        f"({request.trials} trials); watch with `{watch}` or the app's sweep screen; "
        f"files in {request.folder}"
    )
