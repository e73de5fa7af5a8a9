"""A deterministic stand-in for the app's training runner, and scripted event lists for it.

`ScriptedRunner` has the runner's signature `(config, store, on_event, cancel, **options)` and records the
run through the real recording path (`tuner_tui.runs.session.EventRecorder`: a `running` row with a
lease at `Started`, each epoch committed as it ends, the outcome at `Finished`), so screens that read
the store see a real record. Every number is fixed: no clock, no torch, no randomness.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Sequence

from tuner_tui.engine.architecture import count_parameters
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.dataset_specs import DATASET_SPECS
from tuner_tui.engine.events import (
    EpochEnd,
    Event,
    Finished,
    MemoryEstimate,
    Progress,
    Resources,
    RunStatus,
    Started,
    TimeEstimate,
)
from tuner_tui.runs.records import RunLabels
from tuner_tui.runs.store import ResultsStore

DEVICE_NAME = "FakeGPU 16 GB (cuda:0)"
DATA_SOURCE = "/data/fashion-mnist"
SECONDS_PER_STEP = 0.0005
TEST_PASS_SECONDS = 0.25
HOLD_TIMEOUT_S = 60.0  # a held run gives up on its own if a broken test never cancels it


class ScriptedRunner:
    """Emits `events` as a run would, recording the run in the store.

    hold: emit everything but the `Finished`, then wait for `cancel` and end as cancelled.
    record: write the run to the store through `EventRecorder`; False: only emit the events.
    """

    def __init__(self, events: Sequence[Event], *, hold: bool = False, record: bool = True) -> None:
        self.events = list(events)
        self.hold = hold
        self.record = record
        self.calls: list[RunConfig] = []
        self.options: list[dict[str, object]] = []  # keyword arguments of each call (labels=, force=)
        self.run_ids: list[int] = []
        self.waiting = threading.Event()  # set once a held run is waiting for its cancel

    def __call__(
        self,
        config: RunConfig,
        store: ResultsStore,
        on_event: Callable[[Event], None],
        cancel: threading.Event,
        *,
        labels: RunLabels | None = None,
        force: bool = False,
    ) -> None:
        self.calls.append(config)
        self.options.append({"labels": labels, "force": force})
        emit = self._recording(config, store, on_event, labels) if self.record else on_event

        scripted_end = next((e for e in self.events if isinstance(e, Finished)), None)
        for event in self.events:
            if isinstance(event, Finished) and self.hold:
                continue
            emit(event)
        if self.hold:
            self.waiting.set()
            cancel.wait(HOLD_TIMEOUT_S)
            emit(cancelled_finish(self.events, scripted_end))

    def _recording(
        self, config: RunConfig, store: ResultsStore, on_event: Callable[[Event], None], labels: RunLabels | None
    ) -> Callable[[Event], None]:
        """The real recorder of a run, noting the stored run's id once it has started it."""
        from tuner_tui.runs.session import (
            EventRecorder,  # here: the deaf child of test_training_process imports no torch
        )

        def forward(event: Event) -> None:
            if isinstance(event, Started) and recording.run_id is not None:
                self.run_ids.append(recording.run_id)
            on_event(event)

        started = next((e for e in self.events if isinstance(e, Started)), None)
        recording = EventRecorder(
            store, config, labels or RunLabels(), forward,
            data_source=started.data_source if started else None, device_label=config.device,
        )
        return recording


def store_run(store: ResultsStore, config: RunConfig, events: Sequence[Event], labels: RunLabels | None = None) -> None:
    """Record the scripted `events` of a run of `config` in `store`, as the app's runner would."""
    ScriptedRunner(events)(config, store, lambda event: None, threading.Event(), labels=labels)


def cancelled_finish(events: Sequence[Event], scripted_end: Finished | None = None) -> Finished:
    """The Finished of a run cancelled after `events`: the last finished epoch's figures."""
    epochs = tuple(e for e in events if isinstance(e, EpochEnd))
    progress = [e for e in events if isinstance(e, Progress)]
    started = next(e for e in events if isinstance(e, Started))
    last = epochs[-1] if epochs else None
    where = f"epoch {progress[-1].epoch} at step {progress[-1].step}" if progress else "epoch 1 at step 0"
    base = scripted_end or Finished(
        status=RunStatus.CANCELLED, message="", train_loss=None, train_accuracy=None,
        test_accuracy=None, params=started.params, resources=_resources(sum(e.seconds for e in epochs)),
    )
    return dataclasses.replace(
        base, status=RunStatus.CANCELLED, message=f"cancelled in {where}",
        train_loss=last.train_loss if last else None,
        train_accuracy=last.train_accuracy if last else None,
        test_accuracy=last.test_accuracy if last else None,
        epochs=epochs, loss_curve=tuple(p.recent_loss for p in progress), diverged_step=None,
    )


# --- scripted event lists ---------------------------------------------------------------------


def _steps_per_epoch(config: RunConfig) -> int:
    return math.ceil(DATASET_SPECS[config.dataset].train_size / config.batch_size)


def _params(config: RunConfig) -> int:
    spec = DATASET_SPECS[config.dataset]
    return count_parameters(spec.features, config.hidden, spec.classes)


def _resources(train_time_s: float) -> Resources:
    return Resources(
        train_time_s=train_time_s, total_time_s=train_time_s + 2.0,
        peak_rss_growth_bytes=300 * 1024**2, cuda_peak_allocated_bytes=200 * 1024**2,
        cuda_peak_reserved_bytes=220 * 1024**2, gpu_process_memory_bytes=742 * 1024**2,
        gpu_used_bytes=3 * 1024**3, gpu_total_bytes=16 * 1024**3, gpu_utilization_percent=87,
    )


def started_event(config: RunConfig) -> Started:
    """A fixed Started for `config`: FakeGPU, the Debian data folder, fixed estimates."""
    spec = DATASET_SPECS[config.dataset]
    return Started(
        config=config, device_name=DEVICE_NAME, params=_params(config),
        memory_estimate=MemoryEstimate(
            dataset=55 * 1024**2, parameters=800 * 1024, gradients_and_buffers=900 * 1024,
            activations_train=40 * 1024, activations_test=4 * 1024**2, runtime_overhead=500 * 1024**2,
        ),
        time_estimate=TimeEstimate(
            seconds_per_step=SECONDS_PER_STEP, steps_per_epoch=_steps_per_epoch(config),
            test_pass_seconds=TEST_PASS_SECONDS, epochs=config.epochs,
        ),
        data_source=DATA_SOURCE, train_samples=spec.train_size, test_samples=spec.test_size,
    )


def _epoch_progress(config: RunConfig, epoch: int, *, upto: int | None = None, reports: int = 4) -> list[Progress]:
    """`reports` evenly spaced Progress events of `epoch`, up to step `upto` (default: the end)."""
    steps = _steps_per_epoch(config)
    last = steps if upto is None else upto
    out = []
    for i in range(1, reports + 1):
        step = max(1, last * i // reports)
        loss = round(0.9 / epoch - 0.05 * i, 4)
        done = (epoch - 1) * steps + step
        out.append(Progress(
            epoch=epoch, epochs=config.epochs, step=step, steps_per_epoch=steps,
            loss=loss + 0.02, accuracy=60.0 + 5 * epoch + i, recent_loss=loss,
            samples_per_s=20_000.0, elapsed_s=done * SECONDS_PER_STEP,
            eta_s=(steps * config.epochs - done) * SECONDS_PER_STEP,
        ))
    return out


def _epoch_end(config: RunConfig, epoch: int) -> EpochEnd:
    return EpochEnd(
        epoch=epoch, train_loss=round(0.8 / epoch, 4), train_accuracy=70.0 + 5 * epoch,
        test_accuracy=68.5 + 5 * epoch, seconds=_steps_per_epoch(config) * SECONDS_PER_STEP,
        train_ce=round(0.1 + 0.5 / epoch, 4),
    )


def completed_run_events(config: RunConfig, epochs: int = 3) -> list[Event]:
    """Started, `epochs` epochs of progress, then a completed Finished."""
    config = dataclasses.replace(config, epochs=epochs)
    events: list[Event] = [started_event(config)]
    ends = []
    for epoch in range(1, epochs + 1):
        events += _epoch_progress(config, epoch)
        ends.append(_epoch_end(config, epoch))
        events.append(ends[-1])
    train_time = sum(e.seconds for e in ends)
    events.append(Finished(
        status=RunStatus.COMPLETED, message=f"{epochs} epoch{'s' if epochs != 1 else ''} in {train_time:.1f} s",
        train_loss=ends[-1].train_loss, train_accuracy=ends[-1].train_accuracy,
        test_accuracy=ends[-1].test_accuracy, params=_params(config), resources=_resources(train_time),
        epochs=tuple(ends), loss_curve=tuple(p.recent_loss for p in events if isinstance(p, Progress)),
    ))
    return events


def diverged_run_events(config: RunConfig, step: int = 1234) -> list[Event]:
    """Started, progress up to global step `step`, then a diverged Finished (non-finite loss)."""
    steps = _steps_per_epoch(config)
    epoch, in_epoch = (step - 1) // steps + 1, (step - 1) % steps + 1
    events: list[Event] = [started_event(config)]
    for done in range(1, epoch):
        events += _epoch_progress(config, done)
        events.append(_epoch_end(config, done))
    events += _epoch_progress(config, epoch, upto=in_epoch, reports=2)
    ends = tuple(e for e in events if isinstance(e, EpochEnd))
    last = ends[-1] if ends else None
    events.append(Finished(
        status=RunStatus.DIVERGED,
        message=f"non-finite loss at step {step} (epoch {epoch}, step {in_epoch})",
        train_loss=last.train_loss if last else None,
        train_accuracy=last.train_accuracy if last else None,
        test_accuracy=last.test_accuracy if last else None,
        params=_params(config), resources=_resources(step * SECONDS_PER_STEP),
        epochs=ends, loss_curve=tuple(p.recent_loss for p in events if isinstance(p, Progress)),
        diverged_step=step,
    ))
    return events


def in_progress_events(config: RunConfig) -> list[Event]:
    """A run caught mid-way: one finished epoch, half of the second, and a cancelled Finished
    (which `ScriptedRunner(..., hold=True)` keeps back until the run is stopped)."""
    events: list[Event] = [started_event(config)]
    events += _epoch_progress(config, 1)
    events.append(_epoch_end(config, 1))
    events += _epoch_progress(config, 2, upto=_steps_per_epoch(config) // 2, reports=2)
    events.append(cancelled_finish(events))
    return events
