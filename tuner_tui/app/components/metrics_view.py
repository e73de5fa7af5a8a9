"""A run of user code as it goes: progress over its epochs (when the model has an `epochs` field),
its headline metric by epoch, and every other metric it reports by epoch, each a curve."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, ProgressBar

from tuner_tui.app.components.epoch_plot import EpochPlot, Series
from tuner_tui.engine.events import RunStatus
from tuner_tui.formatting import format_seconds, metric_text
from tuner_tui.usercode.events import MetricsReported, UserFinished, UserStarted

MAX_OTHER_CURVES = 6  # more metrics than this are listed in the status line, not drawn


def metric_series(reports: list[MetricsReported], names: list[str]) -> list[Series]:
    """A curve per metric name, over the reports that have it."""
    series = []
    for name in names:
        points = [(r.epoch, r.metrics[name]) for r in reports if name in r.metrics]
        series.append(Series(name, [x for x, _ in points], [y for _, y in points]))
    return series


class MetricsLiveView(Vertical):
    """Updated from a user run's events on the UI thread, drawn by `draw()` (the caller paces it)."""

    def compose(self) -> ComposeResult:
        yield Label("no run yet — press F5 to start", id="run-status")
        yield ProgressBar(total=1, show_eta=False, id="run-progress")
        yield EpochPlot("headline", empty="after the first report", compact=True, id="headline-plot")
        yield EpochPlot("other metrics", empty="after the first report", compact=True, id="metrics-plot")
        yield Label("device –", id="device-name")

    def on_mount(self) -> None:
        self.reset("")

    def reset(self, headline: str) -> None:
        self.headline = headline
        self.reports: list[MetricsReported] = []
        self.epochs: int | None = None
        self.dirty = False
        self.query_one("#run-status", Label).remove_class("-ended")
        self.query_one(ProgressBar).update(total=1, progress=0)
        self.query_one("#headline-plot", EpochPlot).show(())
        self.query_one("#metrics-plot", EpochPlot).show(())

    def show_preparing(self, title: str, headline: str) -> None:
        self.reset(headline)
        self._status(f"starting {title}: importing its code…")

    def show_stopping(self, grace_s: float) -> None:
        self._status(f"stopping… (at its next report; killed after {grace_s:g} s if it does not)")

    def show_started(self, event: UserStarted) -> None:
        self.reset(event.headline)
        self.epochs = event.config.epochs
        self.query_one("#device-name", Label).update(Text(f"device {event.device_name}"))
        self._status(f"running {event.title} · {event.origin.function}")

    def add_report(self, event: MetricsReported) -> None:
        self.reports.append(event)
        self.dirty = True

    def draw(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        last = self.reports[-1]
        if self.epochs:
            self.query_one(ProgressBar).update(total=self.epochs, progress=min(last.epoch, self.epochs))
        headline = [s for s in metric_series(self.reports, [self.headline]) if s.values]
        self.query_one("#headline-plot", EpochPlot).show(headline)
        others = list(dict.fromkeys(n for r in self.reports for n in r.metrics if n != self.headline))
        self.query_one("#metrics-plot", EpochPlot).show(metric_series(self.reports, others[:MAX_OTHER_CURVES]))
        of = f"/{self.epochs}" if self.epochs else ""
        text = " · ".join(metric_text(name, value) for name, value in last.metrics.items())
        self._status(f"epoch {last.epoch}{of} · {text}")

    def show_finished(self, event: UserFinished) -> None:
        self.draw()
        if event.status is RunStatus.COMPLETED and self.epochs:
            self.query_one(ProgressBar).update(total=self.epochs, progress=self.epochs)
        self._status(f"{event.status.value} · {event.message} · {format_seconds(event.total_time_s)}")
        self.query_one("#run-status", Label).add_class("-ended")

    def show_outcome(self, summary: str) -> None:
        self._status(summary)
        self.query_one("#run-status", Label).add_class("-ended")

    def _status(self, text: str) -> None:
        self.query_one("#run-status", Label).update(Text(text))
