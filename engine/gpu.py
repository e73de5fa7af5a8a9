"""Reading an NVIDIA GPU's memory and load through NVML, degrading to "n/a" instead of raising.

NVML is initialised lazily, once per process; a failure is remembered with its reason, so a UI
that polls every second never retries a missing driver. Importing this module loads neither
pynvml nor torch.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

# NVML return codes (nvml.h); stable across driver versions.
_INIT_FAILURE_REASONS = {
    4: "no permission to use NVML",
    9: "NVIDIA driver not loaded",
    12: "no NVIDIA driver",
    18: "NVIDIA driver/library version mismatch",
}
_NVML_ERROR_INVALID_ARGUMENT = 2
_NVML_ERROR_NOT_FOUND = 6


@dataclass(frozen=True)
class GpuSnapshot:
    """One reading of a GPU; any field NVML could not give is None."""

    available: bool
    name: str | None
    used_bytes: int | None
    total_bytes: int | None
    process_bytes: int | None
    utilization_percent: int | None
    reason: str | None = None

    @classmethod
    def unavailable(cls, reason: str | None) -> GpuSnapshot:
        """A snapshot saying no GPU could be read, and why."""
        return cls(False, None, None, None, None, None, reason)


class GpuProbe(Protocol):
    """Anything that can take a GpuSnapshot: the NVML reader, or a fake in tests."""

    def snapshot(self) -> GpuSnapshot: ...


class NvmlLibrary:
    """pynvml after a successful `nvmlInit()`; init is tried at most once, under a lock (`NVML` is
    the process's one; a test gives a probe a fresh one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempted = False
        self._module: ModuleType | None = None
        self._reason: str | None = None

    def load(self) -> tuple[ModuleType | None, str | None]:
        """(pynvml, None) when NVML is usable, else (None, why not)."""
        with self._lock:
            if not self._attempted:
                self._attempted = True
                self._module, self._reason = _initialise_nvml()
            return self._module, self._reason


def _initialise_nvml() -> tuple[ModuleType | None, str | None]:
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py not installed"
    error_type = getattr(pynvml, "NVMLError", None)
    if error_type is None:
        return None, "nvidia-ml-py is broken (no NVMLError)"
    try:
        pynvml.nvmlInit()
    except error_type as exc:
        code = getattr(exc, "value", None)
        known = _INIT_FAILURE_REASONS.get(code) if isinstance(code, int) else None
        return None, known or f"NVML failed: {exc}"
    except (OSError, AttributeError) as exc:
        return None, f"NVML unusable: {exc}"
    return pynvml, None


NVML = NvmlLibrary()


def _query(nvml: ModuleType, function: str, *args: Any) -> Any:
    """`nvml.<function>(*args)`, or None when the driver, the device or the binding cannot answer."""
    try:
        return getattr(nvml, function)(*args)
    except (nvml.NVMLError, OSError, AttributeError, TypeError):
        return None


def _device_name(nvml: ModuleType, handle: Any) -> str | None:
    name = _query(nvml, "nvmlDeviceGetName", handle)
    # Older nvidia-ml-py releases return bytes, newer ones str.
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


def process_tree(pid: int) -> set[int]:
    """`pid` and all its descendants (read from Linux's /proc; elsewhere just `pid`)."""
    tree, pending = {pid}, [pid]
    while pending:
        parent = pending.pop()
        for children_file in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                children = [int(child) for child in children_file.read_text().split()]
            except (OSError, ValueError):
                continue  # the task ended while we looked
            for child in children:
                if child not in tree:
                    tree.add(child)
                    pending.append(child)
    return tree


def _process_bytes(nvml: ModuleType, handle: Any, pids: set[int]) -> int | None:
    """GPU memory used by the processes `pids`, or None when none is listed or NVML cannot tell (e.g. WDDM).

    A process with both a compute and a graphics context is listed in both, each time with its
    whole usage (nvidia-smi shows it once as type C+G), so the lists are not added together.
    """
    per_list: list[int] = []
    for function in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        entries = [p for p in _query(nvml, function, handle) or () if getattr(p, "pid", None) in pids]
        if not entries:
            continue
        used = [getattr(p, "usedGpuMemory", None) for p in entries]
        counted = [u for u in used if isinstance(u, int)]
        if len(counted) != len(used):
            return None
        per_list.append(sum(counted))
    return max(per_list, default=None)


class NvmlGpuProbe:
    """Reads CUDA device `index` and the share of `pid` and its child processes (the app's
    training process) of it; `snapshot()` never raises.

    NVML numbers every GPU of the machine; CUDA numbers the ones CUDA_VISIBLE_DEVICES lists (as
    SLURM sets it for a job), in its order, by index or UUID. The probe follows that list, so
    `cuda:0` of a job given GPU 2 reads GPU 2. (CUDA_DEVICE_ORDER=FASTEST_FIRST, CUDA's default,
    can still order unlike GPUs differently from NVML's PCI order.)
    """

    def __init__(self, index: int = 0, pid: int | None = None, *, nvml: NvmlLibrary | None = None) -> None:
        self.index = index
        self.pid = os.getpid() if pid is None else pid
        self.nvml = NVML if nvml is None else nvml
        self._handle: Any = None

    def snapshot(self) -> GpuSnapshot:
        nvml, reason = self.nvml.load()
        if nvml is None:
            return GpuSnapshot.unavailable(reason)
        handle, reason = self._device_handle(nvml)
        if handle is None:
            return GpuSnapshot.unavailable(reason)
        memory = _query(nvml, "nvmlDeviceGetMemoryInfo", handle)
        utilization = _query(nvml, "nvmlDeviceGetUtilizationRates", handle)
        return GpuSnapshot(
            available=True,
            name=_device_name(nvml, handle),
            used_bytes=getattr(memory, "used", None),
            total_bytes=getattr(memory, "total", None),
            process_bytes=_process_bytes(nvml, handle, process_tree(self.pid)),
            utilization_percent=getattr(utilization, "gpu", None),
        )

    def _device_handle(self, nvml: ModuleType) -> tuple[Any, str | None]:
        if self._handle is None:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible is None:
                self._handle, reason = _handle_by_index(nvml, self.index)
                return self._handle, reason
            entries = visible_device_entries(visible)
            if self.index >= len(entries):
                return None, f"no GPU {self.index} in CUDA_VISIBLE_DEVICES={visible!r}"
            entry = entries[self.index]
            if entry.isdigit():
                self._handle, reason = _handle_by_index(nvml, int(entry))
            else:
                self._handle, reason = _handle_by_uuid(nvml, entry)
            if self._handle is None:
                return None, f"{reason} (CUDA_VISIBLE_DEVICES={visible!r})"
        return self._handle, None


def visible_device_entries(value: str) -> list[str]:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: indices or GPU-/MIG- UUIDs, up to the first entry
    that is neither (so "" and "-1" hide every GPU)."""
    entries = []
    for raw in value.split(","):
        entry = raw.strip()
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        entries.append(entry)
    return entries


def _handle_by_index(nvml: ModuleType, index: int) -> tuple[Any, str | None]:
    try:
        return nvml.nvmlDeviceGetHandleByIndex(index), None
    except nvml.NVMLError as exc:
        if getattr(exc, "value", None) in (_NVML_ERROR_INVALID_ARGUMENT, _NVML_ERROR_NOT_FOUND):
            return None, f"no NVIDIA GPU {index}"
        return None, f"GPU {index}: {exc}"
    except (OSError, AttributeError) as exc:
        return None, f"GPU {index}: {exc}"


def _handle_by_uuid(nvml: ModuleType, uuid: str) -> tuple[Any, str | None]:
    """The GPU whose UUID is `uuid` or starts with it (CUDA takes a unique prefix too)."""
    handle = _query(nvml, "nvmlDeviceGetHandleByUUID", uuid)
    if handle is not None:
        return handle, None
    matches = []
    for index in range(_query(nvml, "nvmlDeviceGetCount") or 0):
        candidate = _query(nvml, "nvmlDeviceGetHandleByIndex", index)
        found = _query(nvml, "nvmlDeviceGetUUID", candidate) if candidate is not None else None
        found = found.decode("ascii", "replace") if isinstance(found, bytes) else found
        if isinstance(found, str) and found.startswith(uuid):
            matches.append(candidate)
    if len(matches) == 1:
        return matches[0], None
    return None, f"no NVIDIA GPU {uuid}" if not matches else f"{uuid} names more than one GPU"


def nvml_available(library: NvmlLibrary | None = None) -> bool:
    """Whether NVML (`library`, the process's `NVML` when None) loads and sees at least one GPU."""
    nvml, _ = (NVML if library is None else library).load()
    return nvml is not None and (_query(nvml, "nvmlDeviceGetCount") or 0) > 0
