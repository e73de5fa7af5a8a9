"""`--no-ui`: run one config headless; its progress on stderr (a rich bar, or plain lines off a
terminal), its result on stdout (the lab's columns, or one JSON object); and the CLI's tables."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from tuner_tui.engine.events import EpochEnd, Event, Finished, Started
from tuner_tui.engine.events import Progress as ProgressEvent
from tuner_tui.formatting import epoch_line, format_seconds, printable, started_lines
from tuner_tui.runs.lab_table import LAB_COLUMNS, STATUS_COLUMN, rows
from tuner_tui.runs.presets import Preset
from tuner_tui.runs.store import RunLabels, RunRecord, UnreadableRun

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


def _plain(value: object) -> Text:
    """Store and user text as it is: never parsed as markup, control characters shown, not sent."""
    return Text(printable(str(value)))


def runs_table(records: Sequence[RunRecord], unreadable: Sequence[UnreadableRun] = ()) -> Table:
    """A line per run with the columns that fit a terminal (`runs --json` has them all)."""
    by_title = {c.title: c for c in (STATUS_COLUMN, *LAB_COLUMNS)}
    shown = {"status": "status", "layers": "layers", "lr": "lr", "batch": "batch", "epochs": "ep",
             "reg": "λ", "test acc": "test acc", "actual time": "time"}
    table = Table(
        title="tuner-tui runs", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("run", overflow="fold", min_width=12)
    for title, header in shown.items():
        table.add_column(header, justify="right" if by_title[title].numeric else "left", no_wrap=True)
    for record, row in zip(records, rows(records, [by_title[t] for t in shown]), strict=True):
        if record.at_chance:
            row[0] += " (at chance)"
        table.add_row(_plain(record.id), _plain(record.label if record.preset or record.sweep else ""),
                      *(_plain(cell) for cell in row))
    for bad in unreadable:
        table.add_row(_plain(bad.id), _plain(f"unreadable: {bad.reason}"), _plain(bad.status))
    return table


def run_table(record: RunRecord) -> Table:
    """One run's lab columns, one per line (fits an 80-column terminal)."""
    status = record.status + (" (test accuracy at chance)" if record.at_chance else "")
    name = f"run {record.id}" if record.id else "run (not stored)"
    if record.preset or record.sweep:
        name += f" · {record.label}"
    title = f"{name}: {status}"
    table = Table(title=_plain(title), title_justify="left", show_header=False)
    table.add_column("column", style="bold")
    table.add_column("value", justify="right")
    for column in LAB_COLUMNS[1:]:
        table.add_row(column.title, _plain(column.cell(record)))
    return table


def presets_table(presets: Sequence[Preset]) -> Table:
    """The presets with what they train; user presets show their file."""
    table = Table(title="presets", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("name", no_wrap=True)
    table.add_column("layers", no_wrap=True)
    for title in ("lr", "batch", "epochs", "λ"):
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("conv.", no_wrap=True)
    table.add_column("source", overflow="fold")
    for preset in presets:
        c = preset.config
        table.add_row(
            _plain(preset.name), c.layers_label, f"{c.lr:g}", str(c.batch_size), str(c.epochs), f"{c.reg:g}",
            c.conventions, _plain("shipped" if preset.shipped else preset.path),
        )
    return table


def run_headless(args: argparse.Namespace) -> int:
    """`tuner-tui --no-ui`: run the config, record it, print its result; the CLI's exit code."""
    from tuner_tui.cli import EXIT_OK, EXIT_RUN_FAILED, BadInput, open_store, resolve_config
    from tuner_tui.engine.capacity import WontFitError
    from tuner_tui.engine.config import ConfigError
    from tuner_tui.engine.datasets import DatasetError
    from tuner_tui.engine.events import RunStatus
    from tuner_tui.engine.runner import prepare_run
    from tuner_tui.runs.session import execute_and_record
    from tuner_tui.runs.stop_signals import StopSignals

    config, label = resolve_config(args.preset, args.overrides, data_root=args.data_root, device=args.device)
    with StopSignals() as stop:
        try:
            prepared = prepare_run(config, force=args.force)
        except WontFitError as error:
            raise BadInput(f"{error}; use --force to try anyway") from None
        except (ConfigError, DatasetError) as error:
            raise BadInput(str(error)) from None
        if stop.received is not None:  # stopped during start-up: nothing ran, nothing is stored
            print("tuner-tui: interrupted before the run started; nothing was stored", file=sys.stderr)
            return 128 + stop.received
        for note in prepared.dataset.notes:
            Console(stderr=True).print(_plain(f"tuner-tui: warning: {note}"), soft_wrap=True)
        with open_store(args.store, create=True) as store:
            reporter = HeadlessReporter(Console(stderr=True))
            try:
                recorded = execute_and_record(
                    prepared, store, reporter, cancel=stop.cancel, labels=RunLabels(preset=label)
                )
            finally:
                reporter.stop()
            record = store.get_run(recorded.run_id) if recorded.run_id is not None else recorded.unsaved
    assert record is not None
    if args.json:
        print(json.dumps(record.to_json()))
    else:
        Console().print(run_table(record))
    if recorded.store_error is not None:
        Console(stderr=True).print(
            _plain(f"tuner-tui: error: the run was not stored: {recorded.store_error}"), soft_wrap=True
        )
        return EXIT_RUN_FAILED
    signalled = stop.exit_code()
    if signalled is not None:
        return signalled
    return EXIT_OK if recorded.finished.status == RunStatus.COMPLETED else EXIT_RUN_FAILED
