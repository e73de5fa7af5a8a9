"""The runs browser's columns, key ones first: id, run, status, test acc, time, then the rest.

A row is a readable `RunRecord` or an `UnreadableRun` (a row this version cannot read), shown with
what is known of it. The lab's loss depends on the batch size under lab4, so the mean
cross-entropy (CE) sits beside it. `RUN_COLUMNS` works in any `RecordTable` of runs (a sweep's trials
are runs too).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from tuner_tui.app.components.record_table import TableColumn
from tuner_tui.engine.events import RunStatus
from tuner_tui.engine.units import format_bytes
from tuner_tui.formatting import format_number, format_percent, format_seconds
from tuner_tui.runs.lab_table import actual_memory, shown_number
from tuner_tui.runs.records import RunRecord, UnreadableRun, dataset_of, number_of, what_trains

Row = RunRecord | UnreadableRun


def row_key(row: Row) -> str:
    return str(row.id)


def format_date(started_at: float | None) -> str:
    """`2026-05-03 14:02` in local time, or an empty cell."""
    return "" if started_at is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(started_at))


def duration(record: RunRecord) -> float | None:
    """The whole run (data, calibration, training, tests), or None while it runs."""
    if record.total_time_s is not None:
        return record.total_time_s
    return None if record.finished_at is None else record.finished_at - record.started_at


def status_text(record: RunRecord) -> str:
    return f"{record.status} · at chance" if record.at_chance else record.status


def _column(
    key: str,
    cell: Callable[[RunRecord], str],
    value: Callable[[RunRecord], Any],
    *,
    numeric: bool = True,
    best: Literal["high", "low"] | None = None,
    title: str | None = None,
) -> TableColumn[Row]:
    """A column of readable runs; an unreadable row shows an empty cell and sorts last."""
    return TableColumn(
        key, title or key,
        cell=lambda row: cell(row) if isinstance(row, RunRecord) else "",
        value=lambda row: value(row) if isinstance(row, RunRecord) else None,
        numeric=numeric, best=best,
    )


RUN_COLUMNS: tuple[TableColumn[Row], ...] = (
    TableColumn("id", "id", cell=lambda r: str(r.id), value=lambda r: r.id, numeric=True, best="high"),
    TableColumn(
        "run", "run", cell=lambda r: r.label if isinstance(r, RunRecord) else "⚠ unreadable",
        value=lambda r: r.label if isinstance(r, RunRecord) else None,
    ),
    TableColumn(
        "status", "status", cell=lambda r: status_text(r) if isinstance(r, RunRecord) else r.status,
        value=lambda r: r.status,
    ),
    _column("test acc", lambda r: format_percent(r.test_accuracy), lambda r: r.test_accuracy, best="high"),
    _column("time", lambda r: format_seconds(r.train_time_s), lambda r: r.train_time_s, best="low"),
    TableColumn(
        "date", "date", cell=lambda r: format_date(r.started_at), value=lambda r: r.started_at, best="high",
    ),
    _column("duration", lambda r: format_seconds(duration(r)), duration, best="low"),
    _column("dataset", dataset_of, dataset_of, numeric=False),
    _column("layers", what_trains, lambda r: (dataset_of(r), what_trains(r)), numeric=False),
    _column("lr", lambda r: shown_number(number_of(r, "lr")), lambda r: number_of(r, "lr")),
    _column("batch", lambda r: shown_number(number_of(r, "batch_size")), lambda r: number_of(r, "batch_size")),
    _column("epochs", lambda r: shown_number(number_of(r, "epochs")), lambda r: number_of(r, "epochs")),
    _column("reg", lambda r: shown_number(number_of(r, "reg")), lambda r: number_of(r, "reg"), title="λ"),
    _column("train acc", lambda r: format_percent(r.train_accuracy), lambda r: r.train_accuracy, best="high"),
    _column("lab loss", lambda r: format_number(r.train_loss), lambda r: r.train_loss, best="low"),
    _column("CE", lambda r: format_number(r.train_ce), lambda r: r.train_ce, best="low"),
    _column("params", lambda r: f"{r.params:,}", lambda r: r.params),
    _column(
        "est. memory", lambda r: format_bytes(r.estimated_memory_bytes), lambda r: r.estimated_memory_bytes
    ),
    _column("memory", lambda r: format_bytes(actual_memory(r)), actual_memory),
    _column("est. time", lambda r: format_seconds(r.estimated_time_s), lambda r: r.estimated_time_s),
    _column("tags", lambda r: ", ".join(r.tags), lambda r: ", ".join(r.tags) or None, numeric=False),
    _column("note", lambda r: r.note.replace("\n", " "), lambda r: r.note or None, numeric=False),
)
COLUMN_HELP = {
    "time": "training time (the lab's actual time)",
    "duration": "the whole run: data, calibration, training, test passes",
    "lab loss": "the lab's loss (depends on the batch size under lab4)",
    "CE": "mean cross-entropy of the last epoch (comparable across batch sizes)",
    "reg": "L2 regularization (λ)",
}


def best_runs(rows: list[Row]) -> list[RunRecord]:
    """The best completed run of the built-in network (highest test accuracy, the first of equals) and,
    for each user model, its best completed run by the model's headline metric in its direction."""
    groups: dict[str, list[RunRecord]] = {}
    for row in rows:
        if isinstance(row, RunRecord) and row.status is RunStatus.COMPLETED and row.headline[1] is not None:
            groups.setdefault(row.model.file if row.model else "", []).append(row)
    best = []
    for runs in groups.values():
        sign = 1.0 if runs[0].headline[2] == "maximize" else -1.0
        best.append(max(runs, key=lambda r: sign * (r.headline[1] or 0.0)))
    return best
