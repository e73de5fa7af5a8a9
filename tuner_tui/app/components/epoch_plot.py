"""A plot of curves against epochs, with axes, ticks and a legend (textual-plotext underneath).

Reusable wherever per-epoch figures are drawn: a run's detail, the compare screen, the live view,
a sweep's trials. Give it `Series` and it redraws:

    plot = EpochPlot("test accuracy", unit="%")
    plot.show([Series("run 3", (1, 2, 3), (81.0, 83.2, 84.1)), Series("run 5", (1, 2), (79.5, 82.0))])

Each series gets its own marker as well as its own colour, so curves stay apart without colour
(`NO_COLOR`, a monochrome terminal). A series may go on the right-hand axis (`right=True`) when its
scale differs, as the lab's loss and the mean cross-entropy do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from textual_plotext import PlotextPlot

# Markers that tell curves apart without colour; the first is the finest (braille) line, too fine
# to see as a lone point, so a one-epoch curve is drawn with a solid one.
MARKERS = ("braille", "dot", "+", "x", "*", "o", "#", "@")
LONE_POINT_MARKER = "●"
MAX_X_TICKS = 8


@dataclass(frozen=True)
class Series:
    """One curve: a legend label and its points (epochs, values); `right`: on the right-hand axis."""

    label: str
    epochs: Sequence[float]
    values: Sequence[float]
    right: bool = False


def epoch_ticks(last_epoch: int, most: int = MAX_X_TICKS) -> list[int]:
    """Whole-epoch ticks from 1 to `last_epoch`, at most `most` of them, the last one included."""
    if last_epoch <= 1:
        return [1]
    step = math.ceil((last_epoch - 1) / (most - 1))
    ticks = list(range(1, last_epoch + 1, step))
    if ticks[-1] != last_epoch:
        ticks.append(last_epoch)
    return ticks


class EpochPlot(PlotextPlot):
    """Curves against epochs on labelled axes; `show(series)` replaces what is drawn."""

    def __init__(
        self, title: str, *, unit: str = "", empty: str = "no epoch yet", compact: bool = False, **kwargs
    ) -> None:
        """`compact`: no title and no axis labels (the legend says what is drawn), for small panels."""
        super().__init__(**kwargs)
        self.title = title
        self.unit = unit
        self.empty = empty
        self.compact = compact
        self.series: tuple[Series, ...] = ()
        self.show(())

    def show(self, series: Sequence[Series]) -> None:
        """Draw `series` (those without points are left out of the plot and its legend)."""
        self.series = tuple(s for s in series if len(s.values))
        plt = self.plt
        plt.clear_figure()
        if not self.compact:
            plt.title(self.title if self.series else f"{self.title}: {self.empty}")
            plt.xlabel("epoch")
            if self.unit:
                plt.ylabel(self.unit)
        elif not self.series:
            plt.title(f"{self.title}: {self.empty}")
        last_epoch = 1
        for index, curve in enumerate(self.series):
            marker = MARKERS[index % len(MARKERS)]
            if marker == MARKERS[0] and len(curve.values) == 1:
                marker = LONE_POINT_MARKER
            plt.plot(
                list(curve.epochs), list(curve.values), label=curve.label, marker=marker,
                yside="right" if curve.right else "left",
            )
            last_epoch = max(last_epoch, math.ceil(max(curve.epochs)))
        ticks = epoch_ticks(last_epoch)
        plt.xticks([float(t) for t in ticks], [str(t) for t in ticks])
        plt.xlim(0.8 if last_epoch == 1 else 1, last_epoch + 0.2 if last_epoch == 1 else last_epoch)
        for side in ("left", "right"):
            values = [v for s in self.series if s.right == (side == "right") for v in s.values]
            if values and max(values) - min(values) < 1e-9:  # a flat curve still needs a scale
                # The stub types yside as a float; plotext takes "left" or "right".
                plt.ylim(values[0] - 1, values[0] + 1, yside=side)  # type: ignore[arg-type]
        self.refresh()
