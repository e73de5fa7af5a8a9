"""Typed events that a training run reports, in this order:
`Started`, then `Progress` and `EpochEnd` interleaved, then exactly one `Finished`.

They are plain frozen dataclasses so a UI thread, a CLI and a store can all consume them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from tuner_tui.engine.config import RunConfig


class RunStatus(StrEnum):
    """A run's state, one vocabulary for events, the store, sweeps and every reader.

    The runner ends a run as completed, cancelled, diverged, failed or pruned (stopped by a
    sweep's pruner); the store adds running (in progress, its lease renewed) and interrupted
    (its process died, seen by a dead pid on its host or an expired lease anywhere).
    """

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    DIVERGED = "diverged"
    FAILED = "failed"
    PRUNED = "pruned"
    RUNNING = "running"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak memory of a run, by part, in bytes."""

    dataset: int
    parameters: int
    gradients_and_buffers: int
    activations_train: int
    activations_test: int
    runtime_overhead: int

    @property
    def total(self) -> int:
        return (
            self.dataset
            + self.parameters
            + self.gradients_and_buffers
            + max(self.activations_train, self.activations_test)
            + self.runtime_overhead
        )

    def parts(self) -> dict[str, int]:
        """The breakdown as label → bytes, in a stable order."""
        return {
            "dataset": self.dataset,
            "parameters": self.parameters,
            "gradients + step buffers": self.gradients_and_buffers,
            "activations (train batch)": self.activations_train,
            "activations (test pass)": self.activations_test,
            "runtime overhead": self.runtime_overhead,
        }


@dataclass(frozen=True)
class TimeEstimate:
    """Predicted training time from a calibration on the real device and configuration."""

    seconds_per_step: float
    steps_per_epoch: int
    test_pass_seconds: float
    epochs: int

    @property
    def train_seconds(self) -> float:
        """The training loop alone (the lab's 'estimated training time')."""
        return self.seconds_per_step * self.steps_per_epoch * self.epochs

    @property
    def total_seconds(self) -> float:
        """Training plus the per-epoch test passes."""
        return self.train_seconds + self.test_pass_seconds * self.epochs


@dataclass(frozen=True)
class Started:
    config: RunConfig
    device_name: str
    params: int
    memory_estimate: MemoryEstimate
    time_estimate: TimeEstimate
    data_source: str
    train_samples: int
    test_samples: int


@dataclass(frozen=True)
class Progress:
    epoch: int  # 1-based
    epochs: int
    step: int  # steps done in this epoch
    steps_per_epoch: int
    loss: float  # running reported loss over this epoch so far (the lab's definition under lab4)
    accuracy: float  # running training accuracy in percent over this epoch so far
    recent_loss: float  # mean batch loss since the previous report (same scale as `loss`)
    samples_per_s: float
    elapsed_s: float
    eta_s: float


@dataclass(frozen=True)
class EpochEnd:
    """A finished epoch: the lab's loss, mean cross-entropy, accuracies in percent, its seconds.

    `val_*` are measured on the rows a sweep holds out of the training set (None without them).
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float | None  # None: a sweep's trial takes its test pass only when it completes
    seconds: float
    train_ce: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None


@dataclass(frozen=True)
class ValidationCheck:
    """A sweep's trial measured on its validation rows in the middle of an epoch: part `part` of
    `parts` (the epoch's end, an `EpochEnd`, is the last part)."""

    epoch: int
    part: int
    parts: int
    val_loss: float
    val_accuracy: float


@dataclass(frozen=True)
class Resources:
    """What the run actually used; a figure that does not apply is None."""

    train_time_s: float
    total_time_s: float
    peak_rss_growth_bytes: int | None = None
    cuda_peak_allocated_bytes: int | None = None
    cuda_peak_reserved_bytes: int | None = None
    gpu_process_memory_bytes: int | None = None
    gpu_used_bytes: int | None = None
    gpu_total_bytes: int | None = None
    gpu_utilization_percent: int | None = None

    @property
    def peak_memory_bytes(self) -> int | None:
        """The figure comparable with the memory estimate: NVML on CUDA, RSS growth on CPU."""
        if self.gpu_process_memory_bytes is not None:
            return self.gpu_process_memory_bytes
        if self.cuda_peak_reserved_bytes is not None:
            return self.cuda_peak_reserved_bytes
        return self.peak_rss_growth_bytes


@dataclass(frozen=True)
class Finished:
    status: RunStatus
    message: str
    train_loss: float | None
    train_accuracy: float | None
    test_accuracy: float | None
    params: int
    resources: Resources
    epochs: tuple[EpochEnd, ...] = ()
    loss_curve: tuple[float, ...] = field(default=())
    diverged_step: int | None = None


Event = Started | Progress | EpochEnd | Finished
