"""Several presets at once (F7), driven with Textual's pilot: marking presets and starting them
together, a queue when more are marked than run at a time, stopping them, quitting, real training
child processes side by side (one thread each) on a tiny Fashion-MNIST, and `tuner-tui lab` opening
the app with the lab's presets marked.

No timing is asserted; every wait has a timeout that fails loudly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Label, Select

from tests import support
from tests.fake_runner import ScriptedRunner, in_progress_events
from tests.support import run_on_screen, run_pilot, wait_until
from tuner_tui.app.app import ChildProcessRunner, TunerApp
from tuner_tui.app.components.confirm import ConfirmScreen
from tuner_tui.app.components.presets_screen import PresetsScreen
from tuner_tui.app.components.tuning_screen import TuningScreen
from tuner_tui.app.slots import LabLaunch, Slot
from tuner_tui.cli import main
from tuner_tui.engine.config import RunConfig
from tuner_tui.runs.presets import load_preset, save_preset
from tuner_tui.runs.records import RunLabels
from tuner_tui.runs.store import ResultsStore

RUN_TIMEOUT_S = 600.0  # real training processes on a loaded 2-core machine: generous, never asserted


@pytest.fixture
def store(isolated: dict[str, str]) -> ResultsStore:
    with ResultsStore(Path(isolated["TUNER_TUI_STORE"])) as opened:
        yield opened


@pytest.fixture
def tiny_presets(isolated: dict[str, str], tiny_fmnist: Path) -> list[str]:
    """Two user presets that train 784→16→10 for one epoch on the tiny Fashion-MNIST."""
    base = RunConfig(hidden=(16,), batch_size=20, epochs=1, device="cpu", data_root=str(tiny_fmnist))
    save_preset("tiny_a", base)
    save_preset("tiny_b", RunConfig.from_mapping({"lr": 0.05}, base=base))
    return ["tiny_a", "tiny_b"]


def make_app(store: ResultsStore, runner, **kwargs) -> TunerApp:
    return support.make_app(store, runner=runner, **kwargs)


def run(app: TunerApp, scenario: Callable[[Pilot, PresetsScreen], Awaitable[None]]) -> None:
    """Run `scenario` on the presets screen (F7 from the tuning screen, unless the app opens there)."""
    run_on_screen(app, PresetsScreen, scenario, key="f7")


async def mark(pilot: Pilot, screen: PresetsScreen, names: list[str]) -> None:
    """Move the cursor to each preset and press space, as a user would."""
    table = screen.table
    for name in names:
        table.move_cursor(row=table.get_row_index(name))
        await pilot.press("space")


def slot_rows(screen: PresetsScreen) -> list[list[str]]:
    table: DataTable = screen.query_one("#slots-table", DataTable)
    return [[str(cell) for cell in table.get_row(row.key)] for row in table.ordered_rows]


def test_two_marked_presets_start_together_and_stop_together(store, tiny_presets):
    runner = ScriptedRunner(in_progress_events(RunConfig()), hold=True)
    app = make_app(store, runner)

    async def scenario(pilot: Pilot, screen: PresetsScreen) -> None:
        screen.parallel = 2
        await mark(pilot, screen, tiny_presets)
        assert screen.table.marked == tiny_presets
        await pilot.press("f5")
        try:
            await wait_until(pilot, lambda: len(runner.calls) == 2)  # both run at once
            await wait_until(pilot, lambda: [row[1] for row in slot_rows(screen)] == ["running", "running"])
            assert [row[0] for row in slot_rows(screen)] == tiny_presets
            assert "2 running" in str(screen.query_one("#slots-status", Label).render())
            await pilot.press("f6")
            await wait_until(pilot, lambda: not screen.running)
        finally:
            for cancel in screen.controller.cancels:
                cancel.set()
        assert [s.status for s in screen.controller.slots] == ["cancelled", "cancelled"]

    run(app, scenario)
    assert [option["labels"] for option in runner.options] == [RunLabels(preset=n) for n in ("tiny_a", "tiny_b")]
    assert sorted((r.preset, r.status) for r in store.list_runs()) == [("tiny_a", "cancelled"), ("tiny_b", "cancelled")]


def test_presets_marked_beyond_the_runs_at_a_time_wait_their_turn(store, tiny_presets):
    runner = ScriptedRunner(in_progress_events(RunConfig()), hold=True)
    app = make_app(store, runner, lab=LabLaunch(tuple(tiny_presets), workers=1))

    async def scenario(pilot: Pilot, screen: PresetsScreen) -> None:
        assert screen.table.marked == tiny_presets  # marked on opening
        await pilot.press("f5")
        slots = screen.controller.slots
        try:
            await wait_until(pilot, lambda: slots[0].status == "running")
            assert len(runner.calls) == 1 and slots[1].status == "queued"
            screen.controller.cancels[0].set()  # the first run ends: the second takes its place
            await wait_until(pilot, lambda: slots[1].status == "running")
            assert slots[0].status == "cancelled" and len(runner.calls) == 2
            await pilot.press("f6")
            await wait_until(pilot, lambda: not screen.running)
        finally:
            for cancel in screen.controller.cancels:
                cancel.set()

    run(app, scenario)


def test_quitting_while_several_runs_go_asks_then_stops_them(store, tiny_presets):
    runner = ScriptedRunner(in_progress_events(RunConfig()), hold=True)
    app = make_app(store, runner, lab=LabLaunch(tuple(tiny_presets)))

    async def scenario(pilot: Pilot, screen: PresetsScreen) -> None:
        await pilot.press("f5")
        try:
            await wait_until(pilot, lambda: any(s.status == "running" for s in screen.controller.slots))
            await pilot.press("ctrl+q")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            question = str(app.screen.query_one(".dialog-title", Label).render())
            assert question == "Several runs are in progress. Stop them (they are stored as cancelled) and quit?"
            await pilot.press("y")
            await wait_until(pilot, lambda: app.return_code is not None)
        finally:
            for cancel in screen.controller.cancels:
                cancel.set()

    run(app, scenario)
    assert store.list_runs() and all(r.status == "cancelled" for r in store.list_runs())


def test_real_training_processes_run_two_presets_side_by_side_one_thread_each(store, tiny_presets):
    app = make_app(store, None)
    assert isinstance(app.slot_runner, ChildProcessRunner) and app.slot_runner.threads == 1

    async def scenario(pilot: Pilot, screen: PresetsScreen) -> None:
        screen.parallel = 2
        await mark(pilot, screen, tiny_presets)
        await pilot.press("f5")
        await wait_until(pilot, lambda: not screen.running, RUN_TIMEOUT_S)
        rows = slot_rows(screen)
        assert [row[:3] for row in rows] == [["tiny_a", "completed", "1/1"], ["tiny_b", "completed", "1/1"]]
        assert all(row[3] == "██████████ 100%" and row[5].endswith("%") for row in rows)

    run(app, scenario)
    runs = {r.preset: r for r in store.list_runs()}
    assert sorted(runs) == tiny_presets
    assert all(r.status == "completed" and r.device_name.endswith("1 threads") for r in runs.values())
    assert runs["tiny_b"].config.lr == 0.05


def test_enter_loads_a_preset_into_the_tuning_form(store, tiny_presets):
    app = make_app(store, ScriptedRunner(in_progress_events(RunConfig())))

    async def scenario(pilot: Pilot, screen: PresetsScreen) -> None:
        screen.table.move_cursor(row=screen.table.get_row_index("tiny_b"))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, TuningScreen))
        await wait_until(pilot, lambda: app.tuning.form.preset_name == "tiny_b")
        assert app.tuning.form_state is not None

    run(app, scenario)


def test_a_slot_follows_its_runs_events():
    config = RunConfig(epochs=2)
    slot = Slot("fmnist_exp1", config)
    assert (slot.status, slot.done_fraction) == ("queued", 0.0)
    for event in in_progress_events(config)[:-1]:  # up to half of epoch 2
        slot.apply(event)
    assert (slot.status, slot.epoch, slot.epochs) == ("running", 2, 2)
    assert slot.done_fraction == pytest.approx(0.75)
    assert slot.test_accuracy == 73.5 and slot.eta_s is not None


# --- from the command line --------------------------------------------------------------------------


def test_lab_without_no_ui_opens_the_app_with_the_lab_presets_marked(isolated, monkeypatch):
    opened: list[LabLaunch | None] = []
    monkeypatch.setattr("tuner_tui.cli.run_app", lambda args, **kwargs: opened.append(kwargs.get("lab")) or 0)
    assert main(["lab", "fmnist", "--set", "epochs=1"]) == 0
    [lab] = opened
    assert lab is not None and lab.presets == tuple(f"fmnist_exp{i}" for i in range(1, 11))
    assert lab.overrides == ("epochs=1",) and lab.workers is None


def test_lab_without_no_ui_refuses_a_bad_set_before_the_app_opens(isolated, monkeypatch, capsys):
    opened: list[object] = []
    monkeypatch.setattr("tuner_tui.cli.run_app", lambda args, **kwargs: opened.append(kwargs) or 0)
    assert main(["lab", "cifar10", "--set", "epochs=many"]) == 2
    assert not opened and "epochs" in capsys.readouterr().err


def test_a_preset_with_set_values_opens_the_app_under_the_presets_name_marked_edited(isolated, monkeypatch):
    opened: list[TunerApp] = []

    def opened_instead(app: TunerApp) -> None:
        opened.append(app)

    monkeypatch.setattr(TunerApp, "run", opened_instead)
    assert main(["--preset", "fmnist_exp5", "--set", "epochs=3"]) == 0
    [app] = opened
    assert app.initial_preset == "fmnist_exp5" and app.initial_config.epochs == 3
    assert app.initial_preset_config == load_preset("fmnist_exp5").config

    async def scenario(pilot: Pilot) -> None:
        await wait_until(pilot, lambda: app.tuning.form.is_mounted)
        form = app.tuning.form
        assert str(form.query_one("#preset", Select).value) == "fmnist_exp5"
        assert form.state().edited  # the run it starts is stored as "fmnist_exp5 (edited)"

    run_pilot(app, scenario)
