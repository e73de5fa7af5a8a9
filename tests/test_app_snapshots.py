"""Snapshots of the app's screens at 80×24 (SSH) and 120×40, with everything that varies fixed.

As in Posting's snapshot tests: a fake GPU probe and GPU list, fixed system figures, a scripted
runner with fixed numbers, stored runs written on a fixed clock and shown in UTC, a tiny dataset
under tmp_path (so no "not found" check shows unless a test wants one), config/cache/store folders
under tmp_path, no cursor blink, no animations. Update with
`python -m pytest tests/test_app_snapshots.py --snapshot-update` and look at the report before
committing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from tests import support
from tests.fake_runner import ScriptedRunner, completed_run_events, diverged_run_events, in_progress_events
from tests.sweep_script import write_scripted_sweep, write_tiny_spec
from tuner_tui.app.app import TunerApp
from tuner_tui.app.components.compare_screen import CompareScreen
from tuner_tui.app.components.help_screen import HelpScreen
from tuner_tui.app.components.presets_screen import PresetsScreen
from tuner_tui.app.components.run_detail import RunDetailScreen
from tuner_tui.app.components.runs_screen import RunsScreen
from tuner_tui.app.components.save_preset import SavePresetScreen
from tuner_tui.app.components.spec_form import SpecFormScreen
from tuner_tui.app.components.sweep_screen import SweepScreen
from tuner_tui.app.components.tuning_screen import TuningScreen
from tuner_tui.app.slots import LabLaunch
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import Event
from tuner_tui.engine.gpu import GpuSnapshot
from tuner_tui.runs.presets import load_preset
from tuner_tui.runs.store import ResultsStore
from tuner_tui.sweeps.spec import user_specs_dir

SIZES = pytest.mark.parametrize("terminal_size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
GIB = 1024**3
FAKE_GPU = GpuSnapshot(
    available=True, name="FakeGPU 16 GB", used_bytes=3 * GIB, total_bytes=16 * GIB,
    process_bytes=742 * 1024**2, utilization_percent=87,
)


STORED_AT = 1_767_268_800.0  # 2026-01-01 12:00 UTC: stored runs are dated from here, a minute apart


@pytest.fixture(autouse=True)
def still(isolated_small_data: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest's isolated paths with a tiny Fashion-MNIST in the data root; dates in UTC; a steady
    cursor in every Input."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(Input, "cursor_blink", False)


def make_app(
    store_path: Path, *, runner: ScriptedRunner | None = None, config: RunConfig | None = None,
    preset_name: str | None = None, gpu: GpuSnapshot = FAKE_GPU, free: int = 12 * GIB,
) -> TunerApp:
    app = support.make_app(
        ResultsStore(store_path), config=config, preset_name=preset_name,
        runner=runner or ScriptedRunner(completed_run_events(RunConfig())),
        gpu=gpu, gpus=[gpu] if gpu.available else [], free=free,
    )
    app.animation_level = "none"
    app.NOTIFICATION_TIMEOUT = 600  # a toast in a screenshot must not expire on a slow machine
    return app


async def settle(pilot: Pilot, done: Callable[[], bool]) -> None:
    """Let the app process messages until `done()` holds, then a few frames more (30 s at most)."""
    await support.settle(pilot, done, timeout=30.0)


async def tuning_ready(pilot: Pilot) -> None:
    """Wait for the tuning screen's form and its checks (the dataset check runs after the first frame)."""
    await settle(pilot, lambda: isinstance(pilot.app.screen, TuningScreen) and pilot.app.tuning.form_state is not None)
    await settle(pilot, lambda: pilot.app.tuning.dataset_checked is not None)


def start_and_finish(runner: ScriptedRunner) -> Callable[[Pilot], Awaitable[None]]:
    """run_before: press F5 and wait until the scripted run has ended."""

    async def run_before(pilot: Pilot) -> None:
        await tuning_ready(pilot)
        await pilot.press("f5")
        await settle(pilot, lambda: bool(runner.calls) and not pilot.app.tuning.running)

    return run_before


def record_runs(store_path: Path, runs: list[tuple[RunConfig, list[Event]]]) -> None:
    """Store `runs` on a fixed clock, however often the recorder reads it: run i starts at
    STORED_AT + 1 min + 2i min and ends a minute later."""
    now = [STORED_AT]
    with ResultsStore(store_path, clock=lambda: now[0]) as store:
        for index, (config, events) in enumerate(runs):
            now[0] = STORED_AT + 60 + 120 * index

            def on_event(event: Event, before_the_end: Event = events[-2]) -> None:
                if event is before_the_end:  # the Finished that comes next is stored a minute on
                    now[0] += 60

            ScriptedRunner(events)(config, store, on_event, threading.Event())


def three_runs(store_path: Path) -> None:
    """Run 1 completed (fmnist), run 2 diverged (fmnist, lr 5), run 3 completed (cifar10), each
    stored as lasting a minute, a minute apart, on a fixed clock."""
    fmnist = RunConfig(epochs=3)
    wild = RunConfig(lr=5.0, batch_size=100)
    cifar = RunConfig(dataset="cifar10", hidden=(512, 256), lr=0.001, batch_size=50, reg=0.001)
    record_runs(store_path, [
        (fmnist, completed_run_events(fmnist, epochs=3)),
        (wild, diverged_run_events(wild, step=734)),
        (cifar, completed_run_events(cifar, epochs=2)),
    ])


@SIZES
def test_empty_tuning_screen(snap_compare, tmp_path, terminal_size):
    assert snap_compare(make_app(tmp_path / "runs.sqlite3"), terminal_size=terminal_size, run_before=tuning_ready)


@SIZES
def test_preset_loaded(snap_compare, tmp_path, terminal_size):
    preset = load_preset("fmnist_exp5")
    app = make_app(tmp_path / "runs.sqlite3", config=preset.config, preset_name="fmnist_exp5")
    assert snap_compare(app, terminal_size=terminal_size, run_before=tuning_ready)


@SIZES
def test_invalid_learning_rate_shows_its_error_and_disables_start(snap_compare, tmp_path, terminal_size):
    async def run_before(pilot: Pilot) -> None:
        await tuning_ready(pilot)
        pilot.app.screen.query_one("#lr", Input).focus()
        await pilot.press("end", *["backspace"] * 4, "a", "b", "c")
        await settle(pilot, lambda: pilot.app.screen.query_one("#start").disabled)

    assert snap_compare(make_app(tmp_path / "runs.sqlite3"), terminal_size=terminal_size, run_before=run_before)


@SIZES
def test_run_in_progress(snap_compare, tmp_path, terminal_size):
    runner = ScriptedRunner(in_progress_events(RunConfig()), hold=True)
    app = make_app(tmp_path / "runs.sqlite3", runner=runner)

    async def run_before(pilot: Pilot) -> None:
        await tuning_ready(pilot)
        await pilot.press("f5")
        await settle(pilot, runner.waiting.is_set)
        await settle(pilot, lambda: "step 3000/6000" in str(app.tuning.query_one("#run-status").render()))
        await settle(pilot, lambda: not app.tuning.log_view.unwritten)  # epoch lines are written once a second

    # The held run waits for its cancel: release it as the app exits, after the screenshot.
    exit_app = app.exit

    def exit_and_release(*args, **kwargs) -> None:
        app.tuning.controller.cancel_event.set()
        exit_app(*args, **kwargs)

    app.exit = exit_and_release
    try:
        assert snap_compare(app, terminal_size=terminal_size, run_before=run_before)
    finally:
        app.tuning.controller.cancel_event.set()


@SIZES
def test_finished_run(snap_compare, tmp_path, terminal_size):
    config = RunConfig(epochs=3)
    runner = ScriptedRunner(completed_run_events(config, epochs=3))
    app = make_app(tmp_path / "runs.sqlite3", runner=runner, config=config)
    assert snap_compare(app, terminal_size=terminal_size, run_before=start_and_finish(runner))


@SIZES
def test_diverged_run(snap_compare, tmp_path, terminal_size):
    runner = ScriptedRunner(diverged_run_events(RunConfig(), step=1234))
    app = make_app(tmp_path / "runs.sqlite3", runner=runner)
    assert snap_compare(app, terminal_size=terminal_size, run_before=start_and_finish(runner))


async def open_browser(pilot: Pilot) -> None:
    await tuning_ready(pilot)
    await pilot.press("f2")
    await settle(pilot, lambda: isinstance(pilot.app.screen, RunsScreen) and pilot.app.screen.table.row_count > 0)


@SIZES
def test_runs_browser(snap_compare, tmp_path, terminal_size):
    three_runs(tmp_path / "runs.sqlite3")
    assert snap_compare(make_app(tmp_path / "runs.sqlite3"), terminal_size=terminal_size, run_before=open_browser)


@SIZES
def test_runs_browser_best_first_puts_the_cursor_on_the_best_run(snap_compare, tmp_path, terminal_size):
    three_runs(tmp_path / "runs.sqlite3")

    async def run_before(pilot: Pilot) -> None:
        await open_browser(pilot)
        await pilot.press("a")
        await settle(pilot, lambda: pilot.app.screen.table.sort_key == "test acc")

    assert snap_compare(make_app(tmp_path / "runs.sqlite3"), terminal_size=terminal_size, run_before=run_before)


@SIZES
def test_a_runs_plots(snap_compare, tmp_path, terminal_size):
    three_runs(tmp_path / "runs.sqlite3")

    async def run_before(pilot: Pilot) -> None:
        await open_browser(pilot)
        await pilot.press("down", "down", "enter")  # run 1: three epochs
        await settle(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))

    assert snap_compare(make_app(tmp_path / "runs.sqlite3"), terminal_size=terminal_size, run_before=run_before)


@SIZES
def test_compare_three_runs(snap_compare, tmp_path, terminal_size):
    three_runs(tmp_path / "runs.sqlite3")

    async def run_before(pilot: Pilot) -> None:
        await open_browser(pilot)
        await pilot.press("space", "down", "space", "down", "space", "c")
        await settle(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))

    assert snap_compare(make_app(tmp_path / "runs.sqlite3"), terminal_size=terminal_size, run_before=run_before)


@SIZES
def test_help(snap_compare, tmp_path, terminal_size):
    async def run_before(pilot: Pilot) -> None:
        await tuning_ready(pilot)
        await pilot.press("question_mark")
        await settle(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))

    assert snap_compare(make_app(tmp_path / "runs.sqlite3"), terminal_size=terminal_size, run_before=run_before)


@SIZES
def test_checks_failing_before_start(snap_compare, tmp_path, terminal_size):
    """CIFAR-10 under a data root that does not hold it, a CUDA device without a driver, and a network
    that will not fit: each said beside its field before F5."""
    config = RunConfig(
        dataset="cifar10", hidden=(16384, 16384), batch_size=50, device="cuda", data_root="/nonexistent/data"
    )
    app = make_app(
        tmp_path / "runs.sqlite3", config=config, gpu=GpuSnapshot.unavailable("no NVIDIA driver"), free=1 * GIB
    )
    assert snap_compare(app, terminal_size=terminal_size, run_before=tuning_ready)


@SIZES
def test_save_preset_modal(snap_compare, tmp_path, terminal_size):
    async def run_before(pilot: Pilot) -> None:
        await tuning_ready(pilot)
        await pilot.press("f3")
        await settle(pilot, lambda: isinstance(pilot.app.screen, SavePresetScreen))

    assert snap_compare(make_app(tmp_path / "runs.sqlite3"), terminal_size=terminal_size, run_before=run_before)


# --- sweeps (F4) and several presets at once (F7) --------------------------------------------------


@SIZES
def test_sweep_screen(snap_compare, tmp_path, terminal_size):
    """A scripted sweep (3 completed, 1 pruned, 1 running trial): the trial table with the best starred,
    the best value so far, lr against the objective, and the ladder (a plot, or a line at 80 columns)."""
    write_scripted_sweep(tmp_path / "runs.sqlite3", write_tiny_spec(user_specs_dir()))

    async def run_before(pilot: Pilot) -> None:
        await tuning_ready(pilot)
        await pilot.press("f4")
        await settle(pilot, lambda: isinstance(pilot.app.screen, SweepScreen) and pilot.app.screen.view is not None)
        await settle(pilot, lambda: pilot.app.screen.table.row_count == 5)

    assert snap_compare(make_app(tmp_path / "runs.sqlite3"), terminal_size=terminal_size, run_before=run_before)


@SIZES
def test_spec_form_shows_problems_beside_their_fields(snap_compare, tmp_path, terminal_size):
    write_tiny_spec(user_specs_dir())

    async def run_before(pilot: Pilot) -> None:
        await tuning_ready(pilot)
        await pilot.press("f4")
        await settle(pilot, lambda: isinstance(pilot.app.screen, SweepScreen))
        pilot.app.screen.query_one("#spec-select").value = "tiny"
        await pilot.press("e")
        await settle(pilot, lambda: isinstance(pilot.app.screen, SpecFormScreen))
        form = pilot.app.screen
        form.query_one("#low-lr", Input).value = "0"
        form.query_one("#choices-batch_size", Input).value = "20 0"
        await settle(pilot, lambda: not form.query_one("#error-batch_size").has_class("hidden"))

    assert snap_compare(make_app(tmp_path / "runs.sqlite3"), terminal_size=terminal_size, run_before=run_before)


@SIZES
def test_two_presets_running_together(snap_compare, tmp_path, terminal_size):
    runner = ScriptedRunner(in_progress_events(RunConfig()), hold=True)
    app = make_app(tmp_path / "runs.sqlite3", runner=runner)
    app.lab_launch = LabLaunch(("fmnist_exp1", "fmnist_exp2"), workers=2)

    def release() -> None:
        if app.presets is not None:
            for cancel in app.presets.controller.cancels:
                cancel.set()

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, lambda: isinstance(pilot.app.screen, PresetsScreen))
        await pilot.press("f5")
        await settle(pilot, lambda: len(runner.calls) == 2)
        rows = pilot.app.screen.query_one("#slots-table")
        await settle(pilot, lambda: all(str(rows.get_cell_at((i, 1))) == "running" for i in range(2)))

    exit_app = app.exit

    def exit_and_release(*args, **kwargs) -> None:  # the held runs wait for their cancel
        release()
        exit_app(*args, **kwargs)

    app.exit = exit_and_release
    try:
        assert snap_compare(app, terminal_size=terminal_size, run_before=run_before)
    finally:
        release()
