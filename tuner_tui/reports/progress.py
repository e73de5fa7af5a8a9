"""Progress on stderr while commands run: a run's bar (or plain lines off a terminal), a sweep's
trials, the lab's experiments. Every line is printed as text: no markup, control characters shown."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.text import Text

from tuner_tui.engine.events import EpochEnd, Event, Finished, Started
from tuner_tui.engine.events import Progress as ProgressEvent
from tuner_tui.formatting import epoch_line, format_seconds, metric_text, printable, started_lines
from tuner_tui.usercode.events import MetricsReported, UserEvent, UserFinished, UserLogged, UserStarted

PLAIN_PROGRESS_INTERVAL_S = 5.0


class HeadlessReporter:
    """Receives run events and writes them to `console` (stderr)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last_plain = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            self._started(event)
        elif isinstance(event, ProgressEvent):
            self._progress(event)
        elif isinstance(event, EpochEnd):
            self._print(epoch_line(event))
        elif isinstance(event, Finished):
            self.stop()
            self._print(f"{event.status.value}: {event.message}")

    def _started(self, event: Started) -> None:
        estimate = event.time_estimate
        for line in started_lines(event):
            self._print(line)
        if self.live:
            self._bar = Progress(
                TextColumn("epoch {task.fields[epoch]}"),
                BarColumn(),
                TextColumn("step {task.fields[step]}"),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[rate]} samples/s"),
                TextColumn("ETA {task.fields[eta]}"),
                console=self.console,
                transient=True,
            )
            total = estimate.steps_per_epoch * event.config.epochs
            self._task = self._bar.add_task(
                "train", total=total, epoch="-", step="-", loss="-", rate="-", eta="-"
            )
            self._bar.start()

    def _progress(self, event: ProgressEvent) -> None:
        epoch = f"{event.epoch}/{event.epochs}"
        step = f"{event.step}/{event.steps_per_epoch}"
        if self._bar is not None and self._task is not None:
            done = (event.epoch - 1) * event.steps_per_epoch + event.step
            self._bar.update(
                self._task, completed=done, epoch=epoch, step=step, loss=f"{event.loss:.4f}",
                rate=f"{event.samples_per_s:,.0f}", eta=format_seconds(event.eta_s),
            )
            return
        now = time.monotonic()
        if now - self._last_plain >= PLAIN_PROGRESS_INTERVAL_S:
            self._last_plain = now
            self._print(
                f"epoch {epoch} step {step} loss {event.loss:.4f} acc {event.accuracy:.2f} % "
                f"{event.samples_per_s:,.0f} samples/s ETA {format_seconds(event.eta_s)}"
            )

    def _print(self, text: str) -> None:
        target = self._bar.console if self._bar is not None else self.console
        target.print(printable(text), highlight=False, markup=False, soft_wrap=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class LabReporter:
    """One line per epoch and per outcome on stderr, each named by its experiment."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, preset: str, event: Event) -> None:
        if isinstance(event, EpochEnd):
            self._print(f"{preset}: {epoch_line(event)}")
        elif isinstance(event, Finished):
            self._print(f"{preset}: {event.status.value}: {event.message}")

    def _print(self, text: str) -> None:
        self.console.print(Text(printable(text)), soft_wrap=True)


class UserRunReporter:
    """A run of user code on stderr: where it trains, a line per report, its log lines, its end; a
    bar over its epochs on a terminal when the model has an `epochs` field."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, event: UserEvent) -> None:
        if isinstance(event, UserStarted):
            fields = event.config.summary()
            where = f"{event.title} ({event.origin.function}) on {event.device_name}"
            self._print(where + (f" · {fields}" if fields else ""))
            epochs = event.config.epochs
            if self.console.is_terminal and epochs:
                self._bar = Progress(TextColumn("epoch {task.completed}/{task.total}"), BarColumn(),
                                     console=self.console, transient=True)
                self._task = self._bar.add_task("train", total=epochs)
                self._bar.start()
        elif isinstance(event, MetricsReported):
            self._print(report_line(event))
            if self._bar is not None and self._task is not None:
                self._bar.update(self._task, completed=event.epoch)
        elif isinstance(event, UserLogged):
            self._print(event.text)
        elif isinstance(event, UserFinished):
            self.stop()
            self._print(f"{event.status.value}: {event.message}")

    def _print(self, text: str) -> None:
        target = self._bar.console if self._bar is not None else self.console
        target.print(printable(text), highlight=False, markup=False, soft_wrap=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def report_line(event: MetricsReported) -> str:
    """`epoch 3: val_accuracy 0.8521 · loss 0.4123 · 2.1 s`."""
    metrics = " · ".join(metric_text(name, value) for name, value in event.metrics.items())
    return f"epoch {event.epoch}: {metrics} · {format_seconds(event.seconds)}"
