"""Snapshots of `tuner-tui watch` on plain-Optuna studies, at 80×24 (SSH) and 120×40, under NO_COLOR=1
(so the markers, not colours, must tell kinds of trials apart). The studies are seeded and their
trials' times fixed; the storage is named by a relative path so no temporary folder shows. Update
with `python -m pytest tests/test_app_study_snapshots.py --snapshot-update` and look at the report."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets.data_table import ColumnKey

from tests.optuna_studies import MULTI, SINGLE
from tests.study_views_support import NOW, built_studies, copy_studies  # noqa: F401 (a fixture)
from tests.support import settle
from tuner_tui.app.components.study_picker import StudyPickerScreen
from tuner_tui.app.components.study_screen import StudyScreen
from tuner_tui.app.components.trial_detail import TrialDetailScreen
from tuner_tui.app.watch_app import WatchApp

SIZES = pytest.mark.parametrize("terminal_size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
STORAGE = "sqlite:///studies.sqlite3"


@pytest.fixture(autouse=True)
def studies(tmp_path: Path, built_studies: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The plain studies in ./studies.sqlite3 of a temporary working folder; no colour."""
    copy_studies(built_studies, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")


def watch(study: str | None) -> WatchApp:
    app = WatchApp(STORAGE, study, clock=lambda: NOW)
    app.animation_level = "none"
    return app


def study_read(pilot: Pilot) -> bool:
    screen = pilot.app.screen
    return isinstance(screen, StudyScreen) and screen.view is not None


def on_view(key: str, view: str) -> Callable[[Pilot], Awaitable[None]]:
    """run_before: wait for the study, press `key`, wait for `view`."""

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, lambda: study_read(pilot))
        await pilot.press(key)
        await settle(pilot, lambda: pilot.app.screen.current_view == view)

    return run_before


@SIZES
def test_picker(snap_compare, terminal_size):
    async def run_before(pilot: Pilot) -> None:
        def listed() -> bool:  # and the columns' widths measured (on idle, after the rows are added)
            screen = pilot.app.screen
            column = screen.table.columns.get(ColumnKey("name")) if isinstance(screen, StudyPickerScreen) else None
            return column is not None and column.content_width == len(SINGLE)

        await settle(pilot, listed)

    assert snap_compare(watch(None), terminal_size=terminal_size, run_before=run_before)


@SIZES
@pytest.mark.parametrize(
    ("study", "key", "view"),
    [(SINGLE, "t", "trials"), (SINGLE, "l", "curves"), (SINGLE, "i", "importance"), (SINGLE, "c", "coords"),
     (SINGLE, "s", "slice"), (MULTI, "f", "pareto")],
    ids=["trials", "learning_curves", "importance", "parallel_coordinates", "slice", "pareto_front"],
)
def test_view(snap_compare, terminal_size, study, key, view):
    assert snap_compare(watch(study), terminal_size=terminal_size, run_before=on_view(key, view))


@SIZES
def test_trial_detail(snap_compare, terminal_size):
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, lambda: study_read(pilot))
        table = pilot.app.screen.trials_table
        table.move_cursor(row=table.get_row_index("10"))  # pruned: values, attributes and two steps
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(pilot.app.screen, TrialDetailScreen))

    assert snap_compare(watch(SINGLE), terminal_size=terminal_size, run_before=run_before)
