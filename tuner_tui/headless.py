"""What `--no-ui` shows on stderr while a run goes: a rich progress bar, or plain lines off a terminal."""

from __future__ import annotations

import time

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from engine.events import EpochEnd, Event, Finished, Progress as ProgressEvent, Started
from engine.gpu import format_bytes
from tuner_tui.lab_table import LAB_COLUMNS, STATUS_COLUMN, format_seconds, rows
from tuner_tui.store import RunRecord

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
            self._print(
                f"epoch {event.epoch}: train loss {event.train_loss:.4f}, train acc "
                f"{event.train_accuracy:.2f} %, test acc {event.test_accuracy:.2f} % "
                f"({format_seconds(event.seconds)})"
            )
        elif isinstance(event, Finished):
            self.stop()
            self._print(f"{event.status.value}: {event.message}")

    def _started(self, event: Started) -> None:
        estimate = event.time_estimate
        self._print(
            f"{event.config.layers_label} on {event.device_name}; {event.params:,} parameters; "
            f"data {event.data_source}"
        )
        self._print(
            f"estimates: memory {format_bytes(event.memory_estimate.total)}, training time "
            f"{format_seconds(estimate.train_seconds)} ({estimate.steps_per_epoch} steps/epoch at "
            f"{estimate.seconds_per_step * 1e3:.3f} ms/step)"
        )
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
        if self._bar is not None:
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
        target.print(text, highlight=False, markup=False, soft_wrap=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def runs_table(records: list[RunRecord]) -> Table:
    """A line per run with the columns that fit a terminal (`runs --json` has them all)."""
    by_title = {c.title: c for c in (STATUS_COLUMN, *LAB_COLUMNS)}
    shown = {"status": "status", "layers": "layers", "lr": "lr", "batch": "batch", "epochs": "ep",
             "reg": "λ", "test acc": "test acc", "actual time": "time"}
    table = Table(title="tuner-tui runs", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("run", overflow="fold", min_width=12)
    for title, header in shown.items():
        table.add_column(header, justify="right" if by_title[title].numeric else "left", no_wrap=True)
    for record, row in zip(records, rows(records, [by_title[t] for t in shown])):
        table.add_row(str(record.id), record.preset or "", *row)
    return table


def run_table(record: RunRecord) -> Table:
    """One run's lab columns, one per line (fits an 80-column terminal)."""
    table = Table(title=f"run {record.id}: {record.status}", title_justify="left", show_header=False)
    table.add_column("column", style="bold")
    table.add_column("value", justify="right")
    for column in (*LAB_COLUMNS[1:],):
        table.add_row(column.title, column.cell(record))
    return table
