"""The time estimate before launch: a short calibration of real steps on the run's device."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from engine.backend import Backend
from engine.batching import steps_per_epoch
from engine.config import RunConfig
from engine.dataset_specs import DATASET_SPECS
from engine.devices import synchronize
from engine.events import TimeEstimate

CALIBRATION_WARMUP_STEPS = 5
CALIBRATION_MIN_STEPS = 30
CALIBRATION_MIN_SECONDS = 0.2


@dataclass(frozen=True)
class Calibration:
    seconds_per_step: float
    steps_timed: int


def calibrate_step_time(backend: Backend, device: torch.device) -> Calibration:
    """Time real steps of `backend` (after a warm-up), then restore its parameters.

    Runs until both CALIBRATION_MIN_STEPS steps and CALIBRATION_MIN_SECONDS have passed, or an
    epoch's worth of steps, whichever comes first.
    """
    saved = [t.detach().clone() for t in backend.params.tensors()]
    backend.start_epoch(0)
    limit = backend.steps_per_epoch
    warmup = min(CALIBRATION_WARMUP_STEPS, max(0, limit - 1))
    for step in range(warmup):
        backend.train_step(step)
    synchronize(device)
    step, start = warmup, time.perf_counter()
    while step < limit:
        backend.train_step(step)
        step += 1
        if step - warmup >= CALIBRATION_MIN_STEPS and step % 10 == 0:
            synchronize(device)
            if time.perf_counter() - start >= CALIBRATION_MIN_SECONDS:
                break
    synchronize(device)
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        for tensor, value in zip(backend.params.tensors(), saved):
            tensor.copy_(value)
    timed = max(1, step - warmup)
    return Calibration(elapsed / timed, timed)


def time_test_pass(backend: Backend, device: torch.device) -> float:
    """Seconds for one test-set accuracy pass (the per-epoch evaluation)."""
    synchronize(device)
    start = time.perf_counter()
    backend.test_accuracy()
    synchronize(device)
    return time.perf_counter() - start


def estimate_time(
    config: RunConfig,
    seconds_per_step: float,
    test_pass_seconds: float,
    train_size: int | None = None,
) -> TimeEstimate:
    """Training time from a measured step time: steps per epoch × epochs, plus test passes."""
    samples = DATASET_SPECS[config.dataset].train_size if train_size is None else train_size
    return TimeEstimate(
        seconds_per_step=seconds_per_step,
        steps_per_epoch=steps_per_epoch(samples, config.batch_size),
        test_pass_seconds=test_pass_seconds,
        epochs=config.epochs,
    )
