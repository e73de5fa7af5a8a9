"""A table of records that sorts by any column, marks rows and highlights the best one.

Reusable for any kind of record (stored runs, a sweep's trials): describe the columns with
`TableColumn`s and say how each record's row is keyed.

    table = RecordTable(COLUMNS, key=lambda run: str(run.id), fixed_columns=2, id="runs-table")
    table.show(records, best={"12"}) # fill it (the cursor stays on the same record); ★ marks the best
    table.sort_by("test acc")        # that column's best end first; the same column again reverses
    table.toggle_mark()              # mark the record under the cursor (● in the first column)

Every cell is plain text (`rich.text.Text`): a record's text is never read as markup. The first
column holds the marks; columns after it keep the order given, so the key ones go first and the
rest scroll sideways.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

T = TypeVar("T")
MARK = "●"
BEST = "★"
MARK_COLUMN = "mark"


@dataclass(frozen=True)
class TableColumn(Generic[T]):
    """A column: its key and title, its cell text, the value it sorts by (None sorts last), and
    which end of its values is best (`high`, `low`, or None for text)."""

    key: str
    title: str
    cell: Callable[[T], str]
    value: Callable[[T], Any]
    numeric: bool = False
    best: Literal["high", "low"] | None = None


def sort_records(records: Sequence[T], column: TableColumn[T], descending: bool) -> list[T]:
    """`records` by `column`'s value; records without one go last either way."""
    present = [r for r in records if column.value(r) is not None]
    missing = [r for r in records if column.value(r) is None]
    return sorted(present, key=column.value, reverse=descending) + missing


class RecordTable(DataTable[Text], Generic[T]):
    """A DataTable of records with sorting by any column, marks and a highlighted best record."""

    class Sorted(Message):
        """The table's order changed (a header was clicked or `sort_by` was called)."""

    def __init__(
        self,
        columns: Sequence[TableColumn[T]],
        key: Callable[[T], str],
        *,
        fixed_columns: int = 1,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, fixed_columns=fixed_columns)
        self.table_columns = {column.key: column for column in columns}
        self.key = key
        self.records: list[T] = []
        self.marked: list[str] = []  # row keys, in the order they were marked
        self.best: frozenset[str] = frozenset()
        self.sort_key: str | None = None  # None: the order the records were given in
        self.descending = False

    def on_mount(self) -> None:
        self._add_columns()

    # --- what is shown ----------------------------------------------------------------

    def show(self, records: Sequence[T], *, best: Iterable[str] = ()) -> None:
        """Fill the table with `records` (sorted as chosen); `best`: the keys of the rows to highlight."""
        keep = self.current_key()
        self.records = list(records)
        self.best = frozenset(best)
        self.marked = [k for k in self.marked if any(self.key(r) == k for r in self.records)]
        self._refill(keep)

    def ordered(self) -> list[T]:
        """The records in the order shown."""
        if self.sort_key is None:
            return list(self.records)
        return sort_records(self.records, self.table_columns[self.sort_key], self.descending)

    def current_key(self) -> str | None:
        """The row key under the cursor, or None for an empty table."""
        if self.row_count == 0:
            return None
        value = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return None if value is None else str(value)

    def current(self) -> T | None:
        """The record under the cursor."""
        return self.record(self.current_key())

    def record(self, key: str | None) -> T | None:
        return next((r for r in self.records if self.key(r) == key), None)

    # --- sorting and marking ------------------------------------------------------------

    def sort_by(self, key: str, *, descending: bool | None = None) -> None:
        """Sort by column `key`: its best end first (text: A to Z); the same column again reverses."""
        column = self.table_columns[key]
        if descending is None:
            descending = not self.descending if key == self.sort_key else column.best == "high"
        self.sort_key, self.descending = key, descending
        self._refill(self.current_key())
        self.post_message(self.Sorted())

    def reverse(self) -> None:
        """Reverse the order shown."""
        if self.sort_key is None:
            self.records.reverse()
            self._refill(self.current_key())
        else:
            self.sort_by(self.sort_key, descending=not self.descending)

    def toggle_mark(self) -> None:
        """Mark the record under the cursor, or unmark it."""
        key = self.current_key()
        if key is None:
            return
        if key in self.marked:
            self.marked.remove(key)
        else:
            self.marked.append(key)
        self.update_cell(key, MARK_COLUMN, self._mark_cell(key))

    def marked_records(self) -> list[T]:
        """The marked records, in the order they were marked."""
        return [r for k in self.marked if (r := self.record(k)) is not None]

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = event.column_key.value
        if key in self.table_columns:
            self.sort_by(key)

    # --- drawing ------------------------------------------------------------------------

    def _add_columns(self) -> None:
        self.add_column(Text(" "), key=MARK_COLUMN, width=2)
        for column in self.table_columns.values():
            title = column.title
            if column.key == self.sort_key:
                title += " ▼" if self.descending else " ▲"
            self.add_column(Text(title, justify="right" if column.numeric else "left"), key=column.key)

    def _mark_cell(self, key: str) -> Text:
        text = (MARK if key in self.marked else " ") + (BEST if key in self.best else " ")
        return Text(text, style="bold")

    def _refill(self, keep: str | None) -> None:
        self.clear(columns=True)
        self._add_columns()
        for record in self.ordered():
            key = self.key(record)
            style = "bold" if key in self.best else ""
            cells = [
                Text(column.cell(record), style=style, justify="right" if column.numeric else "left")
                for column in self.table_columns.values()
            ]
            self.add_row(self._mark_cell(key), *cells, key=key)
        if keep is not None and any(self.key(r) == keep for r in self.records):
            self.move_cursor(row=self.get_row_index(keep), animate=False)
