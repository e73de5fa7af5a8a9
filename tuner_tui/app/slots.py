"""Several presets run at once from the app: what each run (a slot) has reported, and what to start.

The app runs each marked preset in its own training child process (the `--no-ui` path, as a single
run from the tuning screen), at most one per CPU core at a time (`tuner_tui.runs.parallel`), each
with one torch thread: on a small CPU, side-by-side single-threaded runs beat one multi-threaded
run. Packs (`tuner-tui lab --no-ui`) are the faster way on a GPU; the app keeps one process per
run so that every run reports its progress live and stops on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import EpochEnd, Event, Finished, Progress, RunStatus, Started

QUEUED: Final = "queued"
PREPARING: Final = "preparing"
RUNNING = RunStatus.RUNNING
NOT_STARTED: Final = "not started"
# A slot is queued, preparing (its child loads data), or in a run status (running, then how it ended).
SlotStatus = RunStatus | Literal["queued", "preparing", "not started"]


@dataclass(frozen=True)
class LabLaunch:
    """Presets to mark on opening (`tuner-tui lab` without `--no-ui`), and the lab's options."""

    presets: tuple[str, ...]
    overrides: tuple[str, ...] = ()  # `--set KEY=VALUE` for every run
    workers: int | None = None  # runs at a time (None: one per CPU core on a CPU)
    force: bool = False


@dataclass
class Slot:
    """One run of several: its preset and config, and the latest of what it reported."""

    preset: str
    config: RunConfig
    status: SlotStatus = QUEUED
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    loss: float | None = None
    test_accuracy: float | None = None
    eta_s: float | None = None
    message: str = ""

    def __post_init__(self) -> None:
        self.epochs = self.config.epochs

    @property
    def active(self) -> bool:
        return self.status in (PREPARING, RUNNING)

    @property
    def ended(self) -> bool:
        return not self.active and self.status != QUEUED

    @property
    def done_fraction(self) -> float:
        """How much of its training the run has done, 0 to 1."""
        if self.status is RunStatus.COMPLETED:
            return 1.0
        if not self.steps_per_epoch or not self.epochs:
            return 0.0
        return min(1.0, ((self.epoch - 1) * self.steps_per_epoch + self.step) / (self.steps_per_epoch * self.epochs))

    def apply(self, event: Event) -> None:
        """Take in one of the run's events."""
        if isinstance(event, Started):
            self.status = RUNNING
            self.epoch, self.epochs = 1, event.config.epochs
            self.steps_per_epoch = event.time_estimate.steps_per_epoch
            self.eta_s = event.time_estimate.total_seconds
        elif isinstance(event, Progress):
            self.epoch, self.step, self.steps_per_epoch = event.epoch, event.step, event.steps_per_epoch
            self.loss, self.eta_s = event.loss, event.eta_s
        elif isinstance(event, EpochEnd):
            self.test_accuracy = event.test_accuracy
            self.loss = event.train_loss if event.train_loss is not None else self.loss
        elif isinstance(event, Finished):
            self.status = event.status
            self.message = event.message
            self.eta_s = None
            if event.test_accuracy is not None:
                self.test_accuracy = event.test_accuracy

    def end(self, status: SlotStatus, message: str) -> None:
        """The run ended without a Finished of its own (it was refused, or its runner failed)."""
        self.status, self.message, self.eta_s = status, message, None
