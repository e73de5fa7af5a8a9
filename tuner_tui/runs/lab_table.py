"""The lab report's columns, as text, for the CLI's table, `report` and the app's runs table."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tuner_tui.formatting import format_bytes, format_number, format_percent, format_seconds
from tuner_tui.runs.store import RunRecord


@dataclass(frozen=True)
class Column:
    """A report column: its title, its text, and the raw value it sorts by."""

    title: str
    cell: Callable[[RunRecord], str]
    value: Callable[[RunRecord], Any]
    numeric: bool = True


def actual_memory(record: RunRecord) -> int | None:
    """NVML's reading of the process on CUDA (the lab's column), else the measured peak."""
    return record.gpu_memory_bytes if record.gpu_memory_bytes is not None else record.peak_memory_bytes


HYPERPARAMETER_COLUMNS: tuple[Column, ...] = (
    Column("run", lambda r: r.label, lambda r: r.id, numeric=False),
    Column("layers", lambda r: r.config.layers_label, lambda r: (r.config.dataset, r.config.hidden), numeric=False),
    Column("lr", lambda r: f"{r.config.lr:g}", lambda r: r.config.lr),
    Column("batch", lambda r: str(r.config.batch_size), lambda r: r.config.batch_size),
    Column("epochs", lambda r: str(r.config.epochs), lambda r: r.config.epochs),
    Column("reg", lambda r: f"{r.config.reg:g}", lambda r: r.config.reg),
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


def rows(records: Sequence[RunRecord], columns: Sequence[Column]) -> list[list[str]]:
    return [[column.cell(record) for column in columns] for record in records]


def markdown_table(records: Sequence[RunRecord], columns: Sequence[Column]) -> str:
    """A GitHub-flavoured markdown table, numbers right-aligned."""
    header = "| " + " | ".join(c.title for c in columns) + " |"
    rule = "|" + "|".join("---:" if c.numeric else ":---" for c in columns) + "|"
    body = ["| " + " | ".join(row) + " |" for row in rows(records, columns)]
    return "\n".join([header, rule, *body])


def csv_table(records: Sequence[RunRecord], columns: Sequence[Column]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.title for c in columns])
    writer.writerows(rows(records, columns))
    return out.getvalue()


def lab_report(records: Sequence[RunRecord], fmt: str = "markdown") -> str:
    """The lab report's two tables: hyperparameters and results, then resources."""
    first = HYPERPARAMETER_COLUMNS + RESULT_COLUMNS
    second = (HYPERPARAMETER_COLUMNS[0],) + RESOURCE_COLUMNS
    if fmt == "csv":
        return csv_table(records, first) + "\n" + csv_table(records, second)
    return (
        "## Hyperparameters and results\n\n" + markdown_table(records, first)
        + "\n\n## Resources\n\n" + markdown_table(records, second) + "\n"
    )
