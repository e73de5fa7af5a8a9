"""The tuning screen's run: started in a thread worker, stopped on request, drawn at a measured pace.

Training goes through the same path as `--no-ui` (`tuner_tui.runs.session.prepare_and_record`), in a
child process by default (`tuner_tui.runs.training_process`): the worker thread only relays its
events with `post_message`, so drawing and the training loop never wait on one GIL. The events
are drawn at most four times a second and the log written at most once a second, since every frame
costs CPU that a CPU run would rather have. A stop shows at once; the runner ends the run for good
within its grace period, whatever the run is doing.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import TYPE_CHECKING

from tuner_tui.app.draw_pacer import DrawPacer
from tuner_tui.app.field_words import in_form_words
from tuner_tui.app.messages import RunEnded, RunEventMessage, RunRejected
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import EpochEnd, Event, Finished, Progress, RunStatus, Started
from tuner_tui.formatting import config_summary, epoch_line, started_lines
from tuner_tui.runs.records import RunLabels
from tuner_tui.runs.store import ResultsStore
from tuner_tui.runs.training_process import STOP_GRACE_S, RunRejectedError, TrainingRunner

if TYPE_CHECKING:
    from tuner_tui.app.components.tuning_screen import TuningScreen

# Progress arrives ten times a second and a CPU run may end several epochs a second; the screen
# shows them at most four times a second. The start and the end of a run show at once.
RUN_DRAW_INTERVAL_S = 0.25


class RunController:
    """Runs one config at a time for `screen`, whose `running` it keeps, through `runner` into `store`."""

    def __init__(self, screen: TuningScreen, runner: TrainingRunner, store: ResultsStore) -> None:
        self.screen = screen
        self.runner = runner
        self.store = store
        self.cancel_event = threading.Event()
        self.config: RunConfig | None = None
        self.labels = RunLabels()
        self.undrawn: list[Event] = []
        self.draws = DrawPacer(screen, self._draw, RUN_DRAW_INTERVAL_S)

    @property
    def stopping(self) -> bool:
        return self.screen.running and self.cancel_event.is_set()

    def start(self, config: RunConfig, labels: RunLabels, *, force: bool = False) -> None:
        """Start a run of `config` (`force`: even if its memory estimate will not fit)."""
        if self.screen.running:
            return
        self.config, self.labels = config, labels
        self.cancel_event = cancel = threading.Event()
        self.undrawn = []
        self.screen.running = True
        self.screen.live.show_preparing(config.layers_label)
        forced = " (forced)" if force else ""
        self.screen.log_view.add_line(f"start{forced}: {config_summary(config)}", now=True)
        self.screen.run_worker(
            partial(self._train, config, cancel, labels, force), name="training", group="training",
            thread=True, exclusive=True, exit_on_error=False,
        )

    def stop(self) -> None:
        """Ask the run to stop; the screen says so at once."""
        if self.screen.running and not self.cancel_event.is_set():
            self.cancel_event.set()
            self.screen.live.show_stopping(STOP_GRACE_S)
            self.screen.log_view.add_line("stopping…", now=True)

    def _train(self, config: RunConfig, cancel: threading.Event, labels: RunLabels, force: bool) -> None:
        """The worker: run, relaying each event to the screen (anything but a rejection fails the worker)."""

        def relay(event: Event) -> None:
            self.screen.post_message(RunEventMessage(event))

        try:
            self.runner(config, self.store, relay, cancel, labels=labels, force=force)
        except RunRejectedError as error:
            self.screen.post_message(RunRejected(str(error), error.field))

    # --- on the UI thread ---------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        self.undrawn.append(event)
        if isinstance(event, (Started, Finished)):
            self.draws.now()
        else:
            self.draws.request()

    def on_rejected(self, reason: str) -> None:
        """The run did not start: say why in its words and the form's."""
        reason = in_form_words(reason)
        self.screen.log_view.add_line(f"not started: {reason}", now=True)
        self.screen.live.reset()
        self.screen.live.show_outcome(f"not started · {reason}")
        self.screen.notify(reason, severity="error", markup=False)
        self._ended()

    def on_failed(self, error: BaseException | None) -> None:
        """The runner raised: show what the run reported before, and why it failed."""
        if not self.screen.running:
            return
        self.draws.now()
        self.screen.log_view.add_line(f"failed: {error}", now=True)
        self.screen.live.show_outcome(f"failed · {error}")
        self._ended()

    def _draw(self) -> None:
        events, self.undrawn = self.undrawn, []
        live, log = self.screen.live, self.screen.log_view
        for event in events:
            if isinstance(event, Started):
                live.show_started(event)
                log.add_line("\n".join(started_lines(event)), now=True)
                self.screen.show_calibrated(event)
            elif isinstance(event, Progress):
                live.add_progress(event)
            elif isinstance(event, EpochEnd):
                live.add_epoch(event)
                log.add_line(epoch_line(event))
            elif isinstance(event, Finished):
                live.show_finished(event)
                log.add_line(f"{event.status.value}: {event.message}", now=True)
                if event.status is not RunStatus.COMPLETED:
                    self.screen.notify(
                        f"run {event.status.value}: {event.message}", severity="warning", markup=False
                    )
                self._ended()
        live.draw()

    def _ended(self) -> None:
        self.screen.running = False
        self.screen.post_message(RunEnded())
