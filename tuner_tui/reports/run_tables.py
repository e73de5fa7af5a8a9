"""The run tables the commands print: `runs`, a run's result, `presets` (Rich, no Textual)."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.table import Table
from rich.text import Text

from tuner_tui.formatting import format_number, format_seconds, headline_text, printable
from tuner_tui.runs.lab_table import LAB_COLUMNS, STATUS_COLUMN, rows
from tuner_tui.runs.presets import SHIPPED_PRESETS_DIR, Preset
from tuner_tui.runs.records import RunRecord, UnreadableRun
from tuner_tui.usercode.model_file import ModelFile


def plain(value: object) -> Text:
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
    with_models = any(record.model is not None for record in records)
    if with_models:  # runs of user code: the metric that matters to each run
        table.add_column("metric", no_wrap=True)
    for record, row in zip(records, rows(records, [by_title[t] for t in shown]), strict=True):
        if record.at_chance:
            row[0] += " (at chance)"
        extra = [headline_text(record)] if with_models else []
        table.add_row(plain(record.id), plain(record.label if record.preset or record.sweep else ""),
                      *(plain(cell) for cell in [*row, *extra]))
    for bad in unreadable:
        table.add_row(plain(bad.id), plain(f"unreadable: {bad.reason}"), plain(bad.status))
    return table


def run_table(record: RunRecord) -> Table:
    """One run's lab columns, one per line (fits an 80-column terminal)."""
    status = record.status.value + (" (test accuracy at chance)" if record.at_chance else "")
    name = f"run {record.id}" if record.id else "run (not stored)"
    if record.preset or record.sweep:
        name += f" · {record.label}"
    title = f"{name}: {status}"
    table = Table(title=plain(title), title_justify="left", show_header=False)
    table.add_column("column", style="bold")
    table.add_column("value", justify="right")
    for column in LAB_COLUMNS[1:]:
        table.add_row(column.title, plain(column.cell(record)))
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
            plain(preset.name), c.layers_label, f"{c.lr:g}", str(c.batch_size), str(c.epochs), f"{c.reg:g}",
            c.conventions, plain("shipped" if preset.shipped else preset.path),
        )
    return table


def user_run_table(record: RunRecord) -> Table:
    """A run of user code: its metrics (the headline first), one per line, and its time."""
    status = record.status.value
    name = f"run {record.id}" if record.id else "run (not stored)"
    title = f"{name} · {record.label}: {status}" if record.preset or record.sweep else f"{name}: {status}"
    table = Table(title=plain(title), title_justify="left", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    headline, _, direction = record.headline
    names = [headline, *(name for name in record.metrics if name != headline)]
    for metric in names:
        star = f" ({direction}d)" if metric == headline else ""
        table.add_row(plain(metric + star), plain(format_number(record.metrics.get(metric))))
    table.add_row("reports", str(len(record.epochs)))
    table.add_row("time", format_seconds(record.train_time_s))
    return table


def models_table(models: Sequence[ModelFile]) -> Table:
    """The model files (your own training code): what they train, their fields and their metric."""
    table = Table(title="models (your own code)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for title in ("name", "title", "function", "fields", "metric", "source"):
        table.add_column(title, overflow="fold")
    for model in models:
        headline, direction = model.headline
        shipped = model.path.parent.resolve() == SHIPPED_PRESETS_DIR.resolve()
        table.add_row(plain(model.name), plain(model.title), plain(model.train), plain(", ".join(model.fields)),
                      plain(f"{headline} ({direction})"), plain("shipped" if shipped else model.path))
    return table
