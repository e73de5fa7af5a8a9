"""The app's behaviour, driven with Textual's pilot: starting, stopping, validating, presets, quitting.

Runs go through the real runner (`tuner_tui.runs.session.prepare_and_record`) on the tiny Fashion-MNIST
written in the real IDX format (`tiny_fmnist`); downloads and the system-wide copy are switched off. No
async pytest plugin is installed, so each test drives its scenario with `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input, Label, RichLog, Select, Sparkline

from tests import support
from tests.fake_runner import ScriptedRunner, completed_run_events, in_progress_events
from tests.support import SIZE, wait_until
from tuner_tui.app.app import TunerApp
from tuner_tui.app.components.confirm import ConfirmScreen
from tuner_tui.app.components.runs_screen import RunsScreen
from tuner_tui.app.components.save_preset import SavePresetScreen
from tuner_tui.app.components.tuning_screen import TuningScreen
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import Progress
from tuner_tui.runs.presets import list_presets
from tuner_tui.runs.store import ResultsStore
from tuner_tui.runs.training_process import RunRejectedError, TrainingProcessError

pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture
def data_root(tiny_fmnist: Path) -> Path:
    """The tiny learnable Fashion-MNIST (`tiny_fmnist`), the data root of the runs here."""
    return tiny_fmnist


def small_config(root: Path, **changes) -> RunConfig:
    values = dict(dataset="fmnist", hidden=(16,), batch_size=20, epochs=2, device="cpu", data_root=str(root))
    return RunConfig(**(values | changes))


def long_config(root: Path) -> RunConfig:
    """Hundreds of thousands of steps: a run that is still going when the test stops it."""
    return small_config(root, batch_size=1, epochs=1000)


def make_app(store: ResultsStore, config: RunConfig | None = None, **kwargs) -> TunerApp:
    return support.make_app(store, config=config, **kwargs)


async def ready(pilot: Pilot) -> None:
    """Wait until the tuning screen's form has reported and its checks have run (the dataset check
    waits for the first frame and imports torch; the layout is stable after it)."""
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, TuningScreen) and app.tuning.form_state is not None)
    await wait_until(pilot, lambda: app.tuning.dataset_checked is not None)


def log_lines(app: TunerApp) -> list[str]:
    return [line.text.rstrip() for line in app.tuning.query_one("#run-log", RichLog).lines]


def status_text(app: TunerApp) -> str:
    return str(app.tuning.query_one("#run-status", Label).render())


async def start_and_wait_for_the_end(pilot: Pilot) -> None:
    """F5 on the ready tuning screen, then wait until the run has ended (however it ended)."""
    await ready(pilot)
    await pilot.press("f5")
    await wait_until(pilot, lambda: not pilot.app.tuning.running)


def epoch_lines(app: TunerApp) -> list[str]:
    return [line for line in log_lines(app) if line.startswith("epoch ")]


async def type_into(pilot: Pilot, selector: str, text: str) -> None:
    """Focus an input, clear it with keys and type `text`, as a user would."""
    field = pilot.app.screen.query_one(selector, Input)
    field.focus()
    await pilot.press("end", *["backspace"] * len(field.value), *text)
    await pilot.pause()


def run_scenario(scenario: Callable[[], object]) -> None:
    asyncio.run(scenario())


def test_f5_runs_the_form_config_and_stores_it_as_completed(store, data_root):
    config = small_config(data_root)
    app = make_app(store, config)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await pilot.press("f5")
            await wait_until(pilot, lambda: len(epoch_lines(app)) == 2 and not app.tuning.running)

    run_scenario(scenario)
    [record] = store.list_runs()
    assert record.status == "completed"
    assert record.config == config
    assert [e.epoch for e in record.epochs] == [1, 2]
    assert record.data_source.endswith("FashionMNIST/raw")


def test_f6_stops_the_run_and_stores_it_as_cancelled_with_its_finished_epochs(store, data_root):
    app = make_app(store, long_config(data_root))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await pilot.press("f5")
            try:
                await wait_until(pilot, lambda: len(epoch_lines(app)) >= 1)
                await pilot.press("f6")
                await wait_until(pilot, lambda: not app.tuning.running)
            finally:
                app.tuning.controller.cancel_event.set()
            assert app.screen.query_one("#start", Button).disabled is False
            assert app.screen.query_one("#stop", Button).disabled is True
            shown = len(epoch_lines(app))
        [record] = store.list_runs()
        assert record.status == "cancelled"
        assert record.message.startswith("stopped in epoch")
        assert [e.epoch for e in record.epochs] == list(range(1, shown + 1))

    run_scenario(scenario)


def test_an_invalid_field_disables_start_and_f5_starts_nothing(store, data_root):
    app = make_app(store, small_config(data_root))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await type_into(pilot, "#lr", "abc")
            assert app.screen.query_one("#start", Button).disabled
            error = app.screen.query_one("#lr-error", Label)
            assert error.display and "must be a number" in str(error.render())
            await pilot.press("f5")
            for _ in range(10):
                await pilot.pause(0.02)
            assert not app.tuning.running
            assert log_lines(app) == []

    run_scenario(scenario)
    assert store.list_runs() == []


def test_f3_saves_the_form_as_a_user_preset_listed_in_the_preset_select(store, data_root):
    config = small_config(data_root, lr=0.05)
    app = make_app(store, config)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await pilot.press("f3")
            await wait_until(pilot, lambda: isinstance(app.screen, SavePresetScreen))
            await pilot.press(*"my_run", "enter")
            await wait_until(pilot, lambda: app.screen is app.tuning)
            select = app.screen.query_one("#preset", Select)
            assert "my_run" in [value for _, value in select._options]

    run_scenario(scenario)
    saved = {p.name: p for p in list_presets()}["my_run"]
    assert not saved.shipped
    assert saved.config == config


def test_saving_under_a_shipped_preset_name_is_refused_in_the_modal(store, tmp_path):
    app = make_app(store)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await pilot.press("f3")
            await wait_until(pilot, lambda: isinstance(app.screen, SavePresetScreen))
            await pilot.press(*"fmnist_exp1", "enter")
            await pilot.pause()
            assert isinstance(app.screen, SavePresetScreen)
            error = app.screen.query_one("#save-error", Label)
            assert error.display and "shipped preset" in str(error.render())

    run_scenario(scenario)
    assert not (tmp_path / "tuner_tui_config_dir" / "presets" / "fmnist_exp1.toml").exists()


def test_l_on_the_runs_screen_loads_the_runs_config_into_the_form(store):
    stored = RunConfig(
        hidden=(64, 32), lr=0.05, batch_size=25, epochs=4, reg=0.01, seed=7,
        conventions="standard", engine="graph", device="cpu",
    )
    ScriptedRunner(completed_run_events(stored, epochs=4))(stored, store, lambda event: None, threading.Event())
    app = make_app(store)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await pilot.press("f2")
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
            await pilot.press("l")
            await wait_until(pilot, lambda: app.screen is app.tuning)
            await pilot.pause()
            form = app.tuning.form
            assert form.values() == {
                "dataset": "fmnist", "data_root": "", "hidden": "64,32", "lr": "0.05", "batch_size": "25",
                "epochs": "4", "reg": "0.01", "seed": "7", "conventions": "standard", "engine": "graph",
                "device": "cpu",
            }
            assert app.tuning.form_state.config == stored

    run_scenario(scenario)


def test_ctrl_q_during_a_run_asks_first_and_yes_stores_it_as_cancelled_and_exits(store, data_root):
    app = make_app(store, long_config(data_root))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await pilot.press("f5")
            try:
                await wait_until(pilot, lambda: bool(store.list_runs()))
                await pilot.press("ctrl+q")
                await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
                assert app.return_code is None and app.tuning.running
                await pilot.press("y")
                await wait_until(pilot, lambda: app.return_code is not None)
            finally:
                app.tuning.controller.cancel_event.set()

    run_scenario(scenario)
    [record] = store.list_runs()
    assert record.status == "cancelled"
    assert app.return_code == 0


def test_ctrl_q_during_a_run_answered_no_keeps_it_running(store, data_root):
    app = make_app(store, long_config(data_root))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await pilot.press("f5")
            try:
                await wait_until(pilot, lambda: bool(store.list_runs()))
                await pilot.press("ctrl+q")
                await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
                await pilot.press("n")
                await wait_until(pilot, lambda: app.screen is app.tuning)
                assert app.tuning.running and not app.tuning.controller.cancel_event.is_set()
                assert app.return_code is None
            finally:
                app.tuning.controller.cancel_event.set()
                await wait_until(pilot, lambda: not app.tuning.running)

    run_scenario(scenario)


def test_f5_starts_a_run_while_focus_is_in_an_input(store, data_root):
    app = make_app(store, small_config(data_root))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            field = app.screen.query_one("#lr", Input)
            field.focus()
            await pilot.pause()
            assert app.focused is field
            await pilot.press("f5")
            await wait_until(pilot, lambda: not app.tuning.running and bool(store.list_runs()))
            assert field.value == "0.01"

    run_scenario(scenario)
    [record] = store.list_runs()
    assert record.status == "completed"


def test_clicking_the_start_button_starts_a_run(store):
    runner = ScriptedRunner(completed_run_events(RunConfig()))
    app = make_app(store, runner=runner)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await pilot.click("#start")
            await wait_until(pilot, lambda: bool(runner.calls) and not app.tuning.running)

    run_scenario(scenario)
    assert [r.status for r in store.list_runs()] == ["completed"]


def test_quit_confirmed_after_the_run_ended_on_its_own_still_quits(store):
    runner = ScriptedRunner(in_progress_events(RunConfig()), hold=True)
    app = make_app(store, runner=runner)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await pilot.press("f5")
            try:
                await wait_until(pilot, runner.waiting.is_set)
                await pilot.press("ctrl+q")
                await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
                app.tuning.controller.cancel_event.set()  # the run ends while the question is open
                await wait_until(pilot, lambda: not app.tuning.running)
                await pilot.press("y")
                await wait_until(pilot, lambda: app.return_code is not None)
            finally:
                app.tuning.controller.cancel_event.set()

    run_scenario(scenario)


def test_reports_drawn_together_still_put_every_loss_in_the_sparkline(store):
    events = in_progress_events(RunConfig())
    reports = [event for event in events if isinstance(event, Progress)]
    runner = ScriptedRunner(events, hold=True)
    app = make_app(store, runner=runner)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await pilot.press("f5")
            try:
                await wait_until(pilot, runner.waiting.is_set)
                last = f"step {reports[-1].step}/{reports[-1].steps_per_epoch}"
                await wait_until(pilot, lambda: last in status_text(app))
                assert app.tuning.query_one("#loss-spark", Sparkline).data == [r.recent_loss for r in reports]
            finally:
                app.tuning.controller.cancel_event.set()

    run_scenario(scenario)


def test_a_run_rejected_while_preparing_says_why_in_the_status_and_the_log(store):
    def rejecting_runner(config, store, on_event, cancel, **options):
        raise RunRejectedError("Fashion-MNIST not found in /nowhere")

    app = make_app(store, runner=rejecting_runner)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await start_and_wait_for_the_end(pilot)
            assert status_text(app) == "not started · Fashion-MNIST not found in /nowhere"
            assert " ".join(log_lines(app)).endswith("not started: Fashion-MNIST not found in /nowhere")
            assert not app.tuning.query_one("#start", Button).disabled

    run_scenario(scenario)
    assert store.list_runs() == []


def test_a_runner_that_fails_mid_run_shows_failed_with_its_message(store):
    events = in_progress_events(RunConfig())[:3]  # Started and two reports

    def failing_runner(config, store, on_event, cancel, **options):
        for event in events:
            on_event(event)
        raise TrainingProcessError("the training process ended (exit code -9) before the run finished")

    app = make_app(store, runner=failing_runner)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await start_and_wait_for_the_end(pilot)
            message = "the training process ended (exit code -9) before the run finished"
            assert status_text(app) == f"failed · {message}"
            assert " ".join(log_lines(app)).endswith(f"failed: {message}")  # the log wraps long lines
            assert app.tuning.query_one("#loss-spark", Sparkline).data == [e.recent_loss for e in events[1:]]

    run_scenario(scenario)
