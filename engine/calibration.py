"""The time estimate before launch: a short calibration of real steps on the run's device."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from tuner_tui.engine.batching import steps_per_epoch
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.dataset_specs import DATASET_SPECS
from tuner_tui.engine.devices import synchronize
from tuner_tui.engine.events import TimeEstimate
from tuner_tui.engine.params import MLPParams

CALIBRATION_WARMUP_STEPS = 5
CALIBRATION_CHUNK_STEPS = 10
CALIBRATION_MIN_CHUNKS = 5
CALIBRATION_MIN_SECONDS = 0.2


@dataclass(frozen=True)
class Calibration:
    seconds_per_step: float
    steps_timed: int


class Steppable(Protocol):
    """What calibration needs of a backend: a solo `Backend`, or a pack (`tuner_tui.engine.packed`)."""

    @property
    def params(self) -> MLPParams: ...

    @property
    def steps_per_epoch(self) -> int: ...

    def start_epoch(self, epoch: int) -> None: ...

    def train_step(self, step: int) -> None: ...

    def test_accuracy(self) -> object: ...


class CalibrationCancelled(Exception):
    """The run was asked to stop while it was being calibrated."""


def calibrate_step_time(
    backend: Steppable,
    device: torch.device,
    cancel: threading.Event | None = None,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> Calibration:
    """Time real steps of `backend` after a warm-up, then restore its parameters.

    Steps are timed in chunks of CALIBRATION_CHUNK_STEPS until CALIBRATION_MIN_SECONDS and at
    least CALIBRATION_MIN_CHUNKS chunks have passed (or an epoch runs out); the estimate is the
    median chunk, so a burst of other work on a shared machine does not skew it. `cancel` is
    checked between chunks (CalibrationCancelled), so a stop during a slow calibration is prompt.
    `clock` (seconds) can be injected in tests.
    """
    saved = [t.detach().clone() for t in backend.params.tensors()]
    backend.start_epoch(0)
    limit = backend.steps_per_epoch
    warmup = min(CALIBRATION_WARMUP_STEPS, max(0, limit - 1))
    for step in range(warmup):
        if cancel is not None and cancel.is_set():
            _restore(backend, saved)
            raise CalibrationCancelled
        backend.train_step(step)
    synchronize(device)
    step, begin = warmup, clock()
    per_step: list[float] = []
    while step < limit:
        if cancel is not None and cancel.is_set():
            _restore(backend, saved)
            raise CalibrationCancelled
        chunk_start = clock()
        chunk_end = min(limit, step + CALIBRATION_CHUNK_STEPS)
        for index in range(step, chunk_end):
            backend.train_step(index)
        synchronize(device)
        per_step.append((clock() - chunk_start) / (chunk_end - step))
        step = chunk_end
        if len(per_step) >= CALIBRATION_MIN_CHUNKS and clock() - begin >= CALIBRATION_MIN_SECONDS:
            break
    _restore(backend, saved)
    return Calibration(statistics.median(per_step), step - warmup)


def _restore(backend: Steppable, saved: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for tensor, value in zip(backend.params.tensors(), saved, strict=True):
            tensor.copy_(value)


def time_test_pass(
    backend: Steppable, device: torch.device, *, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds for one test-set accuracy pass (the per-epoch evaluation)."""
    synchronize(device)
    start = clock()
    backend.test_accuracy()
    synchronize(device)
    return clock() - start


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
