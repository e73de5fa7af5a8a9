"""A stored run in full: what it was, how it ended, its curves against epochs, and its epochs' table.

The loss plot puts the lab's loss (which depends on the batch size under lab4) on the left axis and
the mean cross-entropy on the right; the accuracy plot holds training, test and, for a run with a
validation split, validation accuracy.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from tuner_tui.app.components.epoch_plot import EpochPlot, Series
from tuner_tui.app.components.run_columns import duration, format_date, status_text
from tuner_tui.app.messages import LoadConfig
from tuner_tui.engine.config import RunConfig
from tuner_tui.formatting import config_summary, format_number, format_percent, format_seconds, headline_text
from tuner_tui.runs.records import RunRecord, what_trains

NAME_WIDTH = 20  # a legend or a column holds several names side by side


def run_name(record: RunRecord, width: int | None = None) -> str:
    """`run 3`, or `#3 fmnist_exp5` for a run with a preset or sweep name (legends, titles), cut
    to `width` characters with an ellipsis when given."""
    name = record.label if record.label == f"run {record.id}" else f"#{record.id} {record.label}"
    return name if width is None or len(name) <= width else name[: width - 1] + "…"


def metric_curves(record: RunRecord, names: list[str]) -> list[Series]:
    """A curve per reported metric of a run of user code, by epoch."""
    curves = []
    for name in names:
        points = [(e.epoch, e.metrics[name]) for e in record.epochs if name in e.metrics]
        curves.append(Series(name, [x for x, _ in points], [y for _, y in points]))
    return curves


def loss_series(record: RunRecord) -> list[Series]:
    """The lab's loss (left axis) and the mean cross-entropy (right axis) by epoch."""
    lab = [(e.epoch, e.train_loss) for e in record.epochs if e.train_loss is not None]
    ce = [(e.epoch, e.train_ce) for e in record.epochs if e.train_ce is not None]
    return [
        Series("lab loss (left)", [x for x, _ in lab], [y for _, y in lab]),
        Series("CE (right)", [x for x, _ in ce], [y for _, y in ce], right=True),
    ]


def accuracy_series(record: RunRecord) -> list[Series]:
    """Training, test and (if measured) validation accuracy by epoch, in percent."""
    series = []
    for label, attribute in (("train", "train_accuracy"), ("test", "test_accuracy"), ("validation", "val_accuracy")):
        points = [(e.epoch, getattr(e, attribute)) for e in record.epochs if getattr(e, attribute) is not None]
        series.append(Series(label, [x for x, _ in points], [y for _, y in points]))
    return series


def run_summary(record: RunRecord) -> Text:
    """Who the run is, how it ended, and its config, as plain text."""
    ended = status_text(record)
    if record.message and record.message != record.status:
        ended += f" — {record.message}"
    config = record.config
    lines = [
        f"{run_name(record)} · {format_date(record.started_at)} · {record.device_name or 'device n/a'} · "
        f"{headline_text(record)} · training {format_seconds(record.train_time_s)} "
        f"of {format_seconds(duration(record))}",
        ended,
        config_summary(config) if isinstance(config, RunConfig) else f"{what_trains(record)}: {config.summary()}",
    ]
    if record.tags or record.note:
        lines.append(" · ".join(part for part in (", ".join(record.tags), record.note) if part))
    return Text("\n".join(lines))


class RunDetailScreen(Screen):
    """Opened with Enter on a run in the browser."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("l", "load", "Load config"),
    ]

    def __init__(self, record: RunRecord) -> None:
        super().__init__(id="run-detail")
        self.record = record

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≋")
        with VerticalScroll(id="detail-body"):
            yield Static(run_summary(self.record), id="detail-summary")
            with Horizontal(id="detail-plots", classes="plots"):
                yield EpochPlot("loss by epoch", id="detail-loss")
                yield EpochPlot("accuracy by epoch", unit="%", id="detail-accuracy")
            yield DataTable(id="epoch-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        if self.record.model is not None:
            self._show_user_run()
            return
        self.query_one("#detail-loss", EpochPlot).show(loss_series(self.record))
        self.query_one("#detail-accuracy", EpochPlot).show(accuracy_series(self.record))
        table: DataTable[Text] = self.query_one("#epoch-table", DataTable)
        with_validation = any(e.val_accuracy is not None for e in self.record.epochs)
        titles = ["epoch", "lab loss", "CE", "train acc", "test acc", *(["val acc"] if with_validation else []), "time"]
        for title in titles:
            table.add_column(Text(title, justify="right"), key=title)
        for e in self.record.epochs:
            cells = [
                str(e.epoch), format_number(e.train_loss), format_number(e.train_ce),
                format_percent(e.train_accuracy), format_percent(e.test_accuracy),
                *([format_percent(e.val_accuracy)] if with_validation else []), format_seconds(e.seconds),
            ]
            table.add_row(*(Text(c, justify="right") for c in cells))
        if not self.record.epochs:
            table.add_row(Text("no finished epoch"), *(Text("") for _ in titles[1:]))

    def _show_user_run(self) -> None:
        """A run of user code: its headline metric and its other metrics by epoch, a table of every
        report, and its log (a failed run's traceback among it)."""
        record = self.record
        headline = record.headline[0]
        names = list(dict.fromkeys(name for e in record.epochs for name in e.metrics))
        first, second = self.query_one("#detail-loss", EpochPlot), self.query_one("#detail-accuracy", EpochPlot)
        first.title, first.unit, second.title, second.unit = f"{headline} by epoch", "", "other metrics by epoch", ""
        first.show(metric_curves(record, [headline]))
        second.show(metric_curves(record, [n for n in names if n != headline]))
        table: DataTable[Text] = self.query_one("#epoch-table", DataTable)
        titles = ["epoch", *names, "time"]
        for title in titles:
            table.add_column(Text(title, justify="right"), key=title)
        for e in record.epochs:
            cells = [str(e.epoch), *(format_number(e.metrics.get(name)) for name in names), format_seconds(e.seconds)]
            table.add_row(*(Text(c, justify="right") for c in cells))
        if not record.epochs:
            table.add_row(Text("no report"), *(Text("") for _ in titles[1:]))
        if record.log:
            self.query_one("#detail-body", VerticalScroll).mount(Static(Text(record.log), id="detail-log"))

    def action_load(self) -> None:
        self.post_message(LoadConfig(self.record))
