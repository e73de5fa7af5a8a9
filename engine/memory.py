"""Measuring memory: the process's peak RSS on the CPU, and the CUDA context size, remembered per device."""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

import platformdirs

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
CONTEXT_CACHE_ENV = "TUNER_TUI_CACHE_DIR"


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_bytes() -> int | None:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def host_available_bytes() -> int | None:
    """Memory the OS can still give (MemAvailable), or None where /proc/meminfo is absent."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakRssTracker:
    """Peak RSS growth of this process since `start()`.

    On Linux the kernel's high-water mark (VmHWM) is reset at start by writing 5 to
    /proc/self/clear_refs, so the peak is exact; elsewhere `ru_maxrss` gives an upper bound.
    """

    def __init__(self) -> None:
        self.baseline: int | None = None
        self._exact = False

    def start(self) -> None:
        self.baseline = current_rss_bytes()
        try:
            _CLEAR_REFS.write_text("5")
            self._exact = _status_kib("VmHWM") is not None
        except OSError:
            self._exact = False

    def peak_growth_bytes(self) -> int | None:
        if self.baseline is None:
            return None
        if self._exact:
            peak_kib = _status_kib("VmHWM")
            peak = None if peak_kib is None else peak_kib * 1024
        else:
            scale = 1 if sys.platform == "darwin" else 1024
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        return None if peak is None else max(0, peak - self.baseline)


def _context_cache_file() -> Path:
    root = os.environ.get(CONTEXT_CACHE_ENV) or platformdirs.user_cache_dir("tuner-tui")
    return Path(root) / "cuda_context.json"


def _context_key(device_label: str) -> str:
    import torch

    return f"{device_label} | torch {torch.__version__} | cuda {torch.version.cuda}"


def remembered_context_bytes(device_label: str) -> int | None:
    """The CUDA context + runtime overhead measured on this device before, if ever."""
    try:
        cache = json.loads(_context_cache_file().read_text())
        return int(cache[_context_key(device_label)])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember_context_bytes(device_label: str, nbytes: int) -> None:
    """Store a measured context size for later estimates (best effort: a failure is ignored)."""
    path = _context_cache_file()
    try:
        cache = json.loads(path.read_text()) if path.exists() else {}
        cache[_context_key(device_label)] = int(nbytes)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        tmp.replace(path)
    except (OSError, ValueError):
        pass
