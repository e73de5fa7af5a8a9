"""The runs browser: every stored run, sorted and filtered as asked, opened, tagged, compared, deleted.

Keys (also in the footer and the `?` help): Enter opens a run (plots and its epochs), `/` filters
(status, dataset, preset, tag, lr range, words), `s` picks a sort column, `a` sorts by test
accuracy best first, `S` reverses, space marks, `c` compares the marked runs, `l` loads a run's
config into the form, `t` tags, `n` notes, `d` deletes (after asking). The best completed run is
starred. Rows this version cannot read are listed as unreadable, with why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from tuner_tui.app.components.compare_screen import CompareScreen
from tuner_tui.app.components.confirm import ConfirmScreen
from tuner_tui.app.components.prompts import ChoiceScreen, TextPromptScreen
from tuner_tui.app.components.record_table import RecordTable
from tuner_tui.app.components.run_columns import COLUMN_HELP, RUN_COLUMNS, Row, best_runs, row_key
from tuner_tui.app.components.run_detail import RunDetailScreen, run_summary
from tuner_tui.app.messages import LoadConfig
from tuner_tui.app.run_filter import FILTER_HELP, FilterError, RunFilter, parse_filter
from tuner_tui.engine.events import RunStatus
from tuner_tui.formatting import plural
from tuner_tui.runs.records import RunRecord, UnreadableRun
from tuner_tui.runs.sqlite_access import StoreError
from tuner_tui.runs.store import ResultsStore

KEY_COLUMNS = 3  # the marks, id and run stay put while the other columns scroll sideways
BEST_COLUMN = "test acc"


class RunsScreen(Screen):
    """Browse the runs of `store` (F2)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("enter", "open", "Open"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort_menu", "Sort"),
        Binding("a", "sort_best", "Best acc"),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("l", "load", "Load"),
        Binding("t", "tags", "Tags", show=False),
        Binding("n", "note", "Note", show=False),
        Binding("d,delete", "delete", "Delete", show=False),
        Binding("S", "reverse", "Reverse order", show=False),
    ]

    def __init__(self, store: ResultsStore) -> None:
        super().__init__(id="runs")
        self.store = store
        self.rows: list[Row] = []
        self.filter = RunFilter()
        self.filter_error: str | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≋")
        yield Input(
            placeholder=f"filter: {FILTER_HELP}", id="runs-filter", classes="hidden", select_on_focus=False
        )
        yield Label("", id="runs-status")
        yield RecordTable(RUN_COLUMNS, row_key, fixed_columns=KEY_COLUMNS, id="runs-table")
        yield Static("", id="run-preview")
        yield Footer(compact=True, show_command_palette=False)  # room for the browser's keys at 80 columns

    def on_mount(self) -> None:
        self.reload()
        self.table.focus()

    @property
    def table(self) -> RecordTable[Row]:
        return self.query_one("#runs-table", RecordTable)

    # --- what is listed -------------------------------------------------------------------

    def reload(self) -> None:
        """Read the store again (after a run ended, a tag, a delete)."""
        try:
            runs: list[Row] = list(self.store.list_runs())
            unreadable: list[Row] = list(self.store.list_unreadable())
        except StoreError as error:
            self.notify(str(error), severity="error", markup=False)
            return
        self.rows = sorted(runs + unreadable, key=lambda row: row.id, reverse=True)
        self._show()

    def visible_rows(self) -> list[Row]:
        """The rows the filter lets through (an unreadable row only when there is no filter)."""
        if self.filter.empty:
            return list(self.rows)
        return [r for r in self.rows if isinstance(r, RunRecord) and self.filter.matches(r)]

    def _show(self) -> None:
        visible = self.visible_rows()
        self.table.show(visible, best=[row_key(best) for best in best_runs(visible)])
        self._update_status()
        self._preview(self.table.current())

    def _update_status(self) -> None:
        table, total = self.table, len(self.rows)
        unreadable = sum(isinstance(r, UnreadableRun) for r in self.rows)
        if total == 0:
            text = "no runs stored yet — start one with F5 on the tuning screen"
        elif table.row_count == 0:
            text = f"no run matches the filter {self.filter.text!r} ({plural(total, 'run')} stored): / to change it"
        else:
            count = plural(total, "run")
            parts = [f"{table.row_count} of {count}" if table.row_count != total else count]
            if unreadable:
                parts.append(f"{unreadable} unreadable")
            if table.sort_key is not None:
                parts.append(f"by {table.sort_key} {'▼' if table.descending else '▲'}")
            else:
                parts.append("newest first")
            if table.marked:
                parts.append(f"{len(table.marked)} marked")
            if not self.filter.empty:
                parts.append(f"filter {self.filter.text}")
            text = " · ".join(parts)
        if self.filter_error:
            text = f"✗ filter: {self.filter_error} · {text}"
        self.query_one("#runs-status", Label).update(Text(text))

    def _preview(self, row: Row | None) -> None:
        preview = self.query_one("#run-preview", Static)
        if isinstance(row, UnreadableRun):
            preview.update(Text(f"run {row.id} cannot be read by this version: {row.reason}"))
        elif row is None:
            preview.update("")
        else:
            preview.update(run_summary(row))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._preview(self.table.current())

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def on_record_table_sorted(self, event: RecordTable.Sorted) -> None:
        self._update_status()

    # --- filter ---------------------------------------------------------------------------

    def action_filter(self) -> None:
        field = self.query_one("#runs-filter", Input)
        field.remove_class("hidden")
        field.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        try:
            self.filter = parse_filter(event.value)
            self.filter_error = None
        except FilterError as error:  # all runs are listed until the filter reads again
            self.filter = RunFilter()
            self.filter_error = str(error)
        self._show()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.table.focus()

    def action_back(self) -> None:
        """Escape: leave the filter (clearing it) when typing in it, else go back."""
        field = self.query_one("#runs-filter", Input)
        if field.has_focus:
            field.value = ""
            field.add_class("hidden")
            self.table.focus()
            return
        self.app.pop_screen()

    # --- sorting and marking ----------------------------------------------------------------

    def action_sort_menu(self) -> None:
        choices = [(c.key, f"{c.title:<12} {COLUMN_HELP.get(c.key, '')}".rstrip()) for c in RUN_COLUMNS]

        def chosen(key: str | None) -> None:
            if key:
                self.table.sort_by(key)

        question = "Sort by (the same column again reverses)"
        self.app.push_screen(ChoiceScreen(question, choices, self.table.sort_key), chosen)

    def action_sort_best(self) -> None:
        """Best test accuracy first, with the cursor on the best run (other sorts keep the cursor's run)."""
        self.table.sort_by(BEST_COLUMN, descending=True)
        self.table.move_cursor(row=0)

    def action_reverse(self) -> None:
        self.table.reverse()
        self._update_status()

    def action_mark(self) -> None:
        if isinstance(self.table.current(), UnreadableRun):
            self.notify("an unreadable run cannot be compared", severity="warning")
            return
        self.table.toggle_mark()
        self._update_status()

    # --- opening, comparing, editing ----------------------------------------------------------

    def _current_run(self) -> RunRecord | None:
        row = self.table.current()
        if isinstance(row, UnreadableRun):
            self.notify(f"run {row.id} cannot be read: {row.reason}", severity="warning", markup=False)
            return None
        return row

    def action_open(self) -> None:
        record = self._current_run()
        if record is not None:
            self.app.push_screen(RunDetailScreen(record))

    def action_compare(self) -> None:
        records = [r for r in self.table.marked_records() if isinstance(r, RunRecord)]
        if len(records) < 2:
            self.notify("mark two or more runs with space, then press c", severity="warning")
            return
        self.app.push_screen(CompareScreen(records))

    def action_load(self) -> None:
        record = self._current_run()
        if record is not None:
            self.post_message(LoadConfig(record))

    def action_tags(self) -> None:
        record = self._current_run()
        if record is None:
            return

        def entered(text: str | None) -> None:
            if text is not None:
                self._edit(lambda: self.store.set_tags(record.id, text.split(",")))

        question = f"Tags of {record.label} (run {record.id}), separated by commas"
        self.app.push_screen(TextPromptScreen(question, ", ".join(record.tags), "best, baseline"), entered)

    def action_note(self) -> None:
        record = self._current_run()
        if record is None:
            return

        def entered(text: str | None) -> None:
            if text is not None:
                self._edit(lambda: self.store.set_note(record.id, text.strip()))

        self.app.push_screen(TextPromptScreen(f"Note on {record.label} (run {record.id})", record.note), entered)

    def action_delete(self) -> None:
        row = self.table.current()
        if row is None:
            return
        if row.status is RunStatus.RUNNING:
            self.notify(f"run {row.id} is still running: stop it first", severity="warning")
            return
        name = row.label if isinstance(row, RunRecord) else "unreadable run"
        question = f"Delete {name} (run {row.id}, {row.status}) and its epochs from the store?"

        def answered(yes: bool | None) -> None:
            if yes:
                self._edit(lambda: self.store.delete_run(row.id))

        self.app.push_screen(ConfirmScreen(question, "Delete"), answered)

    def _edit(self, change: Callable[[], object]) -> None:
        """Make a change to the store, then list the runs again; a failure is one line."""
        try:
            change()
        except (StoreError, KeyError) as error:
            self.notify(f"the store was not changed: {error}", severity="error", markup=False)
        self.reload()
