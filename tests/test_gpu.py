"""GPU probing: NVML faked or absent, never an exception; byte formatting; device indices."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.doubles import FakeGpuProbe
from tuner_tui.engine import gpu
from tuner_tui.engine.gpu import (
    GpuSnapshot,
    NvmlGpuProbe,
    NvmlLibrary,
    nvml_available,
    visible_device_entries,
)
from tuner_tui.engine.units import format_bytes
from tuner_tui.formatting import gpu_memory_text

REPO_ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3
MIB = 1024**2
PID = 4242


class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class FakeProcess:
    pid: int
    usedGpuMemory: int | None


class FakePynvml:
    """The slice of pynvml that engine.gpu uses, with one 16 GiB GPU at index 0."""

    NVMLError = FakeNVMLError

    def __init__(self, init_error: Exception | None = None) -> None:
        self.init_error = init_error
        self.init_calls = 0
        self.name: str | bytes = b"Fake GPU 16GB"
        self.compute: list[FakeProcess] = [FakeProcess(PID, 945 * MIB), FakeProcess(7, 3 * GIB)]
        self.graphics: list[FakeProcess] = []

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise self.init_error

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        if index != 0:
            raise FakeNVMLError(2)  # NVML_ERROR_INVALID_ARGUMENT
        return "handle-0"

    def nvmlDeviceGetName(self, handle: str) -> str | bytes:
        return self.name

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> SimpleNamespace:
        return SimpleNamespace(used=5 * GIB, total=16 * GIB, free=11 * GIB)

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> SimpleNamespace:
        return SimpleNamespace(gpu=37, memory=12)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[FakeProcess]:
        return self.compute

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: str) -> list[FakeProcess]:
        return self.graphics


def _not_supported(*args: object) -> None:
    raise FakeNVMLError(3)  # NVML_ERROR_NOT_SUPPORTED


@pytest.fixture
def nvml() -> NvmlLibrary:
    """An NVML library of its own, not yet initialised, so each test starts from scratch."""
    return NvmlLibrary()


def _use_fake_nvml(monkeypatch: pytest.MonkeyPatch, fake: FakePynvml) -> FakePynvml:
    """`import pynvml` gives `fake`; the machine's own CUDA_VISIBLE_DEVICES is cleared."""
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch, nvml: NvmlLibrary) -> FakePynvml:
    return _use_fake_nvml(monkeypatch, FakePynvml())


def _snapshot(**changes: Any) -> GpuSnapshot:
    fields = dict(
        available=True,
        name="Fake GPU",
        used_bytes=int(1.2 * GIB),
        total_bytes=15 * GIB,
        process_bytes=945 * MIB,
        utilization_percent=50,
    )
    return GpuSnapshot(**{**fields, **changes})


# The real NVML on whatever machine runs the tests


@pytest.mark.skipif(nvml_available(), reason="an NVIDIA driver is present")
def test_real_probe_without_driver_is_unavailable_with_a_reason(nvml: NvmlLibrary) -> None:
    snapshot = NvmlGpuProbe(nvml=nvml).snapshot()

    assert snapshot.available is False
    assert snapshot.reason
    assert snapshot.used_bytes is None and snapshot.process_bytes is None
    assert gpu_memory_text(snapshot) == f"n/a ({snapshot.reason})"


@pytest.mark.skipif(not nvml_available(), reason="no NVIDIA driver or GPU")
def test_real_probe_with_driver_reads_name_and_memory(nvml: NvmlLibrary) -> None:
    snapshot = NvmlGpuProbe(nvml=nvml).snapshot()

    assert snapshot.available is True
    assert isinstance(snapshot.name, str) and snapshot.name
    assert snapshot.total_bytes is not None and 0 <= (snapshot.used_bytes or 0) <= snapshot.total_bytes


def test_importing_engine_gpu_loads_neither_pynvml_nor_torch() -> None:
    code = "import sys, tuner_tui.engine.gpu; print('pynvml' in sys.modules, 'torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["False", "False"]


# NvmlGpuProbe against a fake pynvml


def test_full_snapshot_reads_every_field(fake_nvml: FakePynvml, nvml: NvmlLibrary) -> None:
    snapshot = NvmlGpuProbe(index=0, pid=PID, nvml=nvml).snapshot()

    assert snapshot == GpuSnapshot(
        available=True,
        name="Fake GPU 16GB",
        used_bytes=5 * GIB,
        total_bytes=16 * GIB,
        process_bytes=945 * MIB,
        utilization_percent=37,
        reason=None,
    )


def test_device_name_given_as_str_is_kept(fake_nvml: FakePynvml, nvml: NvmlLibrary) -> None:
    fake_nvml.name = "Fake GPU as str"

    assert NvmlGpuProbe(pid=PID, nvml=nvml).snapshot().name == "Fake GPU as str"


def test_probe_defaults_to_this_process(fake_nvml: FakePynvml, nvml: NvmlLibrary) -> None:
    fake_nvml.compute = [FakeProcess(gpu.os.getpid(), 123 * MIB)]

    assert NvmlGpuProbe(nvml=nvml).snapshot().process_bytes == 123 * MIB


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="child processes are found through Linux's /proc")
def test_probe_counts_the_memory_of_its_child_processes(fake_nvml: FakePynvml, nvml: NvmlLibrary) -> None:
    """The app trains in a child process: "this process" must include it."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        fake_nvml.compute = [
            FakeProcess(gpu.os.getpid(), 100 * MIB), FakeProcess(child.pid, 400 * MIB), FakeProcess(7, GIB),
        ]

        assert child.pid in gpu.process_tree(gpu.os.getpid())
        assert NvmlGpuProbe(nvml=nvml).snapshot().process_bytes == 500 * MIB
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=60)


def test_process_not_listed_has_no_process_bytes(fake_nvml: FakePynvml, nvml: NvmlLibrary) -> None:
    snapshot = NvmlGpuProbe(pid=999_999, nvml=nvml).snapshot()

    assert snapshot.available is True
    assert snapshot.process_bytes is None


def test_process_memory_reported_as_none_gives_no_process_bytes(fake_nvml: FakePynvml, nvml: NvmlLibrary) -> None:
    fake_nvml.compute = [FakeProcess(PID, None)]

    assert NvmlGpuProbe(pid=PID, nvml=nvml).snapshot().process_bytes is None


def test_process_listed_only_as_graphics_is_counted(fake_nvml: FakePynvml, nvml: NvmlLibrary) -> None:
    fake_nvml.compute = []
    fake_nvml.graphics = [FakeProcess(PID, 64 * MIB)]

    assert NvmlGpuProbe(pid=PID, nvml=nvml).snapshot().process_bytes == 64 * MIB


def test_process_listed_as_compute_and_graphics_is_counted_once(fake_nvml: FakePynvml, nvml: NvmlLibrary) -> None:
    fake_nvml.compute = [FakeProcess(PID, 945 * MIB)]
    fake_nvml.graphics = [FakeProcess(PID, 945 * MIB)]

    assert NvmlGpuProbe(pid=PID, nvml=nvml).snapshot().process_bytes == 945 * MIB


def test_unsupported_query_blanks_only_its_field(
    fake_nvml: FakePynvml, nvml: NvmlLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_nvml, "nvmlDeviceGetUtilizationRates", _not_supported)

    snapshot = NvmlGpuProbe(pid=PID, nvml=nvml).snapshot()

    assert snapshot.utilization_percent is None
    assert snapshot.available is True
    assert (snapshot.name, snapshot.used_bytes, snapshot.process_bytes) == ("Fake GPU 16GB", 5 * GIB, 945 * MIB)


def test_unsupported_process_listing_gives_no_process_bytes(
    fake_nvml: FakePynvml, nvml: NvmlLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_nvml, "nvmlDeviceGetComputeRunningProcesses", _not_supported)

    snapshot = NvmlGpuProbe(pid=PID, nvml=nvml).snapshot()

    assert snapshot.process_bytes is None
    assert snapshot.used_bytes == 5 * GIB


def test_missing_device_index_is_unavailable(fake_nvml: FakePynvml, nvml: NvmlLibrary) -> None:
    snapshot = NvmlGpuProbe(index=3, nvml=nvml).snapshot()

    assert snapshot == GpuSnapshot.unavailable("no NVIDIA GPU 3")


def test_init_failure_makes_snapshot_unavailable_with_reason(fake_nvml: FakePynvml, nvml: NvmlLibrary) -> None:
    fake_nvml.init_error = FakeNVMLError(12)  # NVML_ERROR_LIBRARY_NOT_FOUND

    snapshot = NvmlGpuProbe(nvml=nvml).snapshot()

    assert snapshot == GpuSnapshot.unavailable("no NVIDIA driver")
    assert gpu_memory_text(snapshot) == "n/a (no NVIDIA driver)"


def test_init_is_attempted_once_across_many_snapshots(fake_nvml: FakePynvml, nvml: NvmlLibrary) -> None:
    fake_nvml.init_error = FakeNVMLError(9)  # NVML_ERROR_DRIVER_NOT_LOADED
    probes = [NvmlGpuProbe(nvml=nvml), NvmlGpuProbe(index=1, nvml=nvml)]

    reasons = {probe.snapshot().reason for _ in range(50) for probe in probes}

    assert fake_nvml.init_calls == 1
    assert reasons == {"NVIDIA driver not loaded"}
    assert nvml_available(nvml) is False


def test_concurrent_first_snapshots_initialise_once(
    fake_nvml: FakePynvml, nvml: NvmlLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_init() -> None:
        fake_nvml.init_calls += 1
        time.sleep(0.05)

    monkeypatch.setattr(fake_nvml, "nvmlInit", slow_init)
    snapshots: list[GpuSnapshot] = []
    probe = NvmlGpuProbe(pid=PID, nvml=nvml)
    threads = [threading.Thread(target=lambda: snapshots.append(probe.snapshot())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert fake_nvml.init_calls == 1
    assert len(snapshots) == 8 and all(s.available for s in snapshots)


def test_init_raising_oserror_is_unavailable(fake_nvml: FakePynvml, nvml: NvmlLibrary) -> None:
    fake_nvml.init_error = OSError("libnvidia-ml.so.1: cannot open shared object file")

    snapshot = NvmlGpuProbe(nvml=nvml).snapshot()

    assert snapshot.available is False
    assert snapshot.reason is not None and "libnvidia-ml" in snapshot.reason


def test_missing_nvidia_ml_py_is_unavailable(nvml: NvmlLibrary, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError

    assert NvmlGpuProbe(nvml=nvml).snapshot() == GpuSnapshot.unavailable("nvidia-ml-py not installed")


def test_nvml_available_when_init_succeeds_and_a_gpu_is_seen(fake_nvml: FakePynvml, nvml: NvmlLibrary) -> None:
    assert nvml_available(nvml) is True


# CUDA_VISIBLE_DEVICES: CUDA's numbering of the GPUs a job was given


class FakeFourGpuPynvml(FakePynvml):
    """Four GPUs; GPU i is named "Fake GPU i", has i+1 GiB and UUID GPU-iiii0000-…."""

    def nvmlDeviceGetCount(self) -> int:
        return 4

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        if not 0 <= index < 4:
            raise FakeNVMLError(2)
        return f"handle-{index}"

    def nvmlDeviceGetUUID(self, handle: str) -> str:
        i = handle.removeprefix("handle-")
        return f"GPU-{i * 4}0000-1111-2222-3333-444455556666"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        for index in range(4):
            if self.nvmlDeviceGetUUID(f"handle-{index}") == uuid:
                return f"handle-{index}"
        raise FakeNVMLError(6)  # NVML_ERROR_NOT_FOUND

    def nvmlDeviceGetName(self, handle: str) -> str:
        return f"Fake GPU {handle.removeprefix('handle-')}"


@pytest.fixture
def four_gpus(monkeypatch: pytest.MonkeyPatch, nvml: NvmlLibrary) -> FakePynvml:
    return _use_fake_nvml(monkeypatch, FakeFourGpuPynvml())


def test_without_cuda_visible_devices_cuda_index_is_nvml_index(four_gpus: FakePynvml, nvml: NvmlLibrary) -> None:
    assert NvmlGpuProbe(index=1, nvml=nvml).snapshot().name == "Fake GPU 1"


@pytest.mark.parametrize(
    ("visible", "index", "name"), [("2,3", 0, "Fake GPU 2"), ("2,3", 1, "Fake GPU 3"), ("3, 0", 1, "Fake GPU 0")]
)
def test_cuda_index_counts_the_gpus_cuda_visible_devices_lists(
    four_gpus: FakePynvml, nvml: NvmlLibrary, monkeypatch: pytest.MonkeyPatch, visible: str, index: int, name: str,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert NvmlGpuProbe(index=index, nvml=nvml).snapshot().name == name


def test_cuda_visible_devices_by_full_uuid(
    four_gpus: FakePynvml, nvml: NvmlLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-22220000-1111-2222-3333-444455556666")
    assert NvmlGpuProbe(nvml=nvml).snapshot().name == "Fake GPU 2"


def test_cuda_visible_devices_by_unique_uuid_prefix(
    four_gpus: FakePynvml, nvml: NvmlLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-3333")
    assert NvmlGpuProbe(nvml=nvml).snapshot().name == "Fake GPU 3"


def test_cuda_visible_devices_uuid_prefix_of_several_gpus_is_unavailable(
    four_gpus: FakePynvml, nvml: NvmlLibrary, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-")
    snapshot = NvmlGpuProbe(nvml=nvml).snapshot()
    assert not snapshot.available and snapshot.reason is not None
    assert "more than one GPU" in snapshot.reason


@pytest.mark.parametrize("visible", ["", "-1", "1,-1,0"])
def test_gpu_not_among_cuda_visible_devices_is_unavailable_with_the_variable_named(
    four_gpus: FakePynvml, nvml: NvmlLibrary, monkeypatch: pytest.MonkeyPatch, visible: str,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    probe = NvmlGpuProbe(index=0 if visible != "1,-1,0" else 1, nvml=nvml)
    snapshot = probe.snapshot()
    assert not snapshot.available and snapshot.reason is not None
    assert "CUDA_VISIBLE_DEVICES" in snapshot.reason


def test_listed_gpu_the_machine_lacks_is_unavailable(
    four_gpus: FakePynvml, nvml: NvmlLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    snapshot = NvmlGpuProbe(nvml=nvml).snapshot()
    assert not snapshot.available
    assert snapshot.reason == "no NVIDIA GPU 7 (CUDA_VISIBLE_DEVICES='7')"


@pytest.mark.parametrize(
    ("visible", "entries"),
    [("0,1", ["0", "1"]), (" 2 , 3 ", ["2", "3"]), ("", []), ("-1", []), ("1,-1,0", ["1"]), ("1,foo,2", ["1"]),
     ("GPU-abc,MIG-def,4", ["GPU-abc", "MIG-def", "4"])],
)
def test_visible_device_entries_stop_at_the_first_invalid_entry_as_cuda_does(visible: str, entries: list[str]) -> None:
    assert visible_device_entries(visible) == entries


# FakeGpuProbe


def test_fake_probe_returns_snapshots_in_order_then_repeats_the_last() -> None:
    first, second = _snapshot(utilization_percent=10), _snapshot(utilization_percent=20)
    probe = FakeGpuProbe(first, second)

    assert [probe.snapshot() for _ in range(4)] == [first, second, second, second]


def test_fake_probe_needs_a_snapshot() -> None:
    with pytest.raises(ValueError):
        FakeGpuProbe()


# Formatting


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "n/a"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "2 KiB"),
        (1024**2 - 1, "1.0 MiB"),
        (945 * MIB, "945.0 MiB"),
        (int(1.25 * MIB), "1.2 MiB"),
        (int(1.2 * GIB), "1.2 GiB"),
        (16 * GIB, "16.0 GiB"),
        (1024 * GIB - 1, "1.0 TiB"),
        (-3 * MIB, "-3.0 MiB"),
    ],
)
def test_format_bytes(n: int | None, text: str) -> None:
    assert format_bytes(n) == text


def test_format_memory_shows_device_and_process_usage() -> None:
    assert gpu_memory_text(_snapshot()) == "1.2 GiB / 15.0 GiB used · this process 945.0 MiB"


def test_format_memory_leaves_out_process_when_unknown() -> None:
    assert gpu_memory_text(_snapshot(process_bytes=None)) == "1.2 GiB / 15.0 GiB used"


def test_format_memory_unavailable_without_reason_is_plain_na() -> None:
    assert gpu_memory_text(GpuSnapshot.unavailable(None)) == "n/a"
