"""The runs browser's text filter: words and `key:value` terms, every one of which must match.

    status:completed dataset:cifar10 preset:exp lr:0.001..0.01 tag:best cifar

- `status:`, `dataset:`, `preset:` (the run's name), `tag:` match the start of that field, any case;
- `lr:A..B` keeps learning rates in [A, B] (either end may be left out), `lr:A` exactly A, and
  `lr>A`, `lr>=A`, `lr<B`, `lr<=B` work too;
- a bare word must appear in the run's name, status, dataset, tags or note.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from tuner_tui.runs.records import RunRecord, dataset_of, number_of, what_trains

TEXT_KEYS = ("status", "dataset", "preset", "tag")
_COMPARISON = re.compile(r"^lr(<=|>=|<|>)(.+)$")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
FILTER_HELP = "status:… dataset:… preset:… tag:… lr:0.001..0.01 lr>0.01 and words"


class FilterError(ValueError):
    """A filter term that cannot be read; `str()` is one line."""


@dataclass(frozen=True)
class RunFilter:
    """A parsed filter: `matches(record)` says whether a run passes every term."""

    terms: tuple[Callable[[RunRecord], bool], ...] = ()
    text: str = ""

    def matches(self, record: RunRecord) -> bool:
        return all(term(record) for term in self.terms)

    @property
    def empty(self) -> bool:
        return not self.terms


def parse_filter(text: str) -> RunFilter:
    """Read a filter; FilterError names the term that cannot be read."""
    terms = [_term(word) for word in text.split()]
    return RunFilter(tuple(terms), text.strip())


def _term(word: str) -> Callable[[RunRecord], bool]:
    comparison = _COMPARISON.match(word)
    if comparison:
        op, bound = _OPERATORS[comparison.group(1)], _number(comparison.group(2), word)
        return lambda record: (lr := number_of(record, "lr")) is not None and op(lr, bound)
    key, sep, value = word.partition(":")
    if not sep:
        needle = word.casefold()
        return lambda record: any(needle in text.casefold() for text in _words(record))
    key = key.casefold()
    if key == "lr":
        return _lr_range(value, word)
    if key not in TEXT_KEYS:
        raise FilterError(f"{word}: unknown key {key!r}; use {', '.join((*TEXT_KEYS, 'lr'))}")
    if not value:
        raise FilterError(f"{word}: give a value after {key}:")
    prefix = value.casefold()
    return lambda record: any(text.casefold().startswith(prefix) for text in _field(record, key))


def _lr_range(value: str, word: str) -> Callable[[RunRecord], bool]:
    low_text, dots, high_text = value.partition("..")
    if not dots:
        exact = _number(value, word)
        return lambda record: (lr := number_of(record, "lr")) is not None and math.isclose(lr, exact, rel_tol=1e-9)
    low = _number(low_text, word) if low_text else -math.inf
    high = _number(high_text, word) if high_text else math.inf
    if low > high:
        raise FilterError(f"{word}: the range is empty ({low:g} > {high:g})")
    return lambda record: (lr := number_of(record, "lr")) is not None and low <= lr <= high


def _number(text: str, word: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FilterError(f"{word}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise FilterError(f"{word}: {text!r} is not a finite number")
    return value


def _field(record: RunRecord, key: str) -> tuple[str, ...]:
    if key == "status":
        return (record.status,)
    if key == "dataset":
        return (dataset_of(record),)
    if key == "preset":
        return (record.label,)
    return record.tags


def _words(record: RunRecord) -> tuple[str, ...]:
    return (record.label, record.status, dataset_of(record), what_trains(record), *record.tags, record.note)
