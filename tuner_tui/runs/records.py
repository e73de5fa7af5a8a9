"""What the results store holds, as plain records: a run, its epochs, its labels, a row that cannot
be read. No SQLite here: the app and the reports use these without the store's plumbing.

`finished_columns` is the one list of what a finished run sets, shared by the store, the cluster
journal and its import.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tuner_tui.engine.chance import at_chance
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.dataset_specs import DATASET_SPECS
from tuner_tui.engine.events import Finished, RunStatus

MAX_CURVE_POINTS = 512


@dataclass(frozen=True)
class RunLabels:
    """What a run belongs to: the preset it came from, its sweep and trial, its pack, its cluster task."""

    preset: str | None = None
    sweep: str | None = None
    trial: int | None = None
    pack_size: int = 1
    array_task: str | None = None


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch of a stored run; accuracies in percent."""

    epoch: int
    train_loss: float | None
    train_accuracy: float | None
    test_accuracy: float | None
    seconds: float
    train_ce: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "train_ce": self.train_ce,
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "val_loss": self.val_loss,
            "val_accuracy": self.val_accuracy,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class RunRecord:
    """One stored run; figures that do not apply (or not yet) are None."""

    id: int
    status: RunStatus
    config: RunConfig
    device_name: str
    data_source: str | None
    started_at: float
    finished_at: float | None
    hostname: str
    pid: int
    params: int
    estimated_memory_bytes: int | None
    estimated_time_s: float | None
    train_loss: float | None
    train_accuracy: float | None
    test_accuracy: float | None
    peak_memory_bytes: int | None
    gpu_memory_bytes: int | None
    train_time_s: float | None
    total_time_s: float | None
    message: str
    diverged_step: int | None
    epochs: tuple[EpochRecord, ...]
    loss_curve: tuple[float, ...]
    preset: str | None = None  # the preset the run's config came from, unedited
    uid: str = ""
    sweep: str | None = None
    trial: int | None = None
    pack_size: int = 1
    array_task: str | None = None
    tags: tuple[str, ...] = ()
    note: str = ""
    lease_expires_at: float | None = None

    @property
    def label(self) -> str:
        """The run's name in the lab's tables: its preset, its sweep trial, else `run N`."""
        if self.preset:
            return self.preset
        if self.sweep is not None and self.trial is not None:
            return f"{self.sweep} #{self.trial}"
        return f"run {self.id}"

    @property
    def train_ce(self) -> float | None:
        """Mean cross-entropy of the last epoch (comparable across batch sizes, unlike the lab's loss)."""
        return self.epochs[-1].train_ce if self.epochs else None

    @property
    def at_chance(self) -> bool:
        """Whether the run ended with test accuracy no better than guessing."""
        return self.status is not RunStatus.RUNNING and at_chance(
            self.test_accuracy, DATASET_SPECS[self.config.dataset].classes
        )

    def to_json(self) -> dict[str, Any]:
        """The run as the CLI's `--json` output writes it."""
        return {
            "run_id": self.id or None,  # None: a run the store could not keep (see session.unsaved_record)
            "uid": self.uid or None,
            "preset": self.preset,
            "sweep": self.sweep,
            "trial": self.trial,
            "status": self.status.value,
            "at_chance": self.at_chance,
            "config": self.config.to_dict(),
            "device": self.device_name,
            "node": self.hostname,
            "array_task": self.array_task,
            "pack_size": self.pack_size,
            "data_source": self.data_source,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "message": self.message,
            "diverged_step": self.diverged_step,
            "tags": list(self.tags),
            "note": self.note,
            "metrics": {
                "train_accuracy": self.train_accuracy,
                "train_loss": self.train_loss,
                "train_ce": self.train_ce,
                "test_accuracy": self.test_accuracy,
                "params": self.params,
                "estimated_memory_bytes": self.estimated_memory_bytes,
                "peak_memory_bytes": self.peak_memory_bytes,
                "gpu_memory_bytes": self.gpu_memory_bytes,
                "estimated_time_s": self.estimated_time_s,
                "train_time_s": self.train_time_s,
                "total_time_s": self.total_time_s,
            },
            "epochs": [epoch.to_json() for epoch in self.epochs],
        }


@dataclass(frozen=True)
class UnreadableRun:
    """A stored row this version cannot read (a newer config, a damaged value): shown, never dropped."""

    id: int
    status: str  # as stored: it may be one this version does not know
    started_at: float | None
    reason: str


def downsample(values: Sequence[float], max_points: int = MAX_CURVE_POINTS) -> tuple[float, ...]:
    """At most `max_points` values: the means of consecutive, near-equal buckets."""
    n = len(values)
    if n <= max_points:
        return tuple(float(v) for v in values)
    bounds = [i * n // max_points for i in range(max_points + 1)]
    return tuple(math.fsum(values[lo:hi]) / (hi - lo) for lo, hi in itertools.pairwise(bounds))


EPOCH_COLUMNS: tuple[str, ...] = tuple(EpochRecord.__dataclass_fields__)


@dataclass(frozen=True)
class FinishedColumns:
    """What a finished run sets in its row: the one list of those columns, for the store, the
    cluster journal and its import."""

    status: str
    finished_at: float
    params: int
    train_loss: float | None
    train_accuracy: float | None
    test_accuracy: float | None
    peak_memory_bytes: int | None
    gpu_memory_bytes: int | None
    train_time_s: float | None
    total_time_s: float | None
    message: str
    diverged_step: int | None
    loss_curve: tuple[float, ...]  # at most MAX_CURVE_POINTS

    @classmethod
    def of(cls, finished: Finished, finished_at: float) -> FinishedColumns:
        resources = finished.resources
        return cls(
            status=RunStatus(finished.status).value, finished_at=finished_at, params=finished.params,
            train_loss=finished.train_loss, train_accuracy=finished.train_accuracy,
            test_accuracy=finished.test_accuracy, peak_memory_bytes=resources.peak_memory_bytes,
            gpu_memory_bytes=resources.gpu_process_memory_bytes, train_time_s=resources.train_time_s,
            total_time_s=resources.total_time_s, message=finished.message, diverged_step=finished.diverged_step,
            loss_curve=downsample(finished.loss_curve),
        )

    def values(self) -> dict[str, Any]:
        """Column → value, the loss curve as a list."""
        out = {name: getattr(self, name) for name in FINISHED_COLUMNS}
        out["loss_curve"] = list(self.loss_curve)
        return out


FINISHED_COLUMNS: tuple[str, ...] = tuple(FinishedColumns.__dataclass_fields__)


def new_run_uid() -> str:
    """A run id unique across hosts and stores (it survives import from a cluster worker)."""
    return uuid.uuid4().hex
