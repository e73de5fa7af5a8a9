"""A sweep's plots, drawn with textual-plotext as `EpochPlot` is: the best value so far against trials,
one parameter against the objective, and the pruning ladder (how many trials reached each rung).

Each takes a `SweepView` and redraws; completed trials and pruned ones get their own markers, so
they stay apart without colour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner_tui.app.components.epoch_plot import LONE_POINT_MARKER
from tuner_tui.app.components.titled_plot import TitledPlot
from tuner_tui.app.sweep_reading import SweepView
from tuner_tui.engine.events import RunStatus

if TYPE_CHECKING:
    from tuner_tui.sweeps.summary import TrialRow

COMPLETED_MARKER = "dot"
PRUNED_MARKER = "x"
MAX_TICKS = 6
ROOM_FOR_LABEL = 12  # a plot lower than this leaves out its x-axis label: the title says what is drawn


def param_text(value: Any) -> str:
    """A parameter value as the sweep screen shows it: 4 significant digits for a float."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def whole_ticks(low: int, high: int, most: int = MAX_TICKS) -> list[int]:
    """Whole-number ticks from `low` to `high`, at most `most`, both ends included."""
    if high <= low:
        return [low]
    step = math.ceil((high - low) / (most - 1))
    ticks = list(range(low, high + 1, step))
    if ticks[-1] != high:
        ticks.append(high)
    return ticks


class BestSoFarPlot(TitledPlot[SweepView]):
    """The best completed value up to each trial (the search's progress), over every completed value."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("best so far", empty="no completed trial yet", **kwargs)

    def draw(self, view: SweepView) -> str | None:
        summary = view.summary
        curve = summary.best_so_far()
        if not curve:
            return self.empty
        plt = self.plt
        plt.title(f"best {summary.objective} so far, by trial")
        done = [t for t in summary.trials if t.status is RunStatus.COMPLETED and t.value is not None]
        plt.scatter([t.number for t in done], [t.value for t in done], marker=COMPLETED_MARKER, label="trial")
        last = max(t.number for t in summary.trials)
        if curve[-1][0] < last:  # the best so far holds up to the newest trial
            curve.append((last, curve[-1][1]))
        numbers = [n for n, _ in curve]
        marker = LONE_POINT_MARKER if len(curve) == 1 else "braille"
        plt.plot(numbers, [v for _, v in curve], marker=marker, label="best")
        ticks = whole_ticks(0, max(last, 1))
        plt.xticks([float(t) for t in ticks], [str(t) for t in ticks])
        plt.xlim(-0.2, max(last, 1) + 0.2)
        _pad_flat(plt, [t.value for t in done if t.value is not None])
        return None


class ParamPlot(TitledPlot[SweepView]):
    """One parameter against the objective: completed trials by their value, pruned ones by their
    last reported value. A log-scale parameter is drawn on a log axis; a choice by its choices."""

    def __init__(self, **kwargs: Any) -> None:
        self.param: str | None = None
        super().__init__("parameter vs objective", empty="no trial yet", **kwargs)

    def draw(self, view: SweepView) -> str | None:
        params = list(view.kinds) or sorted({k for t in view.summary.trials for k in t.params})
        if not params:
            return self.empty
        if self.param not in params:
            self.param = params[0]
        param = self.param
        trials = [t for t in view.summary.trials if param in t.params and t.value is not None]
        if not trials:
            return self.empty
        plt = self.plt
        plt.title(f"{param} vs {view.summary.objective} (p: next)")
        axis = ParamAxis.of(param, view, trials)
        for status, marker, label in (
            (RunStatus.COMPLETED, COMPLETED_MARKER, "completed"), (RunStatus.PRUNED, PRUNED_MARKER, "pruned"),
        ):
            chosen = [t for t in trials if t.status is status]
            if chosen:
                plt.scatter([axis.x(t.params[param]) for t in chosen], [t.value for t in chosen], marker=marker,
                            label=label)
        ticks, labels = axis.ticks()
        plt.xticks(ticks, labels)
        plt.xlim(*axis.limits())
        _pad_flat(plt, [t.value for t in trials if t.value is not None])
        return None

    def next_param(self, view: SweepView | None) -> None:
        """Plot the next parameter of the space."""
        params = list(view.kinds) if view is not None else []
        if params:
            index = params.index(self.param) + 1 if self.param in params else 0
            self.param = params[index % len(params)]
            self.show(view)


class LadderPlot(TitledPlot[SweepView]):
    """How many trials reached each rung (epoch): a pruner at work leaves fewer at each step."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("trials per rung", empty="no epoch reported yet", **kwargs)

    def draw(self, view: SweepView) -> str | None:
        ladder = epochs_ladder(view)
        if not ladder:
            return self.empty
        plt = self.plt
        plt.title("trials reaching each epoch")
        plt.bar([str(rung) for rung in ladder], list(ladder.values()), width=0.5)
        ticks = whole_ticks(0, max(ladder.values()))
        plt.yticks([float(t) for t in ticks], [str(t) for t in ticks])
        if self.size.height >= ROOM_FOR_LABEL:
            plt.xlabel("epoch")
        return None


def epochs_ladder(view: SweepView) -> dict[int, int]:
    """Epoch → trials that reached it: the pruner's rungs, and the last epoch, which the trials that
    completed reached (it is told to the study, not reported to the pruner)."""
    ladder = dict(view.summary.ladder())
    completed = view.summary.count(RunStatus.COMPLETED)
    if view.epochs and completed and view.epochs not in ladder:
        ladder[view.epochs] = completed
    return dict(sorted(ladder.items()))


def ladder_text(view: SweepView) -> str:
    """The ladder in one line: `trials reaching epoch 1 ▸ 12 · 2 ▸ 6 · 3 ▸ 2`."""
    ladder = epochs_ladder(view)
    if not ladder:
        return "trials reaching each epoch: none reported yet"
    return "trials reaching epoch " + " · ".join(f"{epoch} ▸ {count}" for epoch, count in ladder.items())


@dataclass(frozen=True)
class ParamAxis:
    """Where a parameter's values go on the x axis: a choice at its index in the spec's order, a
    log-scale value at its logarithm (plotext's own log axis fails on a lone point), else as is."""

    order: tuple[Any, ...] | None  # a choice's values, in the spec's order (then any others seen)
    log: bool
    low: float
    high: float

    @classmethod
    def of(cls, param: str, view: SweepView, trials: Sequence[TrialRow]) -> ParamAxis:
        choices = view.choices.get(param, ())
        if choices:
            order = list(choices) + [t.params[param] for t in trials if t.params[param] not in choices]
            order = list(dict.fromkeys(order))
            return cls(tuple(order), False, 0.0, float(len(order) - 1))
        log = view.kinds.get(param, "").startswith("log")
        axis = cls(None, log, 0.0, 0.0)
        xs = [axis.x(t.params[param]) for t in trials]
        return cls(None, log, min(xs), max(xs))

    def x(self, value: Any) -> float:
        if self.order is not None:
            return float(self.order.index(value))
        return math.log10(value) if self.log else float(value)

    def limits(self) -> tuple[float, float]:
        pad = 0.5 if self.order is not None or self.high - self.low < 1e-12 else (self.high - self.low) * 0.05
        return self.low - pad, self.high + pad

    def ticks(self) -> tuple[list[float], list[str]]:
        if self.order is not None:
            return [float(i) for i in range(len(self.order))], [param_text(v) for v in self.order]
        count = 1 if self.high - self.low < 1e-12 else MAX_TICKS - 2
        ticks = [self.low + i * (self.high - self.low) / max(1, count - 1) for i in range(count)]
        return ticks, [param_text(10**t if self.log else t) for t in ticks]


def _pad_flat(plt: Any, values: Sequence[float]) -> None:
    """A flat set of values still needs a scale."""
    if values and max(values) - min(values) < 1e-9:
        plt.ylim(values[0] - 1, values[0] + 1)
