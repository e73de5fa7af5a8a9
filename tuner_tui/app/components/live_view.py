"""The run in progress: progress bar and ETA, the lab's loss, accuracy by epoch on a scale, device and GPU memory."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar, Sparkline

from tuner_tui.app.components.epoch_plot import EpochPlot, Series
from tuner_tui.engine.events import EpochEnd, Finished, Progress, RunStatus, Started
from tuner_tui.engine.gpu import GpuSnapshot
from tuner_tui.formatting import format_seconds, gpu_memory_text

LOSS_POINTS = 240  # the loss sparkline keeps the most recent reports


class LiveView(Vertical):
    """Updated from run events on the UI thread; `reset()` before a new run.

    Reports and epoch ends are recorded with `add_progress` and `add_epoch` and drawn by `draw()`,
    so that the caller decides how often the screen changes (see `tuner_tui.app.draw_pacer`). The
    loss is the lab's (it depends on the batch size under lab4); accuracies are drawn against
    epochs on a labelled scale.
    """

    gpu_text = ""  # the GPU line on screen

    def compose(self) -> ComposeResult:
        yield Label("no run yet — press F5 to start", id="run-status")
        yield ProgressBar(total=1, show_eta=False, id="run-progress")
        with Horizontal(classes="spark-row"):
            yield Label("lab loss", classes="spark-label")
            yield Sparkline([], id="loss-spark", classes="spark")
            yield Label("–", id="loss-value", classes="spark-value")
        yield EpochPlot("accuracy by epoch", empty="after epoch 1", compact=True, id="accuracy-plot")
        yield Label("device –", id="device-name")
        yield Label("GPU –", id="gpu-memory")

    def on_mount(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.query_one("#run-status", Label).remove_class("-ended")
        self.stopping = False
        self.undrawn_progress: Progress | None = None
        self.undrawn_epochs = False
        self.losses: list[float] = []
        self.epochs: list[EpochEnd] = []
        self.total_steps: int | None = None
        self.query_one(Sparkline).data = []
        self.query_one("#loss-value", Label).update("–")
        self.query_one(EpochPlot).show(())
        self.query_one(ProgressBar).update(total=1, progress=0)

    def show_preparing(self, config_label: str) -> None:
        self.reset()
        self._status(f"preparing {config_label}: loading data, calibrating…")

    def show_stopping(self, grace_s: float) -> None:
        """Stop was asked for: say so at once, whatever the run is doing."""
        self.stopping = True
        self._status(f"stopping… (ended for good within {grace_s:g} s)")

    def show_started(self, event: Started) -> None:
        estimate = event.time_estimate
        self.total_steps = estimate.steps_per_epoch * event.config.epochs
        self.query_one(ProgressBar).update(total=self.total_steps, progress=0)
        self.query_one("#device-name", Label).update(Text(f"device {event.device_name}"))
        if not self.stopping:
            self._status(f"ETA {format_seconds(estimate.total_seconds)} · epoch 1/{event.config.epochs} · calibrated")

    def add_progress(self, event: Progress) -> None:
        """Record a report (its loss joins the sparkline); `draw()` shows it."""
        self.losses = [*self.losses[-(LOSS_POINTS - 1):], event.recent_loss]
        self.undrawn_progress = event

    def add_epoch(self, event: EpochEnd) -> None:
        """Record an epoch's accuracies; `draw()` shows them."""
        self.epochs = [*self.epochs, event]
        self.undrawn_epochs = True

    def draw(self) -> None:
        """Show what was recorded since the last draw. The labels redrawn here have a fixed size,
        so updating one needs no layout pass."""
        event, self.undrawn_progress = self.undrawn_progress, None
        if event is not None:
            done = (event.epoch - 1) * event.steps_per_epoch + event.step
            self.query_one(ProgressBar).update(progress=done)
            self.query_one("#loss-spark", Sparkline).data = self.losses
            self.query_one("#loss-value", Label).update(f"{event.loss:.4f}", layout=False)
            if not self.stopping:
                self.query_one("#run-status", Label).update(
                    f"ETA {format_seconds(event.eta_s)} · epoch {event.epoch}/{event.epochs} · "
                    f"step {event.step}/{event.steps_per_epoch} · {event.samples_per_s:,.0f} samples/s",
                    layout=False,
                )
        if self.undrawn_epochs:
            self.undrawn_epochs = False
            numbers = [e.epoch for e in self.epochs]
            tested = [(e.epoch, e.test_accuracy) for e in self.epochs if e.test_accuracy is not None]
            self.query_one(EpochPlot).show([
                Series("train acc %", numbers, [e.train_accuracy for e in self.epochs]),
                Series("test acc %", [x for x, _ in tested], [y for _, y in tested]),
            ])

    def show_finished(self, event: Finished) -> None:
        self.draw()
        if self.total_steps is not None and event.status is RunStatus.COMPLETED:
            self.query_one(ProgressBar).update(progress=self.total_steps)
        summary = f"{event.status.value} · {event.message}"
        if event.test_accuracy is not None:
            summary += f" · test acc {event.test_accuracy:.2f} %"
        self.show_outcome(summary)

    def show_outcome(self, summary: str) -> None:
        """Show how the run ended, or why it did not start, whole (on as many lines as it takes)."""
        status = self.query_one("#run-status", Label)
        status.add_class("-ended")
        status.update(Text(summary))

    def show_gpu(self, snapshot: GpuSnapshot) -> None:
        text = f"GPU {gpu_memory_text(snapshot)}"
        if text != self.gpu_text:  # an unchanged figure (or "n/a") costs no frame
            self.gpu_text = text
            self.query_one("#gpu-memory", Label).update(Text(text))  # two lines in the compact layout

    def _status(self, text: str) -> None:
        self.query_one("#run-status", Label).update(Text(text))
