"""Test doubles for the machine: a GPU probe with scripted readings, system info with fixed answers."""

from __future__ import annotations

from tuner_tui.engine.gpu import GpuProbe, GpuSnapshot
from tuner_tui.runs.system_info import SystemInfo


class FakeGpuProbe:
    """Returns the given snapshots in order, then keeps returning the last one."""

    def __init__(self, *snapshots: GpuSnapshot) -> None:
        if not snapshots:
            raise ValueError("FakeGpuProbe needs at least one snapshot")
        self._snapshots = snapshots
        self._next = 0

    def snapshot(self) -> GpuSnapshot:
        snapshot = self._snapshots[self._next]
        self._next = min(self._next + 1, len(self._snapshots) - 1)
        return snapshot


class FixedSystemInfo(SystemInfo):
    """Fixed answers, for snapshot tests and demos."""

    def __init__(self, gpu_probe: GpuProbe, *, free: int | None, device_names: dict[str, str] | None = None) -> None:
        super().__init__(gpu_probe)
        self._free = free
        self.device_names = dict(device_names or {})

    def free_bytes(self, device_type: str) -> int | None:
        return self._free

    def context_bytes(self, device_type: str) -> int | None:
        return None

    def load_device_names(self) -> None:
        return None
