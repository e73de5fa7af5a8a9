"""What the results store holds, as plain records: a run, its epochs, its labels, a row that cannot
be read. No SQLite here: the app and the reports use these without the store's plumbing.

`StartColumns` and `FinishedColumns` are the one list each of what a run sets when it starts and
when it ends, shared by the store, the cluster journal and its import, and the recorder.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner_tui.engine.chance import at_chance
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.dataset_specs import DATASET_SPECS
from tuner_tui.engine.events import Finished, RunStatus, Started
from tuner_tui.usercode.config import UserRunConfig
from tuner_tui.usercode.events import MetricsReported, UserFinished, UserStarted

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
    metrics: Mapping[str, float] = field(default_factory=dict)  # what a user's code reported

    def to_json(self) -> dict[str, Any]:
        if self.metrics:  # a run of user code: its own metrics
            return {"epoch": self.epoch, **self.metrics, "seconds": self.seconds}
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

    @classmethod
    def of_report(cls, report: MetricsReported) -> EpochRecord:
        """A user's report as an epoch: its own metrics only (the built-in columns mean the lab's
        figures, in the lab's units, and stay empty)."""
        return cls(epoch=report.epoch, train_loss=None, train_accuracy=None, test_accuracy=None,
                   seconds=report.seconds, metrics=dict(report.metrics))


@dataclass(frozen=True)
class ModelRef:
    """The model file a run of user code came from, and its metric that matters."""

    file: str
    train: str
    title: str
    headline: str
    direction: str  # maximize | minimize

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class RunRecord:
    """One stored run; figures that do not apply (or not yet) are None."""

    id: int
    status: RunStatus
    config: RunConfig | UserRunConfig
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
    model: ModelRef | None = None  # a run of user code: its model file
    code: Mapping[str, Any] | None = None  # where its code came from (`CodeOrigin.to_dict()`)
    metrics: Mapping[str, float] = field(default_factory=dict)  # its final metrics
    log: str = ""  # its log (a failed run's traceback among it)

    @property
    def builtin(self) -> RunConfig | None:
        """The config of a built-in run (None for a run of user code)."""
        return self.config if isinstance(self.config, RunConfig) else None

    @property
    def headline(self) -> tuple[str, float | None, str]:
        """The metric that matters: (name, value, maximize | minimize); a built-in run's test accuracy."""
        if self.model is not None:
            return self.model.headline, self.metrics.get(self.model.headline), self.model.direction
        return "test_accuracy", self.test_accuracy, "maximize"

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
        config = self.builtin
        return config is not None and self.status is not RunStatus.RUNNING and at_chance(
            self.test_accuracy, DATASET_SPECS[config.dataset].classes
        )

    def to_json(self) -> dict[str, Any]:
        """The run as the CLI's `--json` output writes it (a run of user code: its model, its code's
        origin, its fields as config, and the metrics it reported)."""
        if self.model is not None:
            return self._user_json()
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

    def _user_json(self) -> dict[str, Any]:
        assert self.model is not None and isinstance(self.config, UserRunConfig)
        return {
            "run_id": self.id or None, "uid": self.uid or None, "preset": self.preset, "sweep": self.sweep,
            "trial": self.trial, "status": self.status.value, "model": self.model.to_json(),
            "config": self.config.fields, "device": self.device_name, "node": self.hostname,
            "array_task": self.array_task, "started_at": self.started_at, "finished_at": self.finished_at,
            "message": self.message, "tags": list(self.tags), "note": self.note,
            "metrics": dict(self.metrics), "train_time_s": self.train_time_s, "total_time_s": self.total_time_s,
            "epochs": [epoch.to_json() for epoch in self.epochs], "code": dict(self.code or {}),
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


EPOCH_COLUMNS: tuple[str, ...] = tuple(name for name in EpochRecord.__dataclass_fields__ if name != "metrics")


@dataclass(frozen=True)
class StartColumns:
    """What a started run sets in its row besides its config, labels and lease: the one list of
    those columns, for the store, the cluster journal and the recorder."""

    device_name: str
    params: int
    estimated_memory_bytes: int | None = None
    estimated_time_s: float | None = None  # None: no estimate yet (a sweep's first trial of its shape)
    data_source: str | None = None

    @classmethod
    def of(cls, started: Started) -> StartColumns:
        seconds = started.time_estimate.train_seconds
        return cls(
            device_name=started.device_name, params=started.params,
            estimated_memory_bytes=started.memory_estimate.total,
            estimated_time_s=seconds if math.isfinite(seconds) else None, data_source=started.data_source,
        )

    def values(self) -> dict[str, Any]:
        """Column → value."""
        return {name: getattr(self, name) for name in START_COLUMNS}


START_COLUMNS: tuple[str, ...] = tuple(StartColumns.__dataclass_fields__)


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


def user_finished_columns(finished: UserFinished, finished_at: float) -> FinishedColumns:
    """What a finished run of user code sets of the common columns (its own metrics go apart)."""
    return FinishedColumns(
        status=RunStatus(finished.status).value, finished_at=finished_at, params=0,
        train_loss=None, train_accuracy=None, test_accuracy=None, peak_memory_bytes=None, gpu_memory_bytes=None,
        train_time_s=finished.train_time_s, total_time_s=finished.total_time_s, message=finished.message,
        diverged_step=None, loss_curve=(),
    )


def model_ref(started: UserStarted) -> ModelRef:
    """The model a run of user code came from, as its row keeps it."""
    return ModelRef(started.config.model, started.origin.function, started.title, started.headline,
                    started.direction)


def new_run_uid() -> str:
    """A run id unique across hosts and stores (it survives import from a cluster worker)."""
    return uuid.uuid4().hex


def field_of(record: RunRecord, name: str) -> Any:
    """A config field by name: a built-in run's (`lr`, `batch_size`…), or a run of user code's own
    field of that name; None when it has none."""
    config = record.config
    if isinstance(config, RunConfig):
        return getattr(config, name, None)
    return config.fields.get(name)


def number_of(record: RunRecord, name: str) -> float | None:
    """`field_of` when it is a number (for columns that sort and format numbers), else None."""
    value = field_of(record, name)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def what_trains(record: RunRecord) -> str:
    """The network's layers as the lab writes them (`784→256→10`), or the user's model's title."""
    config = record.builtin
    if config is not None:
        return config.layers_label
    return record.model.title if record.model is not None else "?"


def dataset_of(record: RunRecord) -> str:
    """A built-in run's dataset; a run of user code has none of its own ("")."""
    config = record.builtin
    return config.dataset if config is not None else ""
