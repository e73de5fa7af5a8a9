"""The run in progress: progress bar and ETA, loss and accuracy sparklines, device and GPU memory."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar, Sparkline

from engine.events import EpochEnd, Finished, Progress, Started
from engine.gpu import GpuSnapshot
from tuner_tui.formatting import format_seconds, gpu_memory_text

LOSS_POINTS = 240  # the loss sparkline keeps the most recent reports


def _value(values: list[float], fmt: str) -> str:
    return fmt.format(values[-1]) if values else "–"


class LiveView(Vertical):
    """Updated from run events on the UI thread; `reset()` before a new run.

    Reports and epoch ends are recorded with `add_progress` and `add_epoch` and drawn by `draw()`,
    so that the caller decides how often the screen changes (see `tuner_tui.app.draw_pacer`).
    """

    gpu_text = ""  # the GPU line on screen

    def compose(self) -> ComposeResult:
        yield Label("no run yet — press F5 to start", id="run-status")
        yield ProgressBar(total=1, show_eta=False, id="run-progress")
        with Horizontal(classes="spark-row"):
            yield Label("loss", classes="spark-label")
            yield Sparkline([], id="loss-spark", classes="spark")
            yield Label("–", id="loss-value", classes="spark-value")
        with Horizontal(classes="spark-row"):
            yield Label("train acc", classes="spark-label")
            yield Sparkline([], id="train-spark", classes="spark")
            yield Label("–", id="train-value", classes="spark-value")
        with Horizontal(classes="spark-row"):
            yield Label("test acc", classes="spark-label")
            yield Sparkline([], id="test-spark", classes="spark")
            yield Label("–", id="test-value", classes="spark-value")
        yield Label("device –", id="device-name")
        yield Label("GPU –", id="gpu-memory")

    def on_mount(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.query_one("#run-status", Label).remove_class("-ended")
        self.undrawn_progress: Progress | None = None
        self.undrawn_epochs = False
        self.losses: list[float] = []
        self.train_acc: list[float] = []
        self.test_acc: list[float] = []
        self.total_steps: int | None = None
        for spark in self.query(Sparkline):
            spark.data = []
        for label_id in ("loss-value", "train-value", "test-value"):
            self.query_one(f"#{label_id}", Label).update("–")
        self.query_one(ProgressBar).update(total=1, progress=0)

    def show_preparing(self, config_label: str) -> None:
        self.reset()
        self.query_one("#run-status", Label).update(f"preparing {config_label}: loading data, calibrating…")

    def show_started(self, event: Started) -> None:
        estimate = event.time_estimate
        self.total_steps = estimate.steps_per_epoch * event.config.epochs
        self.query_one(ProgressBar).update(total=self.total_steps, progress=0)
        self.query_one("#device-name", Label).update(f"device {event.device_name}")
        self.query_one("#run-status", Label).update(
            f"epoch 1/{event.config.epochs} · estimated {format_seconds(estimate.train_seconds)}"
        )

    def add_progress(self, event: Progress) -> None:
        """Record a report (its loss joins the sparkline); `draw()` shows it."""
        self.losses = [*self.losses[-(LOSS_POINTS - 1):], event.recent_loss]
        self.undrawn_progress = event

    def add_epoch(self, event: EpochEnd) -> None:
        """Record an epoch's accuracies; `draw()` shows them."""
        self.train_acc = [*self.train_acc, event.train_accuracy]
        self.test_acc = [*self.test_acc, event.test_accuracy]
        self.undrawn_epochs = True

    def draw(self) -> None:
        """Show what was recorded since the last draw. Every label here has a fixed size, so
        updating one needs no layout pass."""
        event, self.undrawn_progress = self.undrawn_progress, None
        if event is not None:
            done = (event.epoch - 1) * event.steps_per_epoch + event.step
            self.query_one(ProgressBar).update(progress=done)
            self.query_one("#loss-spark", Sparkline).data = self.losses
            self.query_one("#loss-value", Label).update(f"{event.loss:.4f}", layout=False)
            self.query_one("#run-status", Label).update(
                f"ETA {format_seconds(event.eta_s)} · epoch {event.epoch}/{event.epochs} · "
                f"step {event.step}/{event.steps_per_epoch} · {event.samples_per_s:,.0f} samples/s",
                layout=False,
            )
        if self.undrawn_epochs:
            self.undrawn_epochs = False
            self.query_one("#train-spark", Sparkline).data = self.train_acc
            self.query_one("#test-spark", Sparkline).data = self.test_acc
            self.query_one("#train-value", Label).update(_value(self.train_acc, "{:.2f} %"), layout=False)
            self.query_one("#test-value", Label).update(_value(self.test_acc, "{:.2f} %"), layout=False)

    def show_finished(self, event: Finished) -> None:
        self.draw()
        if self.total_steps is not None and event.status.value == "completed":
            self.query_one(ProgressBar).update(progress=self.total_steps)
        summary = f"{event.status.value} · {event.message}"
        if event.test_accuracy is not None:
            summary += f" · test acc {event.test_accuracy:.2f} %"
        self.show_outcome(summary)

    def show_outcome(self, summary: str) -> None:
        """Show how the run ended, or why it did not start, whole (on as many lines as it takes)."""
        status = self.query_one("#run-status", Label)
        status.add_class("-ended")
        status.update(summary)

    def show_gpu(self, snapshot: GpuSnapshot) -> None:
        text = f"GPU {gpu_memory_text(snapshot)}"
        if text != self.gpu_text:  # an unchanged figure (or "n/a") costs no frame
            self.gpu_text = text
            self.query_one("#gpu-memory", Label).update(text)  # two lines in the compact layout
