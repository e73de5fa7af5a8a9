"""How many runs to train at once, and how: worker processes, packs, or both (`--workers`, `--pack`);
and the local worker processes themselves (sweeps and `lab` start them).

The defaults (`auto`) are the measured best per device (benchmarks/pack_speed.py, figures in
benchmarks/README.md): on a CPU, one single-threaded worker per core, packing up to 8 runs of a
batch under 80 and training the others alone (a sweep's trials one at a time); on a GPU, one
worker whose runs train together in packs, since a single small run leaves the device idle between
kernel launches.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

AUTO = "auto"
WORKER_INDEX_ENV = "TUNER_TUI_WORKER_INDEX"
PR_SET_PDEATHSIG = 1  # prctl(2)
STOP_GRACE_S = 60.0  # a worker stops within a step; this only bounds a stuck one
# On a CPU a pack gains per core only where its deferred layer-1 blocks apply (batches under 80
# samples), and loses at larger batches; on a GPU one process with large packs keeps the device busy
# (benchmarks/README.md, "Packed training", has the figures).
CPU_PACK = 8
CPU_PACK_BATCH_LIMIT = 80
GPU_PACK = 16


def cpu_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def on_gpu(device: str) -> bool:
    """Whether runs on `device` (a config's device) train on a GPU."""
    if device.startswith("cuda"):
        return True
    if device != AUTO:
        return False
    from tuner_tui.engine.gpu import nvml_available

    return nvml_available()


def resolve_workers(requested: int | str, device: str) -> int:
    """`--workers`: a number, or auto (one per CPU core on a CPU; one on a GPU)."""
    if requested != AUTO:
        return int(requested)
    return 1 if on_gpu(device) else cpu_cores()


def resolve_pack(requested: int | str, device: str) -> Callable[[int], int]:
    """`--pack`: runs per pack, or auto (the measured best for the device and batch size)."""
    if requested != AUTO:
        fixed = int(requested)
        return lambda batch_size: fixed
    if on_gpu(device):
        return lambda batch_size: GPU_PACK
    return lambda batch_size: CPU_PACK if batch_size < CPU_PACK_BATCH_LIMIT else 1


def resolve_sweep_pack(requested: int | str, device: str) -> Callable[[int], int]:
    """`sweep --pack`: as `resolve_pack`, except that auto trains one trial at a time on a CPU.

    Measured (benchmarks/README.md, "Sweeps"): on a CPU a sweep's packs finished no more trials
    than its workers alone (pruning ends most trials after an epoch, and a pack forms only among
    trials of one batch size), while the trials held for a pack wait, unseen by the sampler.
    """
    if requested == AUTO and not on_gpu(device):
        return lambda batch_size: 1
    return resolve_pack(requested, device)


def worker_index() -> int:
    """This worker's number among its sweep's workers (a SLURM array task id, or the local one)."""
    for name in ("SLURM_ARRAY_TASK_ID", WORKER_INDEX_ENV):
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return 0


def run_local_workers(argv: Sequence[str], count: int, cancel: threading.Event) -> list[int]:
    """Start `count` single-threaded workers running `argv` and wait for them; `cancel` sends each a
    SIGTERM. Their lines go to this process's stderr. Returns their exit codes.
    """
    workers = [
        subprocess.Popen(
            list(argv), env={**os.environ, "OMP_NUM_THREADS": "1", WORKER_INDEX_ENV: str(index)},
            stdout=subprocess.DEVNULL, preexec_fn=stop_with_parent,  # noqa: PLW1509 - one async-safe prctl call
        )
        for index in range(count)
    ]
    try:
        while any(worker.poll() is None for worker in workers):
            if cancel.wait(0.2):
                _stop(workers)
                break
    finally:
        _stop(workers, wait_only=not cancel.is_set())
    return [worker.returncode for worker in workers]


def stop_with_parent() -> None:
    """In a worker, before it starts: a SIGTERM when its parent dies (even by SIGKILL), so no worker
    outlives the sweep it belongs to; it stores its trial as cancelled and exits."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop(workers: Sequence[subprocess.Popen[bytes]], *, wait_only: bool = False) -> None:
    for worker in workers:
        if worker.poll() is None and not wait_only:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
