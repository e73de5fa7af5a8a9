"""Reading any Optuna study for the study views: its summary, its parameters as the sweep screen's
plots take them, and its importances (computed again only when the count of completed trials changes).

Read-only: the study is opened with `load_study`, which never writes. An SQLite file in rollback-journal
mode is read from an in-memory copy taken when it is opened, so such a study is opened again at each
read; any other storage stays open and sees new trials as they come.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuner_tui.app.sweep_reading import SweepView, axis_kinds
from tuner_tui.engine.events import RunStatus
from tuner_tui.sweeps.locations import SweepLocation

if TYPE_CHECKING:
    import optuna

    from tuner_tui.sweeps.summary import SweepSummary


@dataclass(frozen=True)
class StudyView:
    """A study as read once: `sweep` for the plots shared with the sweep screen, and the importances
    (None until there are enough completed trials)."""

    sweep: SweepView
    importances: Mapping[str, float] | None

    @property
    def summary(self) -> SweepSummary:
        return self.sweep.summary

    @property
    def completed(self) -> int:
        return self.summary.count(RunStatus.COMPLETED)


class StudyReader:
    """Reads one study again and again. Use from one thread at a time."""

    def __init__(self, storage_url: str, name: str) -> None:
        self.location = SweepLocation(name, storage_url)
        self._study: optuna.Study | None = None
        self._importances: Mapping[str, float] | None = None
        self._importances_at = -1  # the count of completed trials they were computed for

    def read(self) -> StudyView:
        """The study now; StudyError (one line) when it cannot be read."""
        from tuner_tui.sweeps.study import load_study
        from tuner_tui.sweeps.summary import importances, load_summary

        if self._study is None or self.location.storage.startswith("sqlite:///"):
            self._study = load_study(self.location.name, self.location.storage)
        summary = load_summary(self._study)
        kinds, choices = axis_kinds(summary.axes)
        completed = summary.count(RunStatus.COMPLETED)
        if completed != self._importances_at:
            self._importances = importances(self._study)
            self._importances_at = completed
        return StudyView(SweepView(self.location, summary, kinds, choices), self._importances)
