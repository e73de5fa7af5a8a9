"""Plain-Optuna studies for the study views' tests, with every trial's times fixed (so durations and
"last change" read the same on every run), and the text a widget shows."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from textual.widget import Widget

from tests.optuna_studies import single_objective, two_objectives

STARTED = "2026-01-01 12:00:00"  # trial n starts n minutes after, and takes 5 + n seconds
NOW = datetime(2026, 1, 1, 13, 0).timestamp()  # a fixed "now" for the picker's "last change", an hour on


def fix_times(path: Path) -> None:
    """Give every trial of the SQLite file at `path` a fixed start and finish."""
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE trials SET datetime_start = datetime(?, '+' || (number * 60) || ' seconds'),"
            " datetime_complete = CASE WHEN datetime_complete IS NULL THEN NULL"
            " ELSE datetime(?, '+' || (number * 61 + 5) || ' seconds') END", (STARTED, STARTED),
        )
    connection.close()


def plain_studies(folder: Path, *, name: str = "studies.sqlite3") -> Path:
    """An SQLite file in `folder` holding the single-objective and the two-objective plain studies."""
    path = folder / name
    single_objective(f"sqlite:///{path}")
    two_objectives(f"sqlite:///{path}")
    fix_times(path)
    return path


@pytest.fixture(scope="session")
def built_studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plain studies, built once a session (tests take copies: `copy_studies`)."""
    return plain_studies(tmp_path_factory.mktemp("plain-studies"))


def copy_studies(built: Path, folder: Path) -> Path:
    """A copy of the built studies' file in `folder`, for a test to read (or write) alone."""
    return Path(shutil.copy(built, folder / built.name))


def shown_text(widget: Widget) -> str:
    """What a shown widget draws, as plain text."""
    return str(widget.render())
