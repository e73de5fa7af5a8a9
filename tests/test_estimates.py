"""The estimates' specification: the memory model's arithmetic on known shapes, the time estimate's
arithmetic, calibration leaving the parameters as it found them, the RSS peak tracker, and, on the
real Fashion-MNIST, both estimates against what a short run measures.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.architecture import count_parameters
from engine.backends import make_backend
from engine.batching import DeviceData
from engine.calibration import calibrate_step_time, estimate_time
from engine.config import RunConfig
from engine.events import RunStatus
from engine.memory import PeakRssTracker
from engine.memory_model import DEFAULT_CUDA_CONTEXT, estimate_memory
from engine.params import init_params

MIB = 1024**2
N, M, D, H, C = 60_000, 10_000, 784, 256, 10
FLOAT, INDEX = 4, 8
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _offline(offline_datasets: Path) -> None:
    """Every test here: no download, no Debian copy found by accident (see conftest)."""


def _fmnist(**overrides) -> RunConfig:
    """fmnist 784→256→10, batch 20, lab4, native."""
    values = dict(dataset="fmnist", hidden=(H,), batch_size=20, conventions="lab4", engine="native", device="cpu")
    values.update(overrides)
    return RunConfig(**values)


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


@pytest.mark.parametrize("engine", ["native", "graph", "autograd"])
def test_calibration_restores_the_parameters_it_trained_on(engine):
    g = torch.Generator().manual_seed(0)
    data = DeviceData.from_tensors(
        torch.randint(0, 256, (200, D), generator=g, dtype=torch.uint8),
        torch.randint(0, C, (200,), generator=g),
        torch.randint(0, 256, (50, D), generator=g, dtype=torch.uint8),
        torch.randint(0, C, (50,), generator=g),
        C, "cpu",
    )
    params = init_params(D, (16,), C, conventions="lab4", seed=0)
    backend = make_backend(engine, params, data, lr=0.5, reg=0.01, batch_size=10, conventions="lab4")
    tensors = backend.params.tensors()
    before = [t.detach().clone() for t in tensors]

    moved: list[bool] = []
    real_step = backend.train_step

    def recording_step(step: int) -> None:
        real_step(step)
        moved.append(any(not torch.equal(t.detach(), b) for t, b in zip(tensors, before)))

    backend.train_step = recording_step
    calibration = calibrate_step_time(backend, torch.device("cpu"))

    assert calibration.steps_timed >= 1 and calibration.seconds_per_step > 0
    assert any(moved)  # the calibration's steps really changed the parameters...
    after = backend.params.tensors()
    assert all(a is t for a, t in zip(after, tensors))  # ...in place (the fast path keeps views)
    assert all(torch.equal(a.detach(), b) for a, b in zip(after, before))  # ...and were undone


def test_the_rss_tracker_reports_the_peak_growth_since_start():
    tracker = PeakRssTracker()
    tracker.start()
    block = np.ones(200 * 10**6 // 8)  # 200 MB, every page touched
    during = tracker.peak_growth_bytes()
    del block
    after = tracker.peak_growth_bytes()
    assert isinstance(during, int) and during >= 150 * 10**6
    assert after >= 150 * 10**6  # a peak: freeing the block does not lower it


# --- against a real run -------------------------------------------------------------------------


REAL_RUN_ATTEMPTS = 3
# Run in a fresh interpreter, as the CLI would: a process that has already run other tests has
# freed heap the run can reuse, which lowers its RSS growth by a varying amount.
REAL_RUN_SCRIPT = """
import json, sys
from engine.config import RunConfig
from engine.runner import execute_run, prepare_run
config = RunConfig(dataset="fmnist", data_root=sys.argv[1], device="cpu", hidden=(256,),
                   batch_size=100, epochs=1, lr=0.01)
events = []
finished = execute_run(prepare_run(config), events.append)
started = events[0]
print(json.dumps(dict(
    status=finished.status.value, train_samples=started.train_samples,
    estimated_s=started.time_estimate.train_seconds, actual_s=finished.resources.train_time_s,
    estimated_b=started.memory_estimate.total, actual_b=finished.resources.peak_rss_growth_bytes,
)))
"""


def _real_run_ratios() -> tuple[float, float]:
    """One short real run: (estimated / actual train time, estimated / actual peak memory)."""
    env = {k: v for k, v in os.environ.items() if k != "TUNER_TUI_DATA"}
    done = subprocess.run(
        [sys.executable, "-c", REAL_RUN_SCRIPT, str(FASHION_MNIST_DIR)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout.strip().splitlines()[-1])
    assert run["status"] == RunStatus.COMPLETED.value
    assert run["train_samples"] == N
    time_ratio, memory_ratio = run["estimated_s"] / run["actual_s"], run["estimated_b"] / run["actual_b"]
    print(
        f"\nreal fmnist 784→256→10 batch 100, 1 epoch, cpu: "
        f"estimated/actual train time {time_ratio:.3f} ({run['estimated_s']:.3f} s / {run['actual_s']:.3f} s), "
        f"estimated/actual memory {memory_ratio:.3f} "
        f"({run['estimated_b'] / MIB:.1f} MiB / {run['actual_b'] / MIB:.1f} MiB)"
    )
    return time_ratio, memory_ratio


@pytest.mark.realdata
@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason=f"{FASHION_MNIST_DIR} is absent")
def test_on_real_fashion_mnist_the_estimates_are_near_the_measured_time_and_memory():
    # The product aims at ±15 %; the bounds here are looser (±50 % time, ±25 % memory) and each
    # gets up to three runs, because a 0.2 s calibration on a shared 2-core machine can catch a
    # burst of someone else's work. A systematic error fails every run.
    ratios = [_real_run_ratios()]

    def within(ratio: tuple[float, float]) -> bool:
        return 0.5 <= ratio[0] <= 1.5 and 0.75 <= ratio[1] <= 1.25

    while not within(ratios[-1]) and len(ratios) < REAL_RUN_ATTEMPTS:
        ratios.append(_real_run_ratios())
    assert within(ratios[-1]), f"(time, memory) estimated/actual in {len(ratios)} runs: {ratios}"
