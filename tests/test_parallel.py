"""`--workers` and `--pack`: numbers as given, `auto` as measured per device (benchmarks/README.md)."""

from __future__ import annotations

import pytest

from tuner_tui.runs.parallel import CPU_PACK, GPU_PACK, cpu_cores, resolve_pack, resolve_sweep_pack, resolve_workers


def test_numbers_are_taken_as_given() -> None:
    assert resolve_workers(3, "cpu") == 3
    assert [resolve_pack(4, "cpu")(b) for b in (10, 100)] == [4, 4]
    assert [resolve_sweep_pack(4, "cpu")(b) for b in (10, 100)] == [4, 4]


def test_auto_on_a_cpu_packs_small_batches_for_the_lab_and_one_trial_at_a_time_for_sweeps() -> None:
    assert resolve_workers("auto", "cpu") == cpu_cores()
    assert [resolve_pack("auto", "cpu")(b) for b in (10, 79, 80, 100)] == [CPU_PACK, CPU_PACK, 1, 1]
    assert [resolve_sweep_pack("auto", "cpu")(b) for b in (10, 100)] == [1, 1]


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_auto_on_a_gpu_is_one_worker_with_packs(device: str) -> None:
    assert resolve_workers("auto", device) == 1
    assert resolve_pack("auto", device)(10) == GPU_PACK
    assert resolve_sweep_pack("auto", device)(100) == GPU_PACK
