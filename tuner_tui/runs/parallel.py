"""How many runs to train at once, and how: worker processes, packs, or both (`--workers`, `--pack`).

The defaults (`auto`) are the measured best per device (benchmarks/pack_speed.py, figures in
benchmarks/README.md): on a CPU, one single-threaded worker per core, each training its runs one
at a time; on a GPU, one worker whose runs train together in packs, since a single small run leaves
the device idle between kernel launches.
"""

from __future__ import annotations

import os

AUTO = "auto"
CPU_PACK = 1
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
    from engine.gpu import nvml_available

    return nvml_available()


def resolve_workers(requested: int | str, device: str) -> int:
    """`--workers`: a number, or auto (one per CPU core on a CPU; one on a GPU)."""
    if requested != AUTO:
        return int(requested)
    return 1 if on_gpu(device) else cpu_cores()


def resolve_pack(requested: int | str, device: str) -> int:
    """`--pack`: runs per pack, or auto (the measured best for the device)."""
    if requested != AUTO:
        return int(requested)
    return GPU_PACK if on_gpu(device) else CPU_PACK
