"""Parallel coordinates of a study, as numbers a plot draws: one axis per parameter and the objective
last, each scaled to 0..1, and one line per completed trial across them.

A log-scaled parameter is placed by its logarithm, a categorical one at its choice's index; the
best `top` trials are told apart from the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner_tui.engine.events import RunStatus

if TYPE_CHECKING:
    from tuner_tui.sweeps.summary import ParamAxis, SweepSummary, TrialRow

TOP_LINES = 20


@dataclass(frozen=True)
class CoordinateAxis:
    """One vertical axis: its title and labels at positions on 0..1 (ends, or every choice)."""

    title: str
    labels: tuple[tuple[float, str], ...]


@dataclass(frozen=True)
class CoordinateLine:
    """A trial across the axes: its number, its position on each axis, and whether it is among the best."""

    number: int
    positions: tuple[float, ...]
    top: bool


@dataclass(frozen=True)
class ParallelCoordinates:
    axes: tuple[CoordinateAxis, ...]
    lines: tuple[CoordinateLine, ...]
    left_out: int  # completed trials without every parameter (a conditional space)


def value_text(value: Any) -> str:
    """A value as an axis label, in five characters when it is a number (`0.94`, `1e-04`)."""
    if not isinstance(value, float):
        return str(value)
    text = f"{value:.3g}"
    return text if len(text) <= 5 else f"{value:.0e}"


class _Scale:
    """Where a parameter's values go on 0..1."""

    def __init__(self, axis: ParamAxis, seen: Sequence[Any]) -> None:
        self.axis = axis
        self.order: tuple[Any, ...] | None = None
        if axis.choices is not None or any(not _is_number(v) for v in seen):
            order = list(axis.choices or ()) + [v for v in seen if v not in (axis.choices or ())]
            self.order = tuple(dict.fromkeys(order))
            return
        numbers = [float(v) for v in seen]
        low = axis.low if axis.low is not None else min(numbers, default=0.0)
        high = axis.high if axis.high is not None else max(numbers, default=1.0)
        self.low, self.high = self._raw(low), self._raw(high)

    def _raw(self, value: float) -> float:
        return math.log10(value) if self.axis.log and value > 0 else float(value)

    def position(self, value: Any) -> float:
        if self.order is not None:
            index = next(i for i, choice in enumerate(self.order) if _same(choice, value))
            return 0.5 if len(self.order) == 1 else index / (len(self.order) - 1)
        span = self.high - self.low
        return 0.5 if span <= 0 else min(1.0, max(0.0, (self._raw(float(value)) - self.low) / span))

    def coordinate_axis(self) -> CoordinateAxis:
        if self.order is not None:
            return CoordinateAxis(self.axis.name, tuple((self.position(v), value_text(v)) for v in self.order))
        ends = (10**self.low, 10**self.high) if self.axis.log else (self.low, self.high)
        return CoordinateAxis(self.axis.name, ((0.0, value_text(ends[0])), (1.0, value_text(ends[1]))))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type: a choice of True is not the choice 1."""
    return type(a) is type(b) and a == b


def parallel_coordinates(summary: SweepSummary, top: int = TOP_LINES) -> ParallelCoordinates:
    """The axes (parameters, then the first objective) and a line for each completed trial that has
    every parameter; the best `top` trials are marked."""
    done = [t for t in summary.trials if t.status is RunStatus.COMPLETED and t.value is not None
            and math.isfinite(t.value)]
    names = [axis.name for axis in summary.axes]
    whole = [t for t in done if all(name in t.params for name in names)]
    scales = [_Scale(axis, [t.params[axis.name] for t in whole]) for axis in summary.axes]
    values = [float(t.value) for t in whole if t.value is not None]
    low, high = min(values, default=0.0), max(values, default=1.0)
    objective = CoordinateAxis(summary.objective, ((0.0, value_text(low)), (1.0, value_text(high))))
    best = {t.number for t in summary.top(top)}

    def line(trial: TrialRow) -> CoordinateLine:
        value = float(trial.value or 0.0)
        positions = [scale.position(trial.params[scale.axis.name]) for scale in scales]
        positions.append(0.5 if high <= low else (value - low) / (high - low))
        return CoordinateLine(trial.number, tuple(positions), trial.number in best)

    return ParallelCoordinates(
        (*(scale.coordinate_axis() for scale in scales), objective),
        tuple(line(t) for t in sorted(whole, key=lambda t: t.number)),
        len(done) - len(whole),
    )
