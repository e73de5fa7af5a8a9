"""Where a user's code trains, said without importing torch when it is not needed: a run on the CPU
(asked for, or `auto` on a machine whose driver shows no NVIDIA GPU) starts without torch's import,
which costs seconds; the code imports torch itself if it uses it."""

from __future__ import annotations

import os
import platform


def resolve_user_device(name: str) -> tuple[str, str]:
    """(`run.device`, the device's name for people) for a config's `device`; ConfigError when CUDA is
    asked for and absent (as for built-in runs)."""
    if name == "cpu" or (name == "auto" and not _nvidia_gpu()):
        return "cpu", f"CPU {platform.machine() or 'unknown'}, {os.cpu_count() or 1} cores"
    from tuner_tui.engine.devices import device_name, resolve_device

    device = resolve_device(name)
    return str(device), device_name(device)


def _nvidia_gpu() -> bool:
    from tuner_tui.engine.gpu import nvml_available

    return nvml_available()
