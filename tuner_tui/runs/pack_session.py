"""Recording a pack: every run trained in a pack is stored as its own run, as the solo path stores one.

The API for the sweep scheduler and `tuner-tui lab`:

    entries = [PackEntry(config, RunLabels(preset="fmnist_exp1")), ...]   # configs that share a PackKey
    results = run_pack(entries, recorder, on_event, cancel=stop, judge=judge, next_entry=next_entry)

- `run_pack` prepares the pack (`tuner_tui.engine.pack_runner.prepare_pack`): bad input (runs that cannot
  share a pack, a pack that cannot fit, a dataset not found) raises ConfigError / DatasetError
  before anything is recorded. `execute_and_record_pack` takes a pack already prepared.
- Each run is recorded through its own `EventRecorder` (`tuner_tui.runs.session`) from the moment it
  starts: a `running` row with a lease, each epoch, the outcome. Its labels are the entry's with
  `pack_size` set to the pack's size when the run started; its stored train time and peak memory
  are the pack's shared figures (the wall time of the pack epochs it took part in, the pack's peak).
- `on_event` receives every run's events as `PackEvent(run, slot, event, slots)` after the
  recorder saw them: `run` numbers the runs in the order they joined (the entries are 0..K-1).
- `judge(run, epoch_end)` prunes a run (True) at an epoch's end; `cancel` stops every run.
- `next_entry(key)` is asked for a new run whenever a slot frees up at an epoch boundary (a run
  completed, diverged or was pruned): return a `PackEntry` whose config shares `key` (a trial, the
  next preset) or None. A config that cannot join (another key, or too big for the memory left)
  is recorded as a failed run and the next one is asked for.
- The result is one `RunOutcome` per run, by run number; `run_id` None and `store_error` say a run
  could not be stored, as for a solo run.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.datasets import LoadedDataset, load_dataset
from tuner_tui.engine.events import Finished
from tuner_tui.engine.pack_runner import (
    PackEvent,
    PackEventSink,
    PackJudge,
    PackKey,
    PreparedPack,
    execute_pack,
    prepare_pack,
)
from tuner_tui.runs.records import RunLabels, new_run_uid
from tuner_tui.runs.session import EventRecorder, RunOutcome, RunWriter


@dataclass(frozen=True)
class PackEntry:
    """One run for a pack: its config and what it belongs to (preset, sweep and trial)."""

    config: RunConfig
    labels: RunLabels = field(default_factory=RunLabels)
    uid: str = field(default_factory=new_run_uid)  # the run's id in the store, known before it starts


NextEntry = Callable[[PackKey], PackEntry | None]


def run_pack(
    entries: Sequence[PackEntry],
    recorder: RunWriter,
    on_event: PackEventSink,
    *,
    cancel: threading.Event | None = None,
    judge: PackJudge | None = None,
    next_entry: NextEntry | None = None,
    force: bool = False,
    load: Callable[..., LoadedDataset] = load_dataset,
) -> list[RunOutcome]:
    """Prepare and train `entries` as one pack, recording each run. Bad input raises before anything
    is recorded; after that it never raises."""
    prepared = prepare_pack([entry.config for entry in entries], force=force, load=load)
    return execute_and_record_pack(
        prepared, entries, recorder, on_event, cancel=cancel, judge=judge, next_entry=next_entry
    )


def execute_and_record_pack(
    prepared: PreparedPack,
    entries: Sequence[PackEntry],
    recorder: RunWriter,
    on_event: PackEventSink,
    *,
    cancel: threading.Event | None = None,
    judge: PackJudge | None = None,
    next_entry: NextEntry | None = None,
) -> list[RunOutcome]:
    """Train `prepared` (made from `entries`' configs), recording each of its runs; see the module."""
    recordings = _PackRecordings(prepared, list(entries), recorder, on_event)

    def next_config(key: PackKey) -> RunConfig | None:
        entry = next_entry(key) if next_entry is not None else None
        if entry is None:
            return None
        recordings.entries.append(entry)
        return entry.config

    finished = execute_pack(
        prepared, recordings, cancel=cancel, judge=judge, next_config=None if next_entry is None else next_config
    )
    return [recordings.result(run, ended) for run, ended in enumerate(finished)]


@dataclass
class _PackRecordings:
    """The pack's event sink: one EventRecorder per run, made when the run's first event arrives."""

    prepared: PreparedPack
    entries: list[PackEntry]
    recorder: RunWriter
    on_event: PackEventSink
    recordings: dict[int, EventRecorder] = field(default_factory=dict)

    def __call__(self, tagged: PackEvent) -> None:
        recording = self.recordings.get(tagged.run)
        if recording is None:
            entry = self.entries[tagged.run]
            labels = dataclasses.replace(entry.labels, pack_size=max(1, tagged.slots))
            recording = self.recordings[tagged.run] = EventRecorder(
                self.recorder, entry.config, labels, _ignore,
                data_source=self.prepared.dataset.source, device_label=str(self.prepared.device), uid=entry.uid,
            )
        recording(tagged.event)
        self.on_event(tagged)

    def result(self, run: int, finished: Finished) -> RunOutcome:
        return self.recordings[run].result(finished)


def _ignore(event: object) -> None:
    """A recording's own forward: the pack forwards the tagged event instead."""
