"""The device picker's choices: auto, cpu, cuda, and each GPU this process may use, with its free memory.

GPUs are numbered as CUDA numbers them for this process: the ones CUDA_VISIBLE_DEVICES lists, in
its order (as SLURM sets it for a job), else every GPU NVML sees. Reading them never raises: without
a driver the list is just auto, cpu and cuda.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from tuner_tui.engine.gpu import GpuSnapshot, NvmlGpuProbe, visible_device_entries
from tuner_tui.engine.units import format_bytes

BASE_CHOICES: list[tuple[str, str]] = [("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda")]
MAX_GPUS = 64

GpuLister = Callable[[], list[GpuSnapshot]]


def visible_gpus() -> list[GpuSnapshot]:
    """A snapshot of each GPU CUDA would number for this process (cuda:0, cuda:1, …)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    count = len(visible_device_entries(visible)) if visible is not None else MAX_GPUS
    gpus = []
    for index in range(count):
        snapshot = NvmlGpuProbe(index=index).snapshot()
        if not snapshot.available:
            break
        gpus.append(snapshot)
    return gpus


def free_bytes(snapshot: GpuSnapshot) -> int | None:
    if snapshot.total_bytes is None or snapshot.used_bytes is None:
        return None
    return snapshot.total_bytes - snapshot.used_bytes


def device_choices(gpus: list[GpuSnapshot]) -> list[tuple[str, str]]:
    """(label, value) for the device select: `cuda:0 · 13.0 GiB free · NVIDIA H200` per GPU."""
    choices = list(BASE_CHOICES)
    for index, gpu in enumerate(gpus):
        free = free_bytes(gpu)
        parts = [f"cuda:{index}", f"{format_bytes(free)} free" if free is not None else "free n/a"]
        if gpu.name:
            parts.append(gpu.name)
        choices.append((" · ".join(parts), f"cuda:{index}"))
    return choices
