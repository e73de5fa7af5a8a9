"""The training path the CLI, the app, sweeps and packs share: run, and record what happens.

A `EventRecorder` is an event sink that writes a run to a recorder (the SQLite results store, or a
cluster worker's journal) as it goes: a `running` row with a lease at `Started`, each epoch when it
ends, the outcome at `Finished`, and a heartbeat renewing the lease in between. A recorder that
fails mid-run (a read-only file, a lock held past the retry budget) does not stop the training: the
failure is kept as one line, and the run's result still reaches its caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.datasets import LoadedDataset, load_dataset
from tuner_tui.engine.events import EpochEnd, Event, Finished, Started
from tuner_tui.engine.runner import EpochJudge, EventSink, PreparedRun, TrialSettings, execute_run, prepare_run
from tuner_tui.runs.lease import LEASE_SECONDS, Heartbeat
from tuner_tui.runs.records import EpochRecord, RunLabels, RunRecord, StartColumns, new_run_uid
from tuner_tui.runs.sqlite_access import StoreError
from tuner_tui.usercode.config import UserRunConfig
from tuner_tui.usercode.events import MetricsReported, UserFinished, UserStarted


class RunWriter(Protocol):
    """Where runs are written: `ResultsStore`, or a worker's journal on a shared filesystem."""

    def start_run(
        self, config: RunConfig, start: StartColumns, *, labels: RunLabels | None = None, uid: str | None = None,
        lease_s: float = LEASE_SECONDS,
    ) -> int: ...

    def record_epoch(self, run_id: int, epoch: EpochEnd, *, lease_s: float = LEASE_SECONDS) -> None: ...

    def renew_lease(self, run_id: int, expires_at: float) -> None: ...

    def finish_run(self, run_id: int, finished: Finished) -> None: ...

    def start_user_run(
        self, started: UserStarted, *, labels: RunLabels | None = None, uid: str | None = None,
        lease_s: float = LEASE_SECONDS,
    ) -> int: ...

    def record_report(self, run_id: int, report: MetricsReported, *, lease_s: float = LEASE_SECONDS) -> None: ...

    def finish_user_run(self, run_id: int, finished: UserFinished, *, config: UserRunConfig | None = None) -> None: ...


class CachedLoader:
    """Loads each dataset once for many runs (a sweep's trials, the lab's experiments)."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str | None], LoadedDataset] = {}

    def __call__(self, name: str, data_root: str | None = None) -> LoadedDataset:
        key = (name, data_root)
        if key not in self._loaded:
            self._loaded[key] = load_dataset(name, data_root)
        return self._loaded[key]


@dataclass
class RunOutcome:
    """How a run ended and where it was stored. When the store failed, `run_id` is None,
    `store_error` says why in one line and `unsaved` holds the record built from the events."""

    run_id: int | None
    finished: Finished
    store_error: str | None = None
    unsaved: RunRecord | None = None
    uid: str = ""


@dataclass
class EventRecorder:
    """Records one run's events into `recorder`, then forwards each event to `on_event`."""

    recorder: RunWriter
    config: RunConfig
    labels: RunLabels
    on_event: EventSink
    data_source: str | None = None
    device_label: str = ""
    uid: str = field(default_factory=new_run_uid)
    run_id: int | None = None
    store_error: str | None = None
    started: Started | None = None
    heartbeat: Heartbeat | None = field(default=None, repr=False)

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            self.started = event
            self._write(lambda: self._start(event))
        elif isinstance(event, EpochEnd) and self.run_id is not None:
            run_id = self.run_id
            self._write(lambda: self.recorder.record_epoch(run_id, event))
        elif isinstance(event, Finished):
            self._finish(event)
        self.on_event(event)

    def _start(self, event: Started) -> None:
        self.run_id = self.recorder.start_run(event.config, StartColumns.of(event), labels=self.labels, uid=self.uid)
        run_id = self.run_id
        self.heartbeat = Heartbeat(lambda expiry: self.recorder.renew_lease(run_id, expiry)).start()

    def _finish(self, event: Finished) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.run_id is None and self.store_error is None:  # it ended before it started
            self._write(lambda: self._start_unstarted(event))
        if self.run_id is not None:
            run_id = self.run_id
            self._write(lambda: self.recorder.finish_run(run_id, event))

    def _start_unstarted(self, event: Finished) -> None:
        start = StartColumns(device_name=self.device_label, params=event.params, data_source=self.data_source)
        self.run_id = self.recorder.start_run(self.config, start, labels=self.labels, uid=self.uid)

    def _write(self, action: Callable[[], object]) -> None:
        """Run a recorder call unless one already failed; a failure is kept, not raised."""
        if self.store_error is not None:
            return
        try:
            action()
        except StoreError as error:
            self.store_error = str(error)

    def result(self, finished: Finished) -> RunOutcome:
        if self.store_error is None:
            return RunOutcome(self.run_id, finished, uid=self.uid)
        return RunOutcome(None, finished, self.store_error, unsaved_record(self, finished), uid=self.uid)


def execute_and_record(
    prepared: PreparedRun,
    recorder: RunWriter,
    on_event: EventSink,
    *,
    cancel: threading.Event | None = None,
    labels: RunLabels | None = None,
    judge: EpochJudge | None = None,
    uid: str | None = None,
    trial: TrialSettings | None = None,
) -> RunOutcome:
    """Run `prepared`, recording it (under `uid`, or a new one), and forward every event to
    `on_event` after the recorder saw it; `trial`: as a sweep's trial (`TrialSettings`)."""
    recording = EventRecorder(
        recorder, prepared.config, labels or RunLabels(), on_event,
        data_source=prepared.dataset.source, device_label=str(prepared.device), uid=uid or new_run_uid(),
    )
    finished = execute_run(prepared, recording, cancel=cancel, judge=judge, trial=trial)
    return recording.result(finished)


def prepare_and_record(
    config: RunConfig,
    recorder: RunWriter,
    on_event: EventSink,
    *,
    cancel: threading.Event | None = None,
    labels: RunLabels | None = None,
    force: bool = False,
) -> RunOutcome:
    """Prepare and run `config`, recording it. Bad input raises (ConfigError, DatasetError) before
    anything is recorded."""
    return execute_and_record(prepare_run(config, force=force), recorder, on_event, cancel=cancel, labels=labels)


def unsaved_record(recording: EventRecorder, finished: Finished) -> RunRecord:
    """A run's record built from its events, for showing a run that the store could not keep."""
    started, config, labels = recording.started, recording.config, recording.labels
    resources = finished.resources
    return RunRecord(
        id=0, status=finished.status, config=config,
        device_name=started.device_name if started else "", data_source=started.data_source if started else None,
        started_at=0.0, finished_at=None, hostname="", pid=0, params=finished.params,
        estimated_memory_bytes=started.memory_estimate.total if started else None,
        estimated_time_s=started.time_estimate.train_seconds if started else None,
        train_loss=finished.train_loss, train_accuracy=finished.train_accuracy,
        test_accuracy=finished.test_accuracy, peak_memory_bytes=resources.peak_memory_bytes,
        gpu_memory_bytes=resources.gpu_process_memory_bytes, train_time_s=resources.train_time_s,
        total_time_s=resources.total_time_s, message=finished.message, diverged_step=finished.diverged_step,
        epochs=tuple(EpochRecord(**vars(e)) for e in finished.epochs), loss_curve=finished.loss_curve,
        preset=labels.preset, sweep=labels.sweep, trial=labels.trial, pack_size=labels.pack_size,
    )
