"""The estimates' specification: the memory model's arithmetic on known shapes, the time estimate's
arithmetic, calibration (on a fake clock: what it times, when it stops, that a burst does not skew
it, that it leaves the parameters as it found them), the RSS peak tracker, and, on the real
Fashion-MNIST, the memory estimate against what a short run measures.

How close the time estimate comes on a real machine is measured by benchmarks/estimates.py, not
asserted here: wall time on a shared machine says more about the machine than about the code.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import require_path
from tuner_tui.engine.architecture import count_parameters
from tuner_tui.engine.backend_base import Backend
from tuner_tui.engine.backend_registry import make_backend
from tuner_tui.engine.batching import DeviceData
from tuner_tui.engine.calibration import (
    CALIBRATION_CHUNK_STEPS,
    CALIBRATION_MIN_CHUNKS,
    CALIBRATION_MIN_SECONDS,
    CALIBRATION_WARMUP_STEPS,
    calibrate_step_time,
    estimate_time,
)
from tuner_tui.engine.config import EngineName, RunConfig
from tuner_tui.engine.events import RunStatus
from tuner_tui.engine.memory import PeakRssTracker
from tuner_tui.engine.memory_model import DEFAULT_CUDA_CONTEXT, estimate_memory
from tuner_tui.engine.params import init_params

MIB = 1024**2
N, M, D, H, C = 60_000, 10_000, 784, 256, 10
FLOAT, INDEX = 4, 8


@pytest.fixture(autouse=True)
def _offline(offline_datasets: Path) -> None:
    """Every test here: no download, no Debian copy found by accident (see conftest)."""


def _fmnist(**overrides: Any) -> RunConfig:
    """fmnist 784→256→10, batch 20, lab4, native."""
    base = RunConfig(dataset="fmnist", hidden=(H,), batch_size=20, conventions="lab4", engine="native", device="cpu")
    return RunConfig.from_mapping(overrides, base=base)


# --- the memory model ---------------------------------------------------------------------------


def test_the_dataset_part_is_the_uint8_images_and_int64_labels_of_both_splits():
    estimate = estimate_memory(_fmnist(), device_type="cpu")
    assert estimate.dataset == N * D + N * INDEX + M * D + M * INDEX


def test_the_parameters_part_is_four_bytes_per_parameter():
    assert count_parameters(D, (H,), C) == 203_530
    assert estimate_memory(_fmnist(), device_type="cpu").parameters == 203_530 * FLOAT
    deeper = estimate_memory(_fmnist(hidden=(256, 128)), device_type="cpu")
    assert deeper.parameters == count_parameters(D, (256, 128), C) * FLOAT


@pytest.mark.parametrize("test_size", [500, 1024, 10_000])
def test_the_test_pass_holds_one_chunk_of_at_most_1024_rows(test_size):
    estimate = estimate_memory(_fmnist(), device_type="cpu", test_size=test_size)
    rows = min(1024, test_size)
    per_row = D * FLOAT + (H + C) * FLOAT + INDEX  # float images, layer outputs, labels
    assert estimate.activations_test == rows * per_row


def test_the_train_batch_activations_scale_with_the_batch_size():
    small = estimate_memory(_fmnist(batch_size=20), device_type="cpu")
    large = estimate_memory(_fmnist(batch_size=40), device_type="cpu")
    assert large.activations_train == 2 * small.activations_train > 0


def test_the_total_is_the_sum_of_the_parts_with_the_larger_of_train_and_test_activations():
    for batch_size in (20, 4096):  # the test chunk dominates, then the train batch does
        e = estimate_memory(_fmnist(batch_size=batch_size), device_type="cpu")
        assert e.total == (
            e.dataset + e.parameters + e.gradients_and_buffers
            + max(e.activations_train, e.activations_test) + e.runtime_overhead
        )
        assert sum(e.parts().values()) - min(e.activations_train, e.activations_test) == e.total
    small, large = (estimate_memory(_fmnist(batch_size=b), device_type="cpu") for b in (20, 4096))
    assert small.activations_test > small.activations_train
    assert large.activations_train > large.activations_test


def test_on_the_cpu_the_overhead_is_the_loaders_copy_of_the_training_images():
    assert estimate_memory(_fmnist(), device_type="cpu").runtime_overhead == N * D


def test_on_cuda_the_overhead_is_the_given_context_plus_non_negative_allocator_rounding():
    context = 300 * MIB
    cpu = estimate_memory(_fmnist(), device_type="cpu")
    cuda = estimate_memory(_fmnist(), device_type="cuda", context_bytes=context)
    rounding = cuda.runtime_overhead - context
    assert 0 <= rounding < 20 * 2 * MIB  # at most one 2 MiB segment per tensor, and a few tensors
    # Everything but the overhead is the same on either device.
    assert (cuda.dataset, cuda.parameters, cuda.gradients_and_buffers, cuda.activations_train) == (
        cpu.dataset, cpu.parameters, cpu.gradients_and_buffers, cpu.activations_train
    )
    unmeasured = estimate_memory(_fmnist(), device_type="cuda")
    assert unmeasured.runtime_overhead - DEFAULT_CUDA_CONTEXT == rounding


def test_standard_conventions_add_the_epoch_order_and_its_labels_to_the_dataset_part():
    lab4 = estimate_memory(_fmnist(conventions="lab4"), device_type="cpu")
    standard = estimate_memory(_fmnist(conventions="standard"), device_type="cpu")
    assert standard.dataset - lab4.dataset == 2 * N * INDEX
    assert standard.total - lab4.total == 2 * N * INDEX


@pytest.mark.parametrize("engine", ["graph", "autograd"])
def test_graph_and_autograd_engines_count_one_gradient_per_parameter(engine):
    estimate = estimate_memory(_fmnist(engine=engine), device_type="cpu")
    epoch_records = N * FLOAT + N * INDEX  # per-sample log-likelihood and prediction
    assert estimate.gradients_and_buffers == epoch_records + 203_530 * FLOAT


def test_the_native_engine_counts_step_buffers_not_gradients():
    estimate = estimate_memory(_fmnist(batch_size=20), device_type="cpu")
    epoch_records = N * FLOAT + N * INDEX
    step_buffers = 20 * D + 20 * (H + C) * FLOAT  # uint8 gather buffer, per-layer gradient rows
    assert estimate.gradients_and_buffers == epoch_records + step_buffers


def test_the_sizes_default_to_the_official_datasets_and_can_be_overridden():
    assert estimate_memory(_fmnist(), device_type="cpu") == estimate_memory(
        _fmnist(), device_type="cpu", train_size=N, test_size=M
    )
    tiny = estimate_memory(_fmnist(), device_type="cpu", train_size=600, test_size=200)
    assert tiny.dataset == 600 * D + 600 * INDEX + 200 * D + 200 * INDEX


# --- the time estimate --------------------------------------------------------------------------


def test_the_time_estimate_is_seconds_per_step_times_steps_times_epochs():
    config = _fmnist(batch_size=10, epochs=3)
    estimate = estimate_time(config, 0.002, 0.05, train_size=605)
    assert estimate.steps_per_epoch == 61  # ceil(605 / 10): the partial last batch is a step
    assert estimate.train_seconds == pytest.approx(0.002 * 61 * 3)
    assert estimate.total_seconds == pytest.approx(0.002 * 61 * 3 + 0.05 * 3)


def test_the_time_estimate_defaults_to_the_official_training_set_size():
    estimate = estimate_time(_fmnist(batch_size=32, epochs=1), 0.001, 0.0)
    assert estimate.steps_per_epoch == math.ceil(60_000 / 32)


# --- calibration and measurement ----------------------------------------------------------------


def _tiny_backend(engine: EngineName = "native", samples: int = 200, batch_size: int = 10) -> Backend:
    g = torch.Generator().manual_seed(0)
    data = DeviceData.from_tensors(
        torch.randint(0, 256, (samples, D), generator=g, dtype=torch.uint8),
        torch.randint(0, C, (samples,), generator=g),
        torch.randint(0, 256, (50, D), generator=g, dtype=torch.uint8),
        torch.randint(0, C, (50,), generator=g),
        C, "cpu",
    )
    params = init_params(D, (16,), C, conventions="lab4", seed=0)
    return make_backend(engine, params, data, lr=0.5, reg=0.01, batch_size=batch_size, conventions="lab4")


class FakeClock:
    """Seconds that pass only when a step is taken: `costs(n)` seconds for the n-th step (0-based)."""

    def __init__(self, backend: Backend, monkeypatch: pytest.MonkeyPatch, costs: Any) -> None:
        self.now = 0.0
        self.steps = 0
        real_step = backend.train_step

        def step(index: int) -> None:
            real_step(index)
            self.now += costs(self.steps)
            self.steps += 1

        monkeypatch.setattr(backend, "train_step", step)

    def __call__(self) -> float:
        return self.now


def test_calibration_times_whole_chunks_after_a_warm_up_until_the_minimum_time_has_passed(monkeypatch):
    backend = _tiny_backend(samples=1000, batch_size=1)  # 1000 steps in an epoch
    step_seconds = 1 / 1024  # exact in binary: 10 steps are 10/1024 s
    clock = FakeClock(backend, monkeypatch, lambda n: step_seconds)
    calibration = calibrate_step_time(backend, torch.device("cpu"), clock=clock)

    chunks = math.ceil(CALIBRATION_MIN_SECONDS / (CALIBRATION_CHUNK_STEPS * step_seconds))  # 21
    assert chunks >= CALIBRATION_MIN_CHUNKS
    assert calibration.steps_timed == chunks * CALIBRATION_CHUNK_STEPS
    assert clock.steps == CALIBRATION_WARMUP_STEPS + calibration.steps_timed
    assert calibration.seconds_per_step == step_seconds


def test_calibration_takes_the_median_chunk_so_a_burst_of_other_work_does_not_skew_it(monkeypatch):
    backend = _tiny_backend(samples=1000, batch_size=1)
    first_chunk = range(CALIBRATION_WARMUP_STEPS, CALIBRATION_WARMUP_STEPS + CALIBRATION_CHUNK_STEPS)
    # The first timed chunk runs 1000 times slower (someone else's job); the minimum time is then
    # past after one chunk, but the minimum number of chunks is still taken.
    clock = FakeClock(backend, monkeypatch, lambda n: 1.0 if n in first_chunk else 1 / 1024)
    calibration = calibrate_step_time(backend, torch.device("cpu"), clock=clock)
    assert calibration.steps_timed == CALIBRATION_MIN_CHUNKS * CALIBRATION_CHUNK_STEPS
    assert calibration.seconds_per_step == 1 / 1024


def test_calibration_stops_at_the_end_of_an_epoch_shorter_than_its_minimum(monkeypatch):
    backend = _tiny_backend(samples=200, batch_size=10)  # 20 steps: warm-up 5, then 15 timed
    clock = FakeClock(backend, monkeypatch, lambda n: 1 / 1024)
    calibration = calibrate_step_time(backend, torch.device("cpu"), clock=clock)
    assert calibration.steps_timed == 20 - CALIBRATION_WARMUP_STEPS
    assert calibration.seconds_per_step == 1 / 1024


@pytest.mark.parametrize("engine", ["native", "graph", "autograd"])
def test_calibration_restores_the_parameters_it_trained_on(engine: EngineName, monkeypatch):
    backend = _tiny_backend(engine)
    tensors = backend.params.tensors()
    before = [t.detach().clone() for t in tensors]

    moved: list[bool] = []
    real_step = backend.train_step

    def recording_step(step: int) -> None:
        real_step(step)
        moved.append(any(not torch.equal(t.detach(), b) for t, b in zip(tensors, before, strict=True)))

    monkeypatch.setattr(backend, "train_step", recording_step)
    calibration = calibrate_step_time(backend, torch.device("cpu"))

    assert calibration.steps_timed >= 1 and calibration.seconds_per_step > 0
    assert any(moved)  # the calibration's steps really changed the parameters...
    after = backend.params.tensors()
    assert all(a is t for a, t in zip(after, tensors, strict=True))  # ...in place (the fast path keeps views)
    assert all(torch.equal(a.detach(), b) for a, b in zip(after, before, strict=True))  # ...and were undone


def test_the_rss_tracker_reports_the_peak_growth_since_start():
    tracker = PeakRssTracker()
    tracker.start()
    block = np.ones(200 * 10**6 // 8)  # 200 MB, every page touched
    during = tracker.peak_growth_bytes()
    del block
    after = tracker.peak_growth_bytes()
    assert isinstance(during, int) and during >= 150 * 10**6
    assert after is not None and after >= 150 * 10**6  # a peak: freeing the block does not lower it


# --- against a real run -------------------------------------------------------------------------


# Run in a fresh interpreter, as the CLI would: a process that has already run other tests has
# freed heap the run can reuse, which lowers its RSS growth by a varying amount.
REAL_RUN_SCRIPT = """
import json, sys
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.runner import execute_run, prepare_run
config = RunConfig(dataset="fmnist", data_root=sys.argv[1], device="cpu", hidden=(256,),
                   batch_size=100, epochs=1, lr=0.01)
events = []
finished = execute_run(prepare_run(config), events.append)
started = events[0]
print(json.dumps(dict(
    status=finished.status.value, train_samples=started.train_samples,
    steps_per_epoch=started.time_estimate.steps_per_epoch, seconds_per_step=started.time_estimate.seconds_per_step,
    estimated_s=started.time_estimate.train_seconds,
    estimated_b=started.memory_estimate.total, actual_b=finished.resources.peak_rss_growth_bytes,
)))
"""
REAL_RUN_TIMEOUT_S = 300


@pytest.mark.requires("fashion-mnist")
def test_on_real_fashion_mnist_the_memory_estimate_is_near_the_measured_peak():
    folder = require_path("fashion-mnist")
    env = {k: v for k, v in os.environ.items() if k != "TUNER_TUI_DATA"}
    done = subprocess.run(
        [sys.executable, "-c", REAL_RUN_SCRIPT, str(folder)],
        capture_output=True, text=True, timeout=REAL_RUN_TIMEOUT_S, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout.strip().splitlines()[-1])
    assert run["status"] == RunStatus.COMPLETED.value
    assert run["train_samples"] == N
    # The time estimate is the calibrated step time times the real epoch's steps (how near it comes
    # is benchmarks/estimates.py's business); the memory estimate does not depend on the machine's load.
    assert run["steps_per_epoch"] == N // 100
    assert run["estimated_s"] == pytest.approx(run["seconds_per_step"] * (N // 100))
    memory_ratio = run["estimated_b"] / run["actual_b"]
    print(f"\nreal fmnist 784→256→10 batch 100, 1 epoch, cpu: estimated/actual memory {memory_ratio:.3f} "
          f"({run['estimated_b'] / MIB:.1f} MiB / {run['actual_b'] / MIB:.1f} MiB)")
    assert 0.75 <= memory_ratio <= 1.25
