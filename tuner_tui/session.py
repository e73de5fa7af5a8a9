"""The training path the CLI and the app share: execute a prepared run and record it in the store."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from engine.events import Event, Finished, Started
from engine.config import RunConfig
from engine.runner import EventSink, PreparedRun, execute_run, prepare_run
from tuner_tui.store import ResultsStore


@dataclass
class RecordedRun:
    run_id: int
    finished: Finished


def execute_and_record(
    prepared: PreparedRun,
    store: ResultsStore,
    on_event: EventSink,
    *,
    cancel: threading.Event | None = None,
    preset: str | None = None,
) -> RecordedRun:
    """Run `prepared`, forwarding every event to `on_event` after the store has seen it.

    The run becomes a `running` row at `Started` and is finished in one transaction at
    `Finished`; a run that failed before it started gets its row then.
    """
    run_id: int | None = None

    def record(event: Event) -> None:
        nonlocal run_id
        if isinstance(event, Started):
            run_id = store.start_run(
                event.config, device_name=event.device_name, params=event.params,
                estimated_memory_bytes=event.memory_estimate.total,
                estimated_time_s=event.time_estimate.train_seconds, data_source=event.data_source,
                preset=preset,
            )
        elif isinstance(event, Finished):
            if run_id is None:
                run_id = store.start_run(
                    prepared.config, device_name=str(prepared.device), params=event.params,
                    estimated_memory_bytes=None, estimated_time_s=None,
                    data_source=prepared.dataset.source, preset=preset,
                )
            store.finish_run(run_id, event)
        on_event(event)

    finished = execute_run(prepared, record, cancel=cancel)
    assert run_id is not None
    return RecordedRun(run_id, finished)


def run_recorded(
    config: RunConfig,
    store: ResultsStore,
    on_event: EventSink,
    *,
    cancel: threading.Event | None = None,
    preset: str | None = None,
) -> RecordedRun:
    """Prepare and run `config`, recording it (under `preset`'s name, if it came from one).

    Bad input raises (ConfigError, DatasetError) before anything is stored.
    """
    return execute_and_record(prepare_run(config), store, on_event, cancel=cancel, preset=preset)

