"""Reading sweeps for the sweep screen: which sweeps there are, and what one of them looks like now.

The screen attaches to any sweep, started from the app, headless in another terminal or as a SLURM
job, by reading what every sweep writes anyway: the study in its Optuna storage, and the runs in
the results store. No server, no port. Optuna is imported here only when a sweep is first read
(off the UI thread), so the app's first screen does not wait for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuner_tui.runs.store import JournalImport, ResultsStore
from tuner_tui.sweeps.locations import SweepLocation

if TYPE_CHECKING:
    import optuna

    from tuner_tui.sweeps.summary import ParamAxis, SweepSummary


@dataclass(frozen=True)
class SweepView:
    """A sweep as read once: its summary, and from its spec the space's kinds and the most epochs."""

    location: SweepLocation
    summary: SweepSummary
    kinds: Mapping[str, str] = field(default_factory=dict)  # field → choice | uniform | log_uniform | int | log_int
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # a choice field's values, in spec order
    epochs: int | None = None  # the most any trial trains


class SweepReader:
    """Reads one sweep again and again, keeping its study open between reads. Use from one thread at a time."""

    def __init__(self, location: SweepLocation) -> None:
        self.location = location
        self._study: optuna.Study | None = None

    def read(self) -> SweepView:
        """The sweep now; StudyError while there is no such study (yet)."""
        from tuner_tui.sweeps.study import load_study, optuna_value, spec_of
        from tuner_tui.sweeps.summary import load_summary

        if self._study is None or self.location.storage.startswith("sqlite"):
            # a read-only SQLite study is a copy taken between two commits: take a fresh one each read
            self._study = load_study(self.location.name, self.location.storage)
        summary = load_summary(self._study)
        spec = spec_of(self._study) or {}
        space = spec.get("space", {})
        kinds: dict[str, str] = {}
        choices: dict[str, tuple[Any, ...]] = {}
        for name, entry in space.items() if isinstance(space, Mapping) else ():
            if isinstance(entry, Mapping) and entry:
                kind = next(k for k in entry if k != "step")
                kinds[name] = kind
                if kind == "choice":
                    choices[name] = tuple(optuna_value(v) for v in entry[kind])
        if not kinds:  # a study not made by tuner-tui: its parameters as its distributions define them
            kinds, choices = axis_kinds(summary.axes)
        search = spec.get("search", {})
        epochs = search.get("epochs") if isinstance(search, Mapping) else None
        return SweepView(self.location, summary, kinds, choices, epochs if isinstance(epochs, int) else None)


def axis_kinds(axes: tuple[ParamAxis, ...]) -> tuple[dict[str, str], dict[str, tuple[Any, ...]]]:
    """Each parameter's kind as a spec names them (choice, log_uniform, uniform) and the choices of
    the categorical ones, from the study's own distributions."""
    kinds: dict[str, str] = {}
    choices: dict[str, tuple[Any, ...]] = {}
    for axis in axes:
        if axis.choices is not None:
            kinds[axis.name] = "choice"
            choices[axis.name] = axis.choices
        else:
            kinds[axis.name] = "log_uniform" if axis.log else "uniform"
    return kinds, choices


def import_cluster_journals(store: ResultsStore) -> JournalImport:
    """Bring in the runs that cluster workers journaled since the last read, if any."""
    if not store.read_only and store.pending_journal_bytes():
        return store.import_journals()
    return JournalImport()

