"""Resolving `device = "auto" | "cpu" | "cuda" | "cuda:N"` and naming the device for people."""

from __future__ import annotations

import platform

import torch

from tuner_tui.engine.config import ConfigError


def resolve_device(name: str) -> torch.device:
    """The torch device for a config's `device`; ConfigError when CUDA is asked for and absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device", f"{name} asked for, but CUDA is not available here; use auto or cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError("device", f"{name} asked for, but this machine has cuda:0 to cuda:{count - 1}")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def device_name(device: torch.device) -> str:
    """e.g. `NVIDIA H100 80GB HBM3 (cuda:0)` or `CPU x86_64, 2 threads`."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device})"
    return f"CPU {platform.machine() or 'unknown'}, {torch.get_num_threads()} threads"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
