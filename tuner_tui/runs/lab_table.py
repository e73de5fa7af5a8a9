"""The lab report's columns, as text, for the CLI's table, `report` and the app's runs table.

`report` writes the lab's two tables in Markdown (cells escaped: store text cannot break a table
or reach the terminal as escape sequences), or one CSV table of raw numbers in base units
(seconds, bytes, percent as a number) that pandas or a spreadsheet loads as is.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from tuner_tui.engine.units import format_bytes
from tuner_tui.formatting import format_number, format_percent, format_seconds, printable
from tuner_tui.runs.records import RunRecord, UnreadableRun, dataset_of, number_of, what_trains


@dataclass(frozen=True)
class Column:
    """A report column: its title, its text, and the raw value it sorts by."""

    title: str
    cell: Callable[[RunRecord], str]
    value: Callable[[RunRecord], Any]
    numeric: bool = True


def shown_number(value: float | None) -> str:
    """`0.01`, `20`, or `–` when there is none."""
    return "–" if value is None else f"{value:g}"


def actual_memory(record: RunRecord) -> int | None:
    """NVML's reading of the process on CUDA (the lab's column), else the measured peak."""
    return record.gpu_memory_bytes if record.gpu_memory_bytes is not None else record.peak_memory_bytes


HYPERPARAMETER_COLUMNS: tuple[Column, ...] = (
    Column("run", lambda r: r.label, lambda r: r.id, numeric=False),
    Column("layers", what_trains, lambda r: (dataset_of(r), what_trains(r)), numeric=False),
    Column("lr", lambda r: shown_number(number_of(r, "lr")), lambda r: number_of(r, "lr")),
    Column("batch", lambda r: shown_number(number_of(r, "batch_size")), lambda r: number_of(r, "batch_size")),
    Column("epochs", lambda r: shown_number(number_of(r, "epochs")), lambda r: number_of(r, "epochs")),
    Column("reg", lambda r: shown_number(number_of(r, "reg")), lambda r: number_of(r, "reg")),
)
RESULT_COLUMNS: tuple[Column, ...] = (
    Column("train acc", lambda r: format_percent(r.train_accuracy), lambda r: r.train_accuracy),
    Column("train loss", lambda r: format_number(r.train_loss), lambda r: r.train_loss),
    Column("test acc", lambda r: format_percent(r.test_accuracy), lambda r: r.test_accuracy),
)
RESOURCE_COLUMNS: tuple[Column, ...] = (
    Column("params", lambda r: f"{r.params:,}", lambda r: r.params),
    Column("est. memory", lambda r: format_bytes(r.estimated_memory_bytes), lambda r: r.estimated_memory_bytes),
    Column("actual memory", lambda r: format_bytes(actual_memory(r)), actual_memory),
    Column("est. time", lambda r: format_seconds(r.estimated_time_s), lambda r: r.estimated_time_s),
    Column("actual time", lambda r: format_seconds(r.train_time_s), lambda r: r.train_time_s),
)
STATUS_COLUMN = Column("status", lambda r: r.status, lambda r: r.status, numeric=False)
LAB_COLUMNS: tuple[Column, ...] = HYPERPARAMETER_COLUMNS + RESULT_COLUMNS + RESOURCE_COLUMNS


# The CSV report: one row per run, raw values in base units; a figure that does not apply is empty.
CSV_FIELDS: tuple[tuple[str, Callable[[RunRecord], Any]], ...] = (
    ("run_id", lambda r: r.id),
    ("run", lambda r: printable(r.label)),
    ("dataset", dataset_of),
    ("layers", what_trains),
    ("lr", lambda r: number_of(r, "lr")),
    ("batch_size", lambda r: number_of(r, "batch_size")),
    ("epochs", lambda r: number_of(r, "epochs")),
    ("reg", lambda r: number_of(r, "reg")),
    ("train_accuracy_percent", lambda r: r.train_accuracy),
    ("train_loss", lambda r: r.train_loss),
    ("test_accuracy_percent", lambda r: r.test_accuracy),
    ("params", lambda r: r.params),
    ("estimated_memory_bytes", lambda r: r.estimated_memory_bytes),
    ("actual_memory_bytes", actual_memory),
    ("estimated_time_s", lambda r: r.estimated_time_s),
    ("actual_time_s", lambda r: r.train_time_s),
)


def rows(records: Sequence[RunRecord], columns: Sequence[Column]) -> list[list[str]]:
    return [[column.cell(record) for column in columns] for record in records]


def markdown_cell(text: str) -> str:
    """`text` as one Markdown table cell: on one line, `|` and `\\` escaped, control characters as `�`."""
    return printable(" ".join(text.splitlines())).replace("\\", "\\\\").replace("|", "\\|")


def markdown_table(records: Sequence[RunRecord], columns: Sequence[Column]) -> str:
    """A GitHub-flavoured markdown table, numbers right-aligned."""
    header = "| " + " | ".join(c.title for c in columns) + " |"
    rule = "|" + "|".join("---:" if c.numeric else ":---" for c in columns) + "|"
    body = ["| " + " | ".join(markdown_cell(cell) for cell in row) + " |" for row in rows(records, columns)]
    return "\n".join([header, rule, *body])


def csv_report(records: Sequence[RunRecord]) -> str:
    """One CSV table: a header of CSV_FIELDS, then a row of raw values per run; runs of user code add
    their model and a `metric:NAME` column per metric they reported (empty for the others)."""
    fields = list(CSV_FIELDS)
    user_runs = [r for r in records if r.model is not None]
    if user_runs:
        names = list(dict.fromkeys(name for r in user_runs for name in r.metrics))
        fields += [("model", lambda r: printable(r.model.title) if r.model else None),
                   ("headline_metric", lambda r: r.headline[0] if r.model else None)]
        fields += [(f"metric:{name}", partial(_metric, name=name)) for name in names]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([name for name, _ in fields])
    writer.writerows([["" if value is None else value for value in (get(r) for _, get in fields)] for r in records])
    return out.getvalue()


def _metric(record: RunRecord, name: str) -> float | None:
    return record.metrics.get(name)


USER_COLUMNS: tuple[Column, ...] = (
    Column("run", lambda r: r.label, lambda r: r.id, numeric=False),
    Column("model", what_trains, what_trains, numeric=False),
    Column("metric", lambda r: f"{r.headline[0]} {format_number(r.headline[1])}", lambda r: r.headline[1],
           numeric=False),
    Column("other metrics", lambda r: " · ".join(
        f"{name} {format_number(value)}" for name, value in r.metrics.items() if name != r.headline[0]
    ), lambda r: None, numeric=False),
    Column("time", lambda r: format_seconds(r.train_time_s), lambda r: r.train_time_s),
)


def unreadable_note(run: UnreadableRun) -> str:
    """One line saying which stored run this version cannot read, and why."""
    return printable(f"run {run.id} ({run.status}) cannot be read by this version and is left out: {run.reason}")


def lab_report(records: Sequence[RunRecord], fmt: str = "markdown", unreadable: Sequence[UnreadableRun] = ()) -> str:
    """The lab report: in Markdown its two tables (hyperparameters and results, then resources)
    and a line per unreadable run; in CSV one table (say where unreadable runs are, apart)."""
    if fmt == "csv":
        return csv_report(records)
    builtin = [r for r in records if r.model is None]
    user_runs = [r for r in records if r.model is not None]
    first = HYPERPARAMETER_COLUMNS + RESULT_COLUMNS
    second = (HYPERPARAMETER_COLUMNS[0], *RESOURCE_COLUMNS)
    notes = "".join(f"\n- {markdown_cell(unreadable_note(run))}" for run in unreadable)
    return (
        "## Hyperparameters and results\n\n" + markdown_table(builtin, first)
        + "\n\n## Resources\n\n" + markdown_table(builtin, second) + "\n"
        + (f"\n## Your own code\n\n{markdown_table(user_runs, USER_COLUMNS)}\n" if user_runs else "")
        + (f"\n## Unreadable runs\n{notes}\n" if notes else "")
    )
