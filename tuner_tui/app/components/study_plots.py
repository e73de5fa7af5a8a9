"""A study's plots, drawn with textual-plotext as the sweep screen's are: learning curves, importances,
parallel coordinates and the Pareto front (the slice is the sweep screen's `ParamPlot`).

Each takes a `StudyView` and redraws. Kinds of trials get their own markers as well as colours, so
they stay apart under NO_COLOR: completed curves in braille, running ones in `+`, pruned and failed
ones dimmed in `·`, the best in `*`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tuner_tui.app.components.epoch_plot import LONE_POINT_MARKER
from tuner_tui.app.components.sweep_plots import COMPLETED_MARKER, whole_ticks
from tuner_tui.app.components.titled_plot import TitledPlot
from tuner_tui.app.parallel_coordinates import TOP_LINES, parallel_coordinates
from tuner_tui.app.study_reading import StudyView
from tuner_tui.engine.events import RunStatus

if TYPE_CHECKING:
    from tuner_tui.sweeps.summary import TrialRow

DIM_COLOR = "gray"
DIM_MARKER = "·"
RUNNING_MARKER = "+"
BEST_MARKER = "*"
BRAILLE_SAMPLE = "⢕"  # how a braille line looks, for a legend in words
FRONT_MARKER = "*"
LABEL_WIDTH = 10  # a label on a parallel axis is cut to this, or less when the axes are close
Y_TICKS_WIDTH = 8  # the columns left of a plot's frame
TITLES_AT = -0.18  # where a parallel plot writes its axes' titles, below their lowest values


def _line(plt: Any, xs: Sequence[float], ys: Sequence[float], marker: str, **kwargs: Any) -> None:
    """A line, or a solid point when it has one point (a braille point is too fine to see)."""
    plt.plot(list(xs), list(ys), marker=LONE_POINT_MARKER if len(xs) == 1 and marker == "braille" else marker,
             **kwargs)


class LearningCurvesPlot(TitledPlot[StudyView]):
    """Every trial's intermediate values by step: running trials live, pruned and failed ones dimmed,
    the best completed trial on top."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("learning curves", empty="no intermediate value reported yet", **kwargs)

    def draw(self, view: StudyView) -> str | None:
        summary = view.summary
        curves = [t for t in summary.trials if t.intermediate]
        if not curves:
            return self.empty
        best = summary.best()
        best_number = best.number if best is not None else None
        kinds: list[tuple[str, list[TrialRow], dict[str, Any]]] = [
            (f"{DIM_MARKER} pruned or failed",
             [t for t in curves if t.status not in (RunStatus.COMPLETED, RunStatus.RUNNING)],
             {"marker": DIM_MARKER, "color": DIM_COLOR}),
            (f"{BRAILLE_SAMPLE} completed",
             [t for t in curves if t.status is RunStatus.COMPLETED and t.number != best_number],
             {"marker": "braille"}),
            (f"{RUNNING_MARKER} running", [t for t in curves if t.status is RunStatus.RUNNING],
             {"marker": RUNNING_MARKER}),
            (f"{BEST_MARKER} best #{best_number}", [t for t in curves if t.number == best_number],
             {"marker": BEST_MARKER, "color": "red+"}),
        ]
        plt = self.plt  # the title is the legend: a legend box would hide the first steps
        legend = ", ".join(label for label, trials, _ in kinds[::-1] if trials)
        plt.title(f"{summary.objective} by step: {legend}")
        for _, trials, style in kinds:
            for trial in sorted(trials, key=lambda t: t.number):
                steps = sorted(trial.intermediate)
                values = [trial.intermediate[s] for s in steps]
                if all(math.isfinite(v) for v in values):
                    _line(plt, steps, values, **style)
        last = max(step for t in curves for step in t.intermediate)
        first = min(step for t in curves for step in t.intermediate)
        ticks = whole_ticks(first, max(last, first + 1))
        plt.xticks([float(t) for t in ticks], [str(t) for t in ticks])
        plt.xlabel("step")
        return None


class ImportancePlot(TitledPlot[StudyView]):
    """PED-ANOVA importances as horizontal bars, the most important parameter on top."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("parameter importance", empty="reading…", **kwargs)

    def draw(self, view: StudyView) -> str | None:
        from tuner_tui.sweeps.summary import MIN_IMPORTANCE_TRIALS  # loaded by the read that made `view`

        weights = view.importances
        if not weights:
            if view.completed < MIN_IMPORTANCE_TRIALS:
                return f"needs {MIN_IMPORTANCE_TRIALS} completed trials ({view.completed} so far)"
            return "cannot be told from these trials yet"
        ranked = sorted(weights.items(), key=lambda item: (item[1], item[0]))  # plotext draws the last on top
        plt = self.plt
        plt.title(f"importance for {view.summary.objective} (PED-ANOVA, {view.completed} completed trials)")
        plt.bar([name for name, _ in ranked], [weight for _, weight in ranked], orientation="horizontal",
                width=0.4)
        return None


class ParallelCoordinatesPlot(TitledPlot[StudyView]):
    """One line per completed trial across the parameters and the objective (each axis scaled to
    0..1): the best `top` in colour and solid, the rest dimmed."""

    def __init__(self, *, top: int = TOP_LINES, **kwargs: Any) -> None:
        self.top = top
        super().__init__("parallel coordinates", empty="no completed trial yet", **kwargs)

    def draw(self, view: StudyView) -> str | None:
        chart = parallel_coordinates(view.summary, self.top)
        if not chart.lines:
            return self.empty
        plt = self.plt
        title = f"{len(chart.lines)} completed trials"
        if len(chart.lines) > self.top:
            title += f": the best {self.top} solid, the rest dotted ({DIM_MARKER})"
        logs = [axis.name for axis in view.summary.axes if axis.log]
        if logs:
            title += f"; log axes: {', '.join(logs)}"
        if chart.left_out:
            title += f"; {chart.left_out} without every parameter left out"
        plt.title(title)
        xs = list(range(len(chart.axes)))
        for line in sorted(chart.lines, key=lambda line: line.top):  # the best drawn last, on top
            style = {"marker": "braille"} if line.top else {"marker": DIM_MARKER, "color": DIM_COLOR}
            plt.plot(xs, list(line.positions), **style)
        room = max(3, min(LABEL_WIDTH, (self.size.width - Y_TICKS_WIDTH) // len(chart.axes) - 1))
        for x, axis in enumerate(chart.axes):
            for y, label in axis.labels:
                plt.text(label[:room], x, y, alignment="center")
            # the axis titles as text, not as x tick labels: plotext places crowded tick labels unsteadily
            plt.text(axis.title[:room], x, TITLES_AT, alignment="center")
        plt.xticks([])
        plt.yticks([0.0, 1.0], ["low", "high"])
        plt.xlim(-0.5, len(xs) - 0.5)
        plt.ylim(TITLES_AT - 0.05, 1.08)
        return None


class ParetoPlot(TitledPlot[StudyView]):
    """The first two objectives of every completed trial, the Pareto front marked."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("Pareto front", empty="no completed trial yet", **kwargs)

    def draw(self, view: StudyView) -> str | None:
        summary = view.summary
        if not summary.multi_objective:
            return "this study has one objective"
        done = [t for t in summary.trials if t.status is RunStatus.COMPLETED and t.values is not None
                and len(t.values) >= 2 and all(math.isfinite(v) for v in t.values[:2])]
        if not done:
            return self.empty
        front = {t.number for t in summary.pareto()}
        names = [f"{name} ({direction[:3]})" for name, direction in zip(summary.objectives, summary.directions,
                                                                            strict=True)]
        plt = self.plt  # the title is the legend: a legend box would hide points in a corner
        plt.title(f"{names[0]} against {names[1]}: {FRONT_MARKER} the front ({len(front)} trials), • dominated")
        others = [t for t in done if t.number not in front]
        on_front = [t for t in done if t.number in front]
        if others:
            plt.scatter([(t.values or ())[0] for t in others], [(t.values or ())[1] for t in others],
                        marker=COMPLETED_MARKER, color=DIM_COLOR)
        plt.scatter([(t.values or ())[0] for t in on_front], [(t.values or ())[1] for t in on_front],
                    marker=FRONT_MARKER, color="red+")
        plt.xlabel(names[0])
        plt.ylabel(names[1])
        return None
