"""The study views (`tuner-tui watch`, v on the sweeps screen) on studies made by plain Optuna: every
view shows what it should, failed and running trials and trials without parameters break nothing,
the picker lists the storage's studies, and a storage or study that cannot be read is one line."""

from __future__ import annotations

import io
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Label, Static

from tests.optuna_studies import MULTI, SINGLE, add_trials, single_objective
from tests.study_views_support import NOW, built_studies, copy_studies, shown_text  # noqa: F401 (a fixture)
from tests.support import SIZE, make_app, run_pilot, wait_until
from tuner_tui.app.components.help_screen import HelpScreen
from tuner_tui.app.components.study_picker import StudyPickerScreen
from tuner_tui.app.components.study_plots import (
    ImportancePlot,
    LearningCurvesPlot,
    ParallelCoordinatesPlot,
    ParetoPlot,
)
from tuner_tui.app.components.study_screen import VIEWS, StudyScreen
from tuner_tui.app.components.sweep_plots import ParamPlot
from tuner_tui.app.components.sweep_screen import SweepScreen
from tuner_tui.app.components.trial_detail import TrialDetailScreen
from tuner_tui.app.parallel_coordinates import parallel_coordinates
from tuner_tui.app.study_reading import StudyReader
from tuner_tui.app.watch_app import WatchApp
from tuner_tui.engine.events import RunStatus
from tuner_tui.runs.store import ResultsStore
from tuner_tui.sweeps.summary import MIN_IMPORTANCE_TRIALS

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS = ("x", "lr", "momentum", "layers", "units", "batch", "activation", "width", "bias", "decay")


@pytest.fixture
def url(tmp_path: Path, built_studies: Path) -> str:  # noqa: F811 (the fixture)
    return f"sqlite:///{copy_studies(built_studies, tmp_path)}"


async def study_screen(pilot: Pilot) -> StudyScreen:
    """The study screen, once it has read its study."""
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, StudyScreen) and pilot.app.screen.view is not None,
                     what="the study to be read")
    screen = pilot.app.screen
    assert isinstance(screen, StudyScreen)
    return screen


async def show(pilot: Pilot, key: str, view: str) -> StudyScreen:
    screen = await study_screen(pilot)
    await pilot.press(key)
    await wait_until(pilot, lambda: screen.current_view == view, what=f"the {view} view")
    await pilot.pause()
    return screen


def text_of(renderable: object) -> str:
    """A Rich renderable as plain text."""
    buffer = io.StringIO()
    Console(width=120, file=buffer).print(renderable)
    return buffer.getvalue()


def test_the_trials_table_shows_every_trial_with_its_state_values_duration_and_params(url: str) -> None:
    async def scenario(pilot: Pilot) -> None:
        screen = await study_screen(pilot)
        table = screen.trials_table
        assert [r.number for r in table.ordered()] == list(range(11, -1, -1))
        assert {t.state for t in table.ordered()} == {"completed", "pruned", "failed", "running"}
        titles = [str(column.label).strip() for column in table.columns.values()]
        assert titles[1:5] == ["trial", "state", "value", "duration"] and titles[5:] == list(PARAMS)
        assert table.best == {str(screen.view.summary.best().number)}
        row = [str(cell) for cell in table.get_row("0")]
        assert row[1:5] == ["0", "completed", "5.585", "5.0 s"]
        assert [str(cell) for cell in table.get_row("11")][4] == ""  # running: no duration yet
        assert "12 trials · 8 completed · 2 pruned · 1 failed · 1 running · best #6" in screen.status_text()

    run_pilot(WatchApp(url, SINGLE), scenario)


def test_enter_opens_a_trials_detail_with_params_values_user_attributes_and_intermediate_values(url: str) -> None:
    async def scenario(pilot: Pilot) -> None:
        screen = await study_screen(pilot)
        screen.trials_table.move_cursor(row=screen.trials_table.get_row_index("6"))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, TrialDetailScreen), what="the trial's detail")
        detail = pilot.app.screen
        assert isinstance(detail, TrialDetailScreen) and detail.trial.number == 6
        text = text_of(detail.query_one("#trial-detail-text", Static).content)
        for expected in ("state", "completed", "duration", "11.0 s", "value", "0.9398", "activation", "relu",
                         "decay", "note", "trial 6", "tags", "step 0", "step 3"):
            assert expected in text, expected
        await pilot.press("escape")
        await wait_until(pilot, lambda: pilot.app.screen is screen, what="the study again")

    run_pilot(WatchApp(url, SINGLE), scenario)


def test_learning_curves_draw_every_kind_of_trial_with_its_own_marker(url: str) -> None:
    async def scenario(pilot: Pilot) -> None:
        screen = await show(pilot, "l", "curves")
        text = shown_text(screen.query_one(LearningCurvesPlot))
        assert "value by step: * best #6, + running, ⢕ completed, · pruned or failed" in text
        frame = text.split("┐", 1)[1]
        assert "*" in frame and "+" in frame and "·" in frame

    run_pilot(WatchApp(url, SINGLE), scenario)


def test_importance_is_a_bar_per_parameter_most_important_first(url: str) -> None:
    async def scenario(pilot: Pilot) -> None:
        screen = await show(pilot, "i", "importance")
        importances = screen.view.importances
        assert importances is not None and set(importances) == set(PARAMS)
        text = shown_text(screen.query_one(ImportancePlot))
        assert "PED-ANOVA, 8 completed trials" in text
        ranked = sorted(importances, key=importances.__getitem__, reverse=True)
        rows = [line.split("┤")[0].strip() for line in text.splitlines() if "┤" in line]
        assert rows == ranked

    run_pilot(WatchApp(url, SINGLE), scenario)


def test_importance_says_how_many_completed_trials_it_needs(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'few.sqlite3'}"
    study = optuna.create_study(study_name="few", storage=storage, sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)

    async def scenario(pilot: Pilot) -> None:
        screen = await show(pilot, "i", "importance")
        assert screen.view.importances is None
        text = shown_text(screen.query_one(ImportancePlot))
        assert f"needs {MIN_IMPORTANCE_TRIALS} completed trials (3 so far)" in text

    run_pilot(WatchApp(storage, "few"), scenario)


def test_importances_are_computed_again_only_when_the_completed_trials_change(url: str) -> None:
    reader = StudyReader(url, SINGLE)
    first = reader.read().importances
    assert first is not None and reader.read().importances is first
    add_trials(url, SINGLE, 2)
    again = reader.read()
    assert again.completed == 10 and again.importances is not first


def test_parallel_coordinates_place_log_int_and_categorical_params_and_mark_the_best(url: str) -> None:
    summary = StudyReader(url, SINGLE).read().summary
    chart = parallel_coordinates(summary, top=3)
    assert [axis.title for axis in chart.axes] == [*PARAMS, "value"]
    assert len(chart.lines) == 8 and chart.left_out == 0  # the completed trials
    assert {line.number for line in chart.lines if line.top} == {t.number for t in summary.top(3)}
    by_number = {t.number: t for t in summary.trials}
    for line in chart.lines:
        assert all(0.0 <= p <= 1.0 for p in line.positions)
        lr = by_number[line.number].params["lr"]
        assert line.positions[1] == pytest.approx((math.log10(lr) + 4) / 3)  # lr: log, 1e-4..1e-1
    labels = {axis.title: [label for _, label in axis.labels] for axis in chart.axes}
    assert labels["decay"] == ["None", "0.01", "auto"] and labels["bias"] == ["True", "False"]
    assert labels["width"] == ["32", "64", "128"] and labels["lr"] == ["1e-04", "0.1"]
    best = summary.best()
    assert next(line for line in chart.lines if line.number == best.number).positions[-1] == 0.0  # minimized


def test_parallel_coordinates_view_draws_the_axes_and_says_which_are_log(url: str) -> None:
    async def scenario(pilot: Pilot) -> None:
        screen = await show(pilot, "c", "coords")
        text = shown_text(screen.query_one(ParallelCoordinatesPlot))
        assert "8 completed trials; log axes: lr, batch" in text
        assert "relu" in text and "tanh" in text and "value" in text

    run_pilot(WatchApp(url, SINGLE), scenario)


def test_the_slice_cycles_through_every_parameter(url: str) -> None:
    async def scenario(pilot: Pilot) -> None:
        screen = await show(pilot, "s", "slice")
        plot = screen.query_one(ParamPlot)
        seen = [plot.param]
        for _ in PARAMS:
            await pilot.press("p")
            seen.append(plot.param)
        assert seen == [*PARAMS, PARAMS[0]]
        assert "x vs value (p: next)" in shown_text(plot)

    run_pilot(WatchApp(url, SINGLE), scenario)


def test_the_pareto_view_marks_the_front_and_lists_its_trials(url: str) -> None:
    async def scenario(pilot: Pilot) -> None:
        screen = await show(pilot, "f", "pareto")
        summary = screen.view.summary
        front = [t.number for t in summary.pareto()]
        assert front and [t.number for t in screen.front_table.ordered()] == front
        titles = [str(column.label).strip() for column in screen.front_table.columns.values()]
        assert titles[1:4] == ["trial", "accuracy", "seconds"]
        text = shown_text(screen.query_one(ParetoPlot))
        assert f"* the front ({len(front)} trials), • dominated" in text
        points = text.split("┐", 1)[1]
        assert points.count("*") == len(front) and points.count("•") == 8 - len(front)

    run_pilot(WatchApp(url, MULTI), scenario)


def test_a_single_objective_study_has_no_pareto_key(url: str) -> None:
    async def scenario(pilot: Pilot) -> None:
        screen = await study_screen(pilot)
        await pilot.press("f")
        await pilot.pause()
        assert screen.current_view == "trials"
        assert not pilot.app.active_bindings.get("f")

    run_pilot(WatchApp(url, SINGLE), scenario)


def test_every_view_copes_with_trials_without_params_failed_and_running_ones(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'odd.sqlite3'}"
    study = optuna.create_study(study_name="odd", storage=storage)
    study.tell(study.ask(), state=TrialState.FAIL)  # no params, no value
    study.tell(study.ask(), 1.5)  # no params
    study.ask()  # running, nothing reported
    running = study.ask()
    running.suggest_categorical("c", [None, 1, 2.5, True])
    running.report(0.5, 3)

    async def scenario(pilot: Pilot) -> None:
        screen = await study_screen(pilot)
        assert len(screen.trials_table.ordered()) == 4
        for key, view in zip("tlicsp", (*VIEWS[:5], "slice"), strict=True):
            await pilot.press(key)
            await wait_until(pilot, lambda view=view: screen.current_view == view)
            await pilot.pause()
        for plot in screen.query("PlotextPlot"):
            assert "cannot draw" not in shown_text(plot)
        await pilot.press("t", "enter")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, TrialDetailScreen))

    run_pilot(WatchApp(storage, "odd"), scenario)


def test_new_trials_show_up_while_the_study_runs(url: str) -> None:
    async def scenario(pilot: Pilot) -> None:
        screen = await study_screen(pilot)
        assert len(screen.trials_table.ordered()) == 12
        add_trials(url, SINGLE, 3)
        await wait_until(pilot, lambda: len(screen.trials_table.ordered()) == 15, timeout=30, what="the new trials")

    run_pilot(WatchApp(url, SINGLE), scenario)


def test_the_picker_lists_every_study_and_enter_opens_one(tmp_path: Path, built_studies: Path) -> None:  # noqa: F811
    path = copy_studies(built_studies, tmp_path)
    single_objective(f"sqlite:///{path}", name="third")

    async def scenario(pilot: Pilot) -> None:
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, StudyPickerScreen)
                         and pilot.app.screen.table.row_count == 3, what="the studies")
        picker = pilot.app.screen
        assert isinstance(picker, StudyPickerScreen)
        rows = {key: [str(cell) for cell in picker.table.get_row(key)] for key in (MULTI, SINGLE, "third")}
        assert rows[MULTI][1:5] == [MULTI, "maximize, minimize", "9", "0.5813"]
        assert rows[SINGLE][1:7] == [SINGLE, "minimize", "12", "0.9398", "49 min 00 s ago",
                                     "8 complete · 2 pruned · 1 fail · 1 running"]
        picker.table.move_cursor(row=picker.table.get_row_index(SINGLE))
        await pilot.press("enter")
        screen = await study_screen(pilot)
        assert screen.reader.location.name == SINGLE
        await pilot.press("escape")
        await wait_until(pilot, lambda: pilot.app.screen is picker, what="the picker again")

    run_pilot(WatchApp(f"sqlite:///{path}", clock=lambda: NOW), scenario)


def test_a_storage_of_one_study_opens_it_straight_away(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'one.sqlite3'}"
    single_objective(storage)

    async def scenario(pilot: Pilot) -> None:
        screen = await study_screen(pilot)
        assert screen.reader.location.name == SINGLE

    run_pilot(WatchApp(storage), scenario)


@pytest.mark.parametrize("study", [None, "nope"], ids=["picker", "study"])
def test_a_storage_or_study_that_cannot_be_read_is_one_line(tmp_path: Path, study: str | None) -> None:
    missing = f"sqlite:///{tmp_path / 'missing.sqlite3'}"

    async def scenario(pilot: Pilot) -> None:
        label = "#picker-status" if study is None else "#study-status"
        await wait_until(pilot, lambda: "missing.sqlite3" in str(pilot.app.screen.query_one(label, Label).content),
                         what="the error")
        text = str(pilot.app.screen.query_one(label, Label).content)
        assert "\n" not in text and "Traceback" not in text and text.startswith("no ")

    run_pilot(WatchApp(missing, study), scenario)


def test_the_help_lists_the_views_keys(url: str) -> None:
    async def scenario(pilot: Pilot) -> None:
        await study_screen(pilot)
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))
        text = text_of(pilot.app.screen.query_one("#help-keys", Static).content)
        for expected in ("A study's views", "Curves", "Importance", "Coords", "Slice", "Pareto", "Next param",
                         "the detail of the trial under the cursor", "Studies (watch)", "q", "Quit"):
            assert expected in text, expected

    run_pilot(WatchApp(url, SINGLE), scenario)


def test_v_on_the_sweeps_screen_opens_the_views_of_the_sweep_shown(tmp_path: Path, url: str) -> None:
    store = ResultsStore(tmp_path / "runs.sqlite3")

    async def scenario(pilot: Pilot) -> None:
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, SweepScreen) and pilot.app.screen.location)
        sweeps = pilot.app.screen
        assert isinstance(sweeps, SweepScreen)
        await pilot.press("v")
        screen = await study_screen(pilot)
        assert screen.reader.location == sweeps.location
        assert screen.current_view == "trials"
        await pilot.press("escape")
        await wait_until(pilot, lambda: pilot.app.screen is sweeps, what="the sweeps screen again")

    app = make_app(store, storage=url)

    async def open_sweeps(pilot: Pilot) -> None:
        await wait_until(pilot, lambda: pilot.app.screen.id is not None)
        await pilot.press("f4")
        await scenario(pilot)

    run_pilot(app, open_sweeps, size=SIZE)


def test_the_watch_app_and_the_app_import_neither_torch_nor_optuna() -> None:
    """Optuna loads with the first read, off the UI thread; torch never."""
    code = textwrap.dedent("""
        import sys
        import tuner_tui.app.watch_app
        import tuner_tui.app.app
        loaded = [name for name in ("torch", "optuna") if name in sys.modules]
        assert not loaded, f"the app's modules imported {loaded}"
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=180, check=False)
    assert result.returncode == 0, result.stderr


def test_running_trials_are_shown_running_not_interrupted(url: str) -> None:
    summary = StudyReader(url, SINGLE).read().summary
    assert [t.number for t in summary.trials if t.status is RunStatus.RUNNING] == [11]
