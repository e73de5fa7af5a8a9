"""Snapshots of the app's screens at 80×24 (SSH) and 120×40, with everything that varies fixed.

As in Posting's snapshot tests: a fake GPU probe and fixed system figures, a scripted runner with
fixed numbers, config/cache/data/store folders under tmp_path, no cursor blink, no animations.
Update with `python -m pytest tests/test_app_snapshots.py --snapshot-update` and look at the
report before committing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from engine.config import RunConfig
from engine.events import Event
from engine.gpu import GpuSnapshot
from tests.doubles import FakeGpuProbe, FixedSystemInfo
from tests.fake_runner import ScriptedRunner, completed_run_events, diverged_run_events, in_progress_events
from tuner_tui.app.app import TunerApp
from tuner_tui.app.components.runs_screen import RunsScreen
from tuner_tui.app.components.save_preset import SavePresetScreen
from tuner_tui.app.components.tuning_screen import TuningScreen
from tuner_tui.runs.presets import load_preset
from tuner_tui.runs.store import ResultsStore

SIZES = pytest.mark.parametrize("terminal_size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
GIB = 1024**3
FAKE_GPU = GpuSnapshot(
    available=True, name="FakeGPU 16 GB", used_bytes=3 * GIB, total_bytes=16 * GIB,
    process_bytes=742 * 1024**2, utilization_percent=87,
)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Config, cache, data and store under tmp_path; a steady cursor in every Input."""
    for name in ("TUNER_TUI_CONFIG_DIR", "TUNER_TUI_CACHE_DIR", "TUNER_TUI_DATA"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("TUNER_TUI_STORE", str(tmp_path / "env-store.sqlite3"))
    monkeypatch.setattr(Input, "cursor_blink", False)


def make_app(
    store_path: Path, *, runner: ScriptedRunner | None = None, config: RunConfig | None = None,
    preset_name: str | None = None,
) -> TunerApp:
    probe = FakeGpuProbe(FAKE_GPU)
    app = TunerApp(
        ResultsStore(store_path), config=config, preset_name=preset_name,
        runner=runner or ScriptedRunner(completed_run_events(RunConfig())),
        gpu_probe=probe, system=FixedSystemInfo(probe, free=12 * GIB, device_names={}), watch_gpu=False,
    )
    app.animation_level = "none"
    app.NOTIFICATION_TIMEOUT = 600  # a toast in a screenshot must not expire on a slow machine
    return app


async def settle(pilot: Pilot, done: Callable[[], bool], *, timeout: float = 30.0) -> None:
    """Let the app process messages until `done()` holds, then a few frames more."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done():
        assert loop.time() < deadline, "the app did not reach the expected state"
        await pilot.pause(0.01)
    for _ in range(3):
        await pilot.pause()
    await pilot.wait_for_scheduled_animations()


async def tuning_ready(pilot: Pilot) -> None:
    """The app pushes its tuning screen in an async on_mount: wait for it (run_before may start first)."""
    await settle(pilot, lambda: isinstance(pilot.app.screen, TuningScreen) and pilot.app.tuning.form_state is not None)


def start_and_finish(runner: ScriptedRunner) -> Callable[[Pilot], Awaitable[None]]:
    """run_before: press F5 and wait until the scripted run has ended."""

    async def run_before(pilot: Pilot) -> None:
        await tuning_ready(pilot)
        await pilot.press("f5")
        await settle(pilot, lambda: bool(runner.calls) and not pilot.app.running)

    return run_before


def record_runs(store: ResultsStore, runs: list[tuple[RunConfig, list[Event]]]) -> None:
    for config, events in runs:
        ScriptedRunner(events)(config, store, lambda event: None, threading.Event())


def three_runs(store_path: Path) -> None:
    """Run 1 completed (fmnist), run 2 diverged (fmnist, lr 5), run 3 completed (cifar10)."""
    fmnist = RunConfig(epochs=3)
    wild = RunConfig(lr=5.0, batch_size=100)
    cifar = RunConfig(dataset="cifar10", hidden=(512, 256), lr=0.001, batch_size=50, reg=0.001)
    with ResultsStore(store_path) as store:
        record_runs(store, [
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
        app.cancel_event.set()
        exit_app(*args, **kwargs)

    app.exit = exit_and_release
    try:
        assert snap_compare(app, terminal_size=terminal_size, run_before=run_before)
    finally:
        app.cancel_event.set()


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


@SIZES
def test_runs_table(snap_compare, tmp_path, terminal_size):
    three_runs(tmp_path / "runs.sqlite3")

    async def run_before(pilot: Pilot) -> None:
        await tuning_ready(pilot)
        await pilot.press("f2")
        await settle(pilot, lambda: isinstance(pilot.app.screen, RunsScreen))

    assert snap_compare(make_app(tmp_path / "runs.sqlite3"), terminal_size=terminal_size, run_before=run_before)


@SIZES
def test_run_detail_of_the_second_row(snap_compare, tmp_path, terminal_size):
    three_runs(tmp_path / "runs.sqlite3")

    async def run_before(pilot: Pilot) -> None:
        await tuning_ready(pilot)
        await pilot.press("f2")
        await settle(pilot, lambda: isinstance(pilot.app.screen, RunsScreen))
        await pilot.press("down")
        await settle(pilot, lambda: pilot.app.screen.current_record().id == 2)

    assert snap_compare(make_app(tmp_path / "runs.sqlite3"), terminal_size=terminal_size, run_before=run_before)


@SIZES
def test_save_preset_modal(snap_compare, tmp_path, terminal_size):
    async def run_before(pilot: Pilot) -> None:
        await tuning_ready(pilot)
        await pilot.press("f3")
        await settle(pilot, lambda: isinstance(pilot.app.screen, SavePresetScreen))

    assert snap_compare(make_app(tmp_path / "runs.sqlite3"), terminal_size=terminal_size, run_before=run_before)
