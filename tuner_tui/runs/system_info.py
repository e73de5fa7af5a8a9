"""What the app asks of the machine for its live estimates, behind one object tests can replace."""

from __future__ import annotations

from tuner_tui.engine.gpu import GpuProbe
from tuner_tui.engine.memory import host_available_bytes, remembered_context_bytes


class SystemInfo:
    """Free memory, device kinds and names; torch is imported only by `load_device_names`."""

    def __init__(self, gpu_probe: GpuProbe) -> None:
        self.gpu_probe = gpu_probe
        self.device_names: dict[str, str] = {}

    def device_type(self, device: str) -> str:
        """"cuda" or "cpu" for a config's device (auto: whether an NVIDIA GPU answers)."""
        if device == "auto":
            return "cuda" if self.gpu_probe.snapshot().available else "cpu"
        return "cuda" if device.startswith("cuda") else "cpu"

    def free_bytes(self, device_type: str) -> int | None:
        if device_type == "cuda":
            snapshot = self.gpu_probe.snapshot()
            if snapshot.total_bytes is None or snapshot.used_bytes is None:
                return None
            return snapshot.total_bytes - snapshot.used_bytes
        return host_available_bytes()

    def context_bytes(self, device_type: str) -> int | None:
        name = self.device_names.get(device_type)
        return remembered_context_bytes(name) if device_type == "cuda" and name else None

    def load_device_names(self) -> None:
        """Resolve the devices' names as runs record them (imports torch: call off the UI thread)."""
        import torch

        from tuner_tui.engine.devices import device_name

        self.device_names["cpu"] = device_name(torch.device("cpu"))
        if torch.cuda.is_available():
            self.device_names["cuda"] = device_name(torch.device("cuda", torch.cuda.current_device()))
