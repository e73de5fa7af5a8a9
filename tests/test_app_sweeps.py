"""The sweeps screen (F4), driven with Textual's pilot: attaching to a sweep (scripted, or started
headless outside the app), a sweep started and stopped from the screen with the real runner on a
tiny Fashion-MNIST, Enter on a trial, loading the best config, the spec form's validation, and the
CLI's way into the app (`tuner-tui sweep SPEC`).

No timing is asserted; every wait has a timeout that fails loudly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Label, Select

from tests import support
from tests.fake_runner import ScriptedRunner, completed_run_events
from tests.support import run_on_screen, wait_until
from tests.sweep_script import SCRIPTED_NAME, run_uid, write_scripted_sweep, write_tiny_spec
from tuner_tui.app.app import TunerApp
from tuner_tui.app.components.confirm import ConfirmScreen
from tuner_tui.app.components.run_detail import RunDetailScreen
from tuner_tui.app.components.spec_form import SpecFormScreen
from tuner_tui.app.components.sweep_plots import ParamPlot, ladder_text
from tuner_tui.app.components.sweep_screen import LIST_EVERY, SweepScreen
from tuner_tui.app.components.tuning_screen import TuningScreen
from tuner_tui.cli import main
from tuner_tui.engine.events import RunStatus
from tuner_tui.runs.child_commands import SweepLaunch
from tuner_tui.runs.presets import load_preset
from tuner_tui.runs.store import ResultsStore
from tuner_tui.sweeps.spec import load_spec, user_specs_dir

SWEEP_TIMEOUT_S = 600.0  # real sweeps on a loaded 2-core machine: generous, never asserted


@pytest.fixture
def store_path(tiny_env: dict[str, str]) -> Path:
    return Path(tiny_env["TUNER_TUI_STORE"])


@pytest.fixture
def spec_path(tiny_env: dict[str, str]) -> Path:
    return write_tiny_spec(user_specs_dir(), trials=3)


def make_app(store: ResultsStore, **kwargs) -> TunerApp:
    return support.make_app(store, runner=ScriptedRunner(completed_run_events(load_preset("fmnist_quick").config)),
                            **kwargs)


def run(app: TunerApp, scenario: Callable[[Pilot, SweepScreen], Awaitable[None]], *, open_screen: bool = True) -> None:
    """Run `scenario` on the sweeps screen (F4 from the tuning screen; open_screen=False: the app opens there)."""
    run_on_screen(app, SweepScreen, scenario, key="f4" if open_screen else None)


def cells(screen: SweepScreen, column: str) -> list[str]:
    table = screen.table
    return [str(table.get_cell(row.key, column)) for row in table.ordered_rows]


def label_text(screen, selector: str) -> str:
    return str(screen.query_one(selector, Label).render())


# --- attaching to a sweep -----------------------------------------------------------------------


def test_the_screen_attaches_to_a_sweep_it_did_not_start_and_shows_its_trials(store_path, spec_path):
    write_scripted_sweep(store_path, spec_path)
    with ResultsStore(store_path) as store:
        app = make_app(store)

        async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
            await wait_until(pilot, lambda: screen.view is not None and screen.table.row_count == 5)
            assert screen.location is not None and screen.location.name == SCRIPTED_NAME
            assert not screen.running  # attached, not started here
            assert cells(screen, "trial") == ["4", "3", "2", "1", "0"]
            assert cells(screen, "state") == ["running", "completed", "completed", "pruned", "completed"]
            assert cells(screen, "epoch") == ["1/2", "2/2", "2/2", "1/2", "2/2"]
            assert cells(screen, "value")[1] == "81"
            assert cells(screen, "param:batch_size") == ["20", "20", "50", "50", "20"]
            assert screen.table.best == {"3"}
            status = label_text(screen, "#sweep-status")
            assert "3 completed · 1 pruned · 1 running · best #3: 81" in status
            assert ladder_text(screen.view) == "trials reaching epoch 1 ▸ 5 · 2 ▸ 3"
            assert str(screen.query_one("#spec-select", Select).value) == "tiny"  # the spec it runs

        run(app, scenario)


def test_enter_on_a_trial_opens_its_run(store_path, spec_path):
    write_scripted_sweep(store_path, spec_path)
    with ResultsStore(store_path) as store:
        app = make_app(store)

        async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
            await wait_until(pilot, lambda: screen.table.row_count == 5)
            await pilot.press("down", "enter")  # trial 3
            await wait_until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
            record = app.screen.record
            assert (record.uid, record.sweep, record.trial) == (run_uid(3), SCRIPTED_NAME, 3)
            assert record.status == "completed"

        run(app, scenario)


def test_b_loads_the_best_trials_config_into_the_tuning_form(store_path, spec_path):
    write_scripted_sweep(store_path, spec_path)
    with ResultsStore(store_path) as store:
        app = make_app(store)

        async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
            await wait_until(pilot, lambda: screen.view is not None)
            await pilot.press("b")
            await wait_until(pilot, lambda: isinstance(app.screen, TuningScreen))
            form = app.tuning.form
            assert form.query_one("#lr", Input).value == "0.05"
            assert form.query_one("#batch_size", Input).value == "20"
            assert form.query_one("#hidden", Input).value == "16"
            state = form.state()
            assert state.config is not None and state.config.validation == 0.0  # not the sweep's 0.2, unseen
            assert any("validation share 0.2" in str(n.message) and "reset to 0" in str(n.message)
                       for n in app._notifications)

        run(app, scenario)


def test_p_plots_the_next_parameter_against_the_objective(store_path, spec_path):
    write_scripted_sweep(store_path, spec_path)
    with ResultsStore(store_path) as store:
        app = make_app(store)

        async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
            await wait_until(pilot, lambda: screen.view is not None)
            plot = screen.query_one(ParamPlot)
            assert plot.param == "lr"
            await pilot.press("p")
            assert plot.param == "batch_size"
            await pilot.press("p")
            assert plot.param == "lr"

        run(app, scenario)


def test_the_screen_follows_a_sweep_started_headless_in_another_process(store_path, spec_path, tiny_env):
    sweep = subprocess.Popen(
        [sys.executable, "-m", "tuner_tui", "sweep", str(spec_path), "--no-ui", "--trials", "3"],
        env={**os.environ, **tiny_env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        with ResultsStore(store_path) as store:
            app = make_app(store)

            async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
                def finished() -> bool:
                    screen.poll()  # the list of sweeps is read every few polls: the sweep appears once it exists
                    view = screen.view
                    return view is not None and view.summary.finished == 3

                await wait_until(pilot, finished, SWEEP_TIMEOUT_S)
                assert not screen.running
                assert screen.location is not None and screen.location.name == "tiny"
                await wait_until(pilot, lambda: screen.table.row_count == 3)
                assert set(cells(screen, "state")) <= {"completed", "pruned"}

            run(app, scenario)
    finally:
        _, errors = sweep.communicate(timeout=SWEEP_TIMEOUT_S)
    assert sweep.returncode == 0, errors


# --- starting and stopping from the screen ---------------------------------------------------------


def test_a_sweep_started_from_the_screen_runs_as_a_child_to_its_budget(store_path, spec_path):
    with ResultsStore(store_path) as store:
        app = make_app(store)

        async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
            screen.query_one("#spec-select", Select).value = "tiny"
            trials = screen.query_one("#sweep-trials", Input)
            trials.focus()
            await pilot.press(*"2")
            await pilot.press("f5")
            await wait_until(pilot, lambda: screen.running)
            await wait_until(pilot, lambda: not screen.running, SWEEP_TIMEOUT_S)
            assert screen.last_exit is not None and screen.last_exit.code == 0, screen.last_exit
            await wait_until(pilot, lambda: screen.view is not None and screen.view.summary.finished == 2)
            await wait_until(pilot, lambda: screen.table.row_count == 2)
            assert "finished · 2/2 finished" in label_text(screen, "#sweep-status")

        run(app, scenario)
        runs = store.list_runs(sweep="tiny")
    assert sorted(run.trial for run in runs) == [0, 1]
    assert all(run.status in ("completed", "pruned") and run.config.hidden == (16,) for run in runs)


def test_stop_ends_the_sweep_child_and_its_running_trials_are_stored_cancelled(store_path, spec_path):
    # `tuner-tui sweep SPEC` opens the app on the screen with the sweep started; trials of 500
    # epochs are still running when the test stops them.
    launch = SweepLaunch(str(spec_path), name="long", trials=2, overrides=("epochs=500",))
    with ResultsStore(store_path) as store:
        app = make_app(store, sweep=launch)

        async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
            assert screen.running
            await wait_until(
                pilot, lambda: screen.view is not None and screen.view.summary.count(RunStatus.RUNNING) >= 1,
                SWEEP_TIMEOUT_S,
            )
            await pilot.press("f6")
            assert "stopping…" in label_text(screen, "#sweep-status")
            await wait_until(pilot, lambda: not screen.running, SWEEP_TIMEOUT_S)
            assert screen.last_exit is not None and screen.last_exit.code == 143, screen.last_exit

        run(app, scenario, open_screen=False)
        runs = store.list_runs(sweep="long")
    assert runs and all(run.status == "cancelled" for run in runs)


def test_quitting_while_a_sweep_runs_asks_then_stops_it(store_path, spec_path):
    launch = SweepLaunch(str(spec_path), name="quit", trials=2, overrides=("epochs=500",))
    with ResultsStore(store_path) as store:
        app = make_app(store, sweep=launch)

        async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
            await wait_until(
                pilot, lambda: screen.view is not None and screen.view.summary.count(RunStatus.RUNNING) >= 1,
                SWEEP_TIMEOUT_S,
            )
            await pilot.press("ctrl+q")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "A sweep is in progress" in str(app.screen.query_one(".dialog-title", Label).render())
            await pilot.press("y")
            await wait_until(pilot, lambda: app.return_code is not None, SWEEP_TIMEOUT_S)

        run(app, scenario, open_screen=False)
        assert screen_exit(app).code == 143
        runs = store.list_runs(sweep="quit")
    assert runs and all(run.status == "cancelled" for run in runs)


def screen_exit(app: TunerApp):
    assert app.sweeps is not None and app.sweeps.last_exit is not None
    return app.sweeps.last_exit


def test_a_sweep_that_cannot_start_says_why_and_starts_no_child(store_path, spec_path):
    with ResultsStore(store_path) as store:
        app = make_app(store)

        async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
            screen.query_one("#spec-select", Select).value = "tiny"
            screen.query_one("#sweep-set", Input).value = "lr=fast"
            await pilot.press("f5")
            await pilot.pause()
            assert not screen.running
            messages = [str(n.message) for n in app._notifications]
            assert any("--set lr" in m and "fast" in m for m in messages), messages

        run(app, scenario)


# --- the spec form ------------------------------------------------------------------------------


async def set_value(pilot: Pilot, selector: str, text: str) -> None:
    field = pilot.app.screen.query_one(selector, Input)
    field.value = text
    await pilot.pause()


def test_the_spec_form_shows_each_problem_beside_its_field_and_saves_a_valid_spec(store_path, spec_path):
    with ResultsStore(store_path) as store:
        app = make_app(store)

        async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
            screen.query_one("#spec-select", Select).value = "tiny"
            await pilot.pause()
            await pilot.press("e")
            await wait_until(pilot, lambda: isinstance(app.screen, SpecFormScreen))
            form = app.screen
            assert form.query_one("#low-lr", Input).value == "0.001"
            await set_value(pilot, "#spec-name", "mine")
            await set_value(pilot, "#low-lr", "0")
            await set_value(pilot, "#search-epochs", "0")
            await set_value(pilot, "#choices-batch_size", "20 0")
            lr_error = label_text(form, "#error-lr")
            assert lr_error == "✗ log_uniform: a log range must start above 0, got 0"
            assert label_text(form, "#error-search-epochs") == "✗ must be a whole number in [1, 1000], got 0"
            assert label_text(form, "#error-batch_size") == "✗ must be a whole number in [1, 65536], got 0"
            assert form.query_one("#error-name", Label).has_class("hidden")
            await pilot.press("ctrl+s")
            assert isinstance(app.screen, SpecFormScreen)  # not saved
            assert not (user_specs_dir() / "mine.toml").exists()
            await set_value(pilot, "#low-lr", "0.0001")
            await set_value(pilot, "#search-epochs", "3")
            await set_value(pilot, "#choices-batch_size", "20 100")
            assert all(label.has_class("hidden") for label in form.query(".spec-error"))
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, SweepScreen))
            assert str(screen.query_one("#spec-select", Select).value) == "mine"

        run(app, scenario)
    saved = load_spec("mine")
    assert saved.space["lr"].values == (0.0001, 0.5)
    assert saved.space["batch_size"].values == (20, 100)
    assert saved.search.epochs == 3 and saved.base.hidden == (16,)


def test_a_shipped_spec_is_saved_under_a_new_name(store_path):
    with ResultsStore(store_path) as store:
        app = make_app(store)

        async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
            screen.query_one("#spec-select", Select).value = "fmnist_search"
            await pilot.pause()
            await pilot.press("e")
            await wait_until(pilot, lambda: isinstance(app.screen, SpecFormScreen))
            form = app.screen
            assert form.query_one("#spec-name", Input).value == "fmnist_search_mine"
            await set_value(pilot, "#spec-name", "fmnist_search")
            assert "shipped spec" in label_text(form, "#error-name")
            await set_value(pilot, "#spec-name", "fmnist_search_mine")
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, SweepScreen))

        run(app, scenario)
    assert load_spec("fmnist_search_mine").fingerprint() == load_spec("fmnist_search").fingerprint()


# --- from the command line --------------------------------------------------------------------------


def test_sweep_without_no_ui_opens_the_app_with_the_sweep_started(spec_path, monkeypatch, capsys):
    opened: list[SweepLaunch | None] = []
    monkeypatch.setattr("tuner_tui.cli.run_app", lambda args, **kwargs: opened.append(kwargs.get("sweep")) or 0)
    code = main(["sweep", str(spec_path), "--name", "mine", "--trials", "4", "--set", "epochs=1"])
    assert code == 0
    assert opened == [SweepLaunch(str(spec_path), name="mine", trials=4, overrides=("epochs=1",))]


def test_sweep_without_no_ui_refuses_a_bad_spec_before_the_app_opens(tiny_env, monkeypatch, capsys):
    opened: list[object] = []
    monkeypatch.setattr("tuner_tui.cli.run_app", lambda args, **kwargs: opened.append(kwargs) or 0)
    code = main(["sweep", "fmnist_serch"])
    assert code == 2 and not opened
    assert "unknown spec 'fmnist_serch'" in capsys.readouterr().err


def test_the_launch_runs_the_headless_command(spec_path):
    launch = SweepLaunch(str(spec_path), name="n", trials=3, overrides=("epochs=1",), data_root="/d",
                         options=("--workers", "1"))
    assert launch.argv("/s.sqlite3")[1:] == [
        "-P", "-m", "tuner_tui", "sweep", str(spec_path), "--no-ui", "--store", "/s.sqlite3", "--name", "n",
        "--trials", "3", "--set", "epochs=1", "--data-root", "/d", "--workers", "1",
    ]




# --- coming back to the screen ------------------------------------------------------------------


def test_f4_esc_f4_returns_to_the_sweep_being_watched(store_path, spec_path):
    write_scripted_sweep(store_path, spec_path)
    with ResultsStore(store_path) as store:
        app = make_app(store)

        async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
            await wait_until(pilot, lambda: screen.view is not None and screen.table.row_count == 5)
            watched = screen.location
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, TuningScreen))
            await pilot.press("f4")
            await wait_until(pilot, lambda: app.screen is screen)
            reads = screen.reads
            for _ in range(LIST_EVERY + 1):  # the list of sweeps is read again meanwhile
                screen.poll()
                await wait_until(pilot, lambda: not screen.reading)
            assert screen.reads > reads + LIST_EVERY
            assert screen.table.row_count == 5
            assert screen.location == watched

        run(app, scenario)


def test_f2_l_f4_returns_to_the_sweep_being_watched(store_path, spec_path):
    write_scripted_sweep(store_path, spec_path)
    with ResultsStore(store_path) as store:
        app = make_app(store)

        async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
            await wait_until(pilot, lambda: screen.view is not None and screen.table.row_count == 5)
            watched = screen.location
            await pilot.press("f2")
            await wait_until(pilot, lambda: type(app.screen).__name__ == "RunsScreen")
            await pilot.pause(0.2)
            await pilot.press("l")  # load a run's config into the form: back on the tuning screen
            await wait_until(pilot, lambda: isinstance(app.screen, TuningScreen))
            await pilot.press("f4")
            await wait_until(pilot, lambda: app.screen is screen)
            for _ in range(LIST_EVERY + 1):
                screen.poll()
                await wait_until(pilot, lambda: not screen.reading)
            assert screen.table.row_count == 5
            assert screen.location == watched

        run(app, scenario)


def test_a_sweep_opened_by_the_cli_is_started_once_however_often_the_screen_is_shown(store_path, spec_path):
    starts: list[SweepLaunch] = []
    with ResultsStore(store_path) as store:
        app = make_app(store, sweep=SweepLaunch("tiny", trials=1))

        async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
            screen.start = starts.append  # type: ignore[method-assign]
            for _ in range(2):
                await pilot.press("escape")
                await wait_until(pilot, lambda: isinstance(app.screen, TuningScreen))
                await pilot.press("f4")
                await wait_until(pilot, lambda: app.screen is screen)

        run(app, scenario, open_screen=False)
    assert starts == []  # started once, on opening (before the scenario replaced `start`)


def test_a_bad_journal_line_is_a_notification_not_a_crash(store_path, spec_path):
    url = write_scripted_sweep(store_path, spec_path)
    journals = store_path.parent / "sweeps" / SCRIPTED_NAME / "runs"
    journals.mkdir(parents=True)
    (journals / "node-1.jsonl").write_text('{"kind": "start", "uid": "x", "config": []}\n')
    with ResultsStore(store_path) as store:
        store.register_sweep(SCRIPTED_NAME, url, journals)
        app = make_app(store)

        async def scenario(pilot: Pilot, screen: SweepScreen) -> None:
            def warned() -> bool:
                return any("line 1" in str(n.message) for n in app._notifications)

            await wait_until(pilot, lambda: screen.view is not None and screen.table.row_count == 5)
            await wait_until(pilot, warned)

        run(app, scenario)
