"""Refusing a run that cannot fit, before anything is allocated.

A run whose memory estimate exceeds what its device has free would start allocating and take the
machine down with it (a 23 GiB box has no swap to spare). The estimate is the one the app shows
(`tuner_tui.engine.memory_model`); the available memory is the OS's MemAvailable on the CPU and CUDA's free
memory on a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tuner_tui.engine.config import ConfigError, RunConfig
from tuner_tui.engine.memory import host_available_bytes
from tuner_tui.engine.memory_model import estimate_memory, estimate_pack_memory
from tuner_tui.engine.units import format_bytes


class WontFitError(ConfigError):
    """The run's memory estimate exceeds the memory available on its device (bad input unless forced)."""

    def __init__(self, estimated: int, available: int, where: str) -> None:
        self.estimated = estimated
        self.available = available
        self.where = where
        super().__init__(
            "memory",
            f"the run needs an estimated {format_bytes(estimated)}, but only {format_bytes(available)} "
            f"is available {where}",
        )


def available_bytes(device: torch.device) -> int | None:
    """Free memory for a run on `device`, or None where it cannot be read."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return host_available_bytes()


def check_fits(config: RunConfig, device: torch.device, *, context_bytes: int | None = None) -> None:
    """WontFitError when `config`'s estimated peak memory exceeds what `device` has free."""
    available = available_bytes(device)
    if available is None:
        return
    estimate = estimate_memory(config, device_type=device.type, context_bytes=context_bytes).total
    _refuse_over(estimate, available, device)


def check_pack_fits(
    configs: Sequence[RunConfig],
    device: torch.device,
    *,
    context_bytes: int | None = None,
    allocated: Sequence[RunConfig] = (),
) -> None:
    """WontFitError when a pack of `configs` would need more memory than `device` has free; for a
    pack that is recycling its slots, only what it needs beyond its `allocated` runs must be free."""
    available = available_bytes(device)
    if available is None:
        return
    estimate = estimate_pack_memory(configs, device_type=device.type, context_bytes=context_bytes).total
    if allocated:
        estimate -= estimate_pack_memory(allocated, device_type=device.type, context_bytes=context_bytes).total
    _refuse_over(estimate, available, device)


def _refuse_over(estimate: int, available: int, device: torch.device) -> None:
    if estimate > available:
        where = f"on {device} (free GPU memory)" if device.type == "cuda" else "in RAM"
        raise WontFitError(estimate, available, where)
