"""Several runs at once for the presets screen: at most `parallel` at a time, the rest queued.

Each run goes through the app's runner (a training child process, one torch thread each; see
`tuner_tui.app.slots`) in its own thread worker, which relays its events with `post_message`; a run
that ends frees its place for the next queued one. The runs are drawn at most four times a second
(`DrawPacer`), whatever the number of runs. A stop asks every run to stop and drops the queue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import partial

from textual.screen import Screen

from tuner_tui.app.draw_pacer import DrawPacer
from tuner_tui.app.field_words import in_form_words
from tuner_tui.app.messages import SlotRejected, SlotReported, SlotsEnded
from tuner_tui.app.slots import NOT_STARTED, PREPARING, QUEUED, Slot
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import Event, Finished, RunStatus
from tuner_tui.runs.records import RunLabels
from tuner_tui.runs.store import ResultsStore
from tuner_tui.runs.training_process import RunRejectedError, TrainingRunner

SLOTS_DRAW_INTERVAL_S = 0.25


class SlotsController:
    """Runs several (preset, config) pairs for `screen` through `runner` into `store`; `draw` shows them."""

    def __init__(
        self, screen: Screen, runner: TrainingRunner, store: ResultsStore, draw: Callable[[], None], *,
        force: bool = False,
    ) -> None:
        self.screen = screen
        self.runner = runner
        self.store = store
        self.force = force
        self.slots: list[Slot] = []
        self.cancels: list[threading.Event] = []
        self.parallel = 1
        self.stopping = False
        self.draws = DrawPacer(screen, draw, SLOTS_DRAW_INTERVAL_S)

    @property
    def running(self) -> bool:
        """Whether any run is in progress or waiting for its turn."""
        return any(not slot.ended for slot in self.slots)

    def start(self, entries: Sequence[tuple[str, RunConfig]], parallel: int) -> None:
        """Run `entries` (preset name, config), `parallel` at a time, in the order given."""
        if self.running:
            return
        self.slots = [Slot(name, config) for name, config in entries]
        self.cancels = [threading.Event() for _ in entries]
        self.parallel = max(1, parallel)
        self.stopping = False
        for _ in range(min(self.parallel, len(self.slots))):
            self._start_next()
        self.draws.now()

    def _start_next(self) -> None:
        index = next((i for i, slot in enumerate(self.slots) if slot.status == QUEUED), None)
        if index is None:
            return
        self.slots[index].status = PREPARING
        self.screen.run_worker(
            partial(self._train, index), name=f"slot {index}", group="slots", thread=True, exit_on_error=False,
        )

    def _train(self, index: int) -> None:
        """The worker of run `index`: relay its events (anything but a rejection fails the worker)."""
        slot, cancel = self.slots[index], self.cancels[index]

        def relay(event: Event) -> None:
            self.screen.post_message(SlotReported(index, event))

        try:
            self.runner(slot.config, self.store, relay, cancel, labels=RunLabels(preset=slot.preset), force=self.force)
        except RunRejectedError as error:
            self.screen.post_message(SlotRejected(index, str(error)))

    def stop(self) -> None:
        """Stop every run; the queued ones do not start."""
        if not self.running:
            return
        self.stopping = True
        for slot, cancel in zip(self.slots, self.cancels, strict=True):
            if slot.status == QUEUED:
                slot.end(NOT_STARTED, "stopped before its turn")
            cancel.set()
        self.draws.now()
        self._check_all_ended()

    # --- on the UI thread ---------------------------------------------------------------

    def on_event(self, index: int, event: Event) -> None:
        slot = self.slots[index]
        slot.apply(event)
        if isinstance(event, Finished):
            self._slot_ended()
        else:
            self.draws.request()

    def on_rejected(self, index: int, reason: str) -> None:
        self.slots[index].end(NOT_STARTED, in_form_words(reason))
        self._slot_ended()

    def on_failed(self, index: int, error: BaseException | None) -> None:
        """Run `index`'s runner raised: the run failed (what it reported before stays shown)."""
        if self.slots[index].active:
            self.slots[index].end(RunStatus.FAILED, str(error))
            self._slot_ended()

    def _slot_ended(self) -> None:
        if not self.stopping:
            self._start_next()
        self.draws.now()
        self._check_all_ended()

    def _check_all_ended(self) -> None:
        if not self.running:
            self.screen.post_message(SlotsEnded())
