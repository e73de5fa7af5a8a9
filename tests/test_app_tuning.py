"""The tuning screen's second round, driven with Textual's pilot: Stop that shows at once, checks
before Start, the estimates, the form's words and focus, forcing a run that will not fit, help.

Runs go through scripted runners (fixed numbers, no torch); the machine is a fake GPU probe, fixed
free memory and a fixed GPU list.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable

import pytest
from rich.text import Text
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static

from tests import support
from tests.fake_runner import ScriptedRunner, completed_run_events, in_progress_events
from tests.support import GIB, SIZE, UI_TIMEOUT_S, run_pilot, wait_until
from tuner_tui.app.app import TunerApp
from tuner_tui.app.components.confirm import ConfirmScreen
from tuner_tui.app.components.epoch_plot import EpochPlot
from tuner_tui.app.components.help_screen import HelpScreen
from tuner_tui.app.components.save_preset import SavePresetScreen
from tuner_tui.app.components.tuning_screen import TuningScreen
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import Started
from tuner_tui.engine.gpu import GpuSnapshot
from tuner_tui.formatting import format_seconds, time_estimate_text
from tuner_tui.runs.store import ResultsStore
from tuner_tui.runs.training_process import RunRejectedError

TIMEOUT_S = UI_TIMEOUT_S
GPU = GpuSnapshot(
    available=True, name="FakeGPU 16 GB", used_bytes=3 * GIB, total_bytes=16 * GIB, process_bytes=None,
    utilization_percent=0,
)


pytestmark = pytest.mark.usefixtures("isolated_small_data")


def make_app(store: ResultsStore, *, runner=None, **options) -> TunerApp:
    """The app on test doubles; the runner scripts a completed run unless another is given."""
    return support.make_app(store, runner=runner or ScriptedRunner(completed_run_events(RunConfig())), **options)


async def ready(pilot: Pilot) -> TuningScreen:
    """The tuning screen with its form reported and its checks run."""
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, TuningScreen) and app.tuning.form_state is not None)
    await wait_until(pilot, lambda: app.tuning.checks_ready and app.tuning.dataset_checked is not None)
    await pilot.pause()
    return app.tuning


def run(app: TunerApp, scenario: Callable[[Pilot, TuningScreen], Awaitable[object]], size=SIZE) -> None:
    async def on_ready(pilot: Pilot) -> None:
        await scenario(pilot, await ready(pilot))

    run_pilot(app, on_ready, size=size)


def text_of(widget: Widget) -> str:
    return str(widget.render())


def check_text(screen: TuningScreen, field: str) -> str:
    label = screen.query_one(f"#{field}-check", Label)
    return text_of(label) if label.display else ""


def status_text(screen: TuningScreen) -> str:
    return text_of(screen.query_one("#run-status", Label))


# --- structure ----------------------------------------------------------------------------


def test_the_first_screen_is_the_default_screen_and_running_is_a_reactive_that_drives_the_buttons(store):
    runner = ScriptedRunner(in_progress_events(RunConfig()), hold=True)
    app = make_app(store, runner=runner)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        assert app.screen_stack[0] is screen
        await pilot.press("f5")
        try:
            await wait_until(pilot, runner.waiting.is_set)
            assert screen.running
            assert screen.query_one("#start", Button).disabled and not screen.query_one("#stop", Button).disabled
        finally:
            screen.controller.cancel_event.set()
        await wait_until(pilot, lambda: not screen.running)
        assert not screen.query_one("#start", Button).disabled and screen.query_one("#stop", Button).disabled

    run(app, scenario)


# --- bug 1: Stop shows at once -------------------------------------------------------------


def test_stop_changes_the_screen_at_once_while_the_run_is_still_preparing(store):
    """F6 during a long preparation changes the screen at once; "preparing…" does not stay on it."""
    release = threading.Event()
    stop_seen = threading.Event()

    def slow_runner(config, store, on_event, cancel, **options):
        cancel.wait(TIMEOUT_S)  # preparing: not a single event yet
        stop_seen.set()
        release.wait(TIMEOUT_S)  # the runner's grace period, in which the screen must not wait
        raise RunRejectedError("stopped before it started")

    app = make_app(store, runner=slow_runner)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        await pilot.press("f5")
        await wait_until(pilot, lambda: "preparing" in status_text(screen))
        await pilot.press("f6")
        try:
            await pilot.pause()
            assert status_text(screen).startswith("stopping…")
            assert screen.running  # the runner has not returned yet
            assert stop_seen.wait(TIMEOUT_S)
        finally:
            release.set()
        await wait_until(pilot, lambda: not screen.running)

    run(app, scenario)


def test_stop_and_quit_exits_once_the_run_has_ended(store):
    runner = ScriptedRunner(in_progress_events(RunConfig()), hold=True)
    app = make_app(store, runner=runner)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        await pilot.press("f5")
        try:
            await wait_until(pilot, runner.waiting.is_set)
            await pilot.press("ctrl+q")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await wait_until(pilot, lambda: app.return_code is not None)
        finally:
            screen.controller.cancel_event.set()

    run(app, scenario)
    [stored] = store.list_runs()
    assert stored.status == "cancelled"


# --- bug 2: the data root survives a preset --------------------------------------------------


def test_loading_a_preset_keeps_the_data_root_and_the_device_given_to_the_app(store, tmp_path):
    """A preset loaded in the app keeps the --data-root (and device) the app was given."""
    config = RunConfig(data_root=str(tmp_path / "lab-data"), device="cpu")
    app = make_app(store, config=config)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        screen.load_preset("cifar_exp1")
        await pilot.pause()
        loaded = screen.form_state.config
        assert (loaded.dataset, loaded.data_root, loaded.device) == ("cifar10", str(tmp_path / "lab-data"), "cpu")
        assert screen.query_one("#data_root", Input).value == str(tmp_path / "lab-data")
        assert not screen.form_state.edited  # where a run trains is not an edit of the preset

    run(app, scenario)


# --- bug 3: dialogs show their whole text ------------------------------------------------------


def inside(inner: Region, outer: Region) -> bool:
    return outer.contains_region(inner)


def test_the_quit_question_and_the_save_dialogs_summary_fit_inside_their_dialogs_at_80x24(store):
    """At 80×24 the quit question keeps its "and quit?" and the save dialog its whole summary, no
    number cut in the middle."""
    app = make_app(store, config=RunConfig(reg=0.001, lr=0.001))

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        question = "A run is in progress. Stop it (it is stored as cancelled) and quit?"
        app.push_screen(ConfirmScreen(question, "Stop and quit"))
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause()
        dialog = app.screen.query_one(".dialog")
        label = app.screen.query_one(".dialog-title", Label)
        assert inside(label.region, dialog.content_region) and label.region.height >= 2
        assert "and quit?" in text_of(label)
        await pilot.press("escape")
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, SavePresetScreen))
        await pilot.pause()
        summary = app.screen.query_one(".dialog-text", Label)
        assert inside(summary.region, app.screen.query_one(".dialog").content_region)
        assert "λ 0.001" in text_of(summary)

    run(app, scenario, size=(80, 24))


# --- bug 6: typing replaces the focused value ----------------------------------------------------


def test_tab_into_a_field_and_typing_replaces_its_value(store):
    """Tab to λ (0.001) and type 5: the field reads 5, not 05.001."""
    app = make_app(store, config=RunConfig(reg=0.001))

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        screen.query_one("#epochs", Input).focus()
        await pilot.pause()
        await pilot.press("tab")
        assert app.focused is screen.query_one("#reg", Input)
        await pilot.press("5")
        await pilot.pause()
        assert screen.query_one("#reg", Input).value == "5"
        assert screen.form_state.config.reg == 5.0

    run(app, scenario)


# --- bug 7: errors and focus show without colour --------------------------------------------------


def test_the_focused_fields_label_is_reversed_so_focus_shows_in_16_colours(store):
    """Under TERM=xterm (16 colours) the focused field stands out: its label is reversed."""
    app = make_app(store)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        screen.query_one("#lr", Input).focus()
        await pilot.pause()
        labels = {str(label.render()): label for label in screen.query(".form-label").results(Label)}
        assert labels["learning rate"].styles.text_style.reverse
        assert not labels["batch size"].styles.text_style.reverse

    run(app, scenario)


def test_under_no_color_an_error_is_drawn_reversed(store, monkeypatch):
    """Under NO_COLOR=1 error text is drawn reversed, not grey on near-black."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(store)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        field = screen.query_one("#lr", Input)
        field.value = "abc"
        await pilot.pause()
        error = screen.query_one("#lr-error", Label)
        assert error.display and error.styles.text_style.reverse

    run(app, scenario)


# --- bug 8: the live accuracy has a scale ------------------------------------------------------


def test_the_live_accuracy_is_drawn_on_a_labelled_scale_even_for_one_epoch(store):
    """The live accuracy has a labelled scale: one epoch is not a full bar, and 80→85 % is not ▁→█."""
    runner = ScriptedRunner(in_progress_events(RunConfig()), hold=True)  # one finished epoch
    app = make_app(store, runner=runner)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        await pilot.press("f5")
        try:
            await wait_until(pilot, runner.waiting.is_set)
            plot = screen.query_one("#accuracy-plot", EpochPlot)
            await wait_until(pilot, lambda: bool(plot.series))
            assert [(s.label, list(s.values)) for s in plot.series] == [
                ("train acc %", [75.0]), ("test acc %", [73.5]),
            ]
            built = Text.from_ansi(plot.plt.build()).plain
            assert "75.0" in built and "73.5" in built  # the y axis says what the points mean
        finally:
            screen.controller.cancel_event.set()

    run(app, scenario)


# --- bug 10: the form's words ----------------------------------------------------------------


def test_cannot_start_names_the_fields_in_the_forms_words(store):
    """The "cannot start" note names the fields in the form's words (L2 reg (λ)), not the code's (reg)."""
    app = make_app(store)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        screen.query_one("#reg", Input).value = "1000000000"
        screen.query_one("#batch_size", Input).value = "0"
        await pilot.pause()
        assert "got 1e+09" in text_of(screen.query_one("#reg-error", Label))
        assert "got 0" in text_of(screen.query_one("#batch_size-error", Label))
        screen.action_start()
        await pilot.pause()
        [note] = list(app._notifications)
        assert note.message == "cannot start: fix batch size, L2 reg (λ)"

    run(app, scenario)


def test_a_rejection_is_shown_in_the_forms_words(store):
    def rejecting(config, store, on_event, cancel, **options):
        raise RunRejectedError("batch_size: must be in [1, 300] for Fashion-MNIST, got 1000", "batch_size")

    app = make_app(store, runner=rejecting)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        await pilot.press("f5")
        await wait_until(pilot, lambda: not screen.running and "not started" in status_text(screen))
        assert status_text(screen) == "not started · batch size: must be in [1, 300] for Fashion-MNIST, got 1000"

    run(app, scenario)


# --- issue 11's app side: a run that will not fit --------------------------------------------------


def test_a_run_refused_because_it_will_not_fit_says_why_and_offers_to_force_it(store):
    calls: list[bool] = []
    events = completed_run_events(RunConfig(), epochs=1)

    def refusing_unless_forced(config, store, on_event, cancel, *, labels=None, force=False):
        calls.append(force)
        if not force:
            reason = "memory: the run needs an estimated 103.0 GiB, but only 23.0 GiB is available in RAM"
            raise RunRejectedError(reason, "memory")
        for event in events:
            on_event(event)

    app = make_app(store, runner=refusing_unless_forced)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        await pilot.press("f5")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        question = text_of(app.screen.query_one(".dialog-title", Label))
        assert "103.0 GiB" in question and "23.0 GiB" in question and "anyway" in question
        assert "not started · memory: the run needs" in status_text(screen)
        await pilot.press("y")
        await wait_until(pilot, lambda: len(calls) == 2 and not screen.running)
        assert status_text(screen).startswith("completed")

    run(app, scenario)
    assert calls == [False, True]


# --- checks before Start -----------------------------------------------------------------------


def test_checks_before_start_show_beside_their_fields(store):
    config = RunConfig(dataset="cifar10", hidden=(16384, 16384), device="cuda", data_root="/nonexistent/data")
    app = make_app(store, config=config, free=1 * GIB)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        not_found = "⚠ CIFAR-10 not found under /nonexistent/data: a run would try to download it"
        assert check_text(screen, "data_root") == not_found
        assert check_text(screen, "device") == "⚠ no NVIDIA GPU to use (no NVIDIA driver): choose cpu or auto"
        assert check_text(screen, "hidden").endswith("1.0 GiB GPU memory free: will not fit")
        screen.query_one("#device", Select).value = "cpu"
        screen.query_one("#hidden", Input).value = "16"
        screen.query_one("#dataset", Select).value = "fmnist"
        screen.query_one("#data_root", Input).value = ""
        await wait_until(pilot, lambda: not any(check_text(screen, f) for f in ("data_root", "device", "hidden")))

    run(app, scenario)


def test_a_data_root_with_markup_in_it_is_shown_as_text(store):
    app = make_app(store)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        screen.query_one("#data_root", Input).value = "/x[/y][link=z]w"
        await wait_until(pilot, lambda: "[link=z]w" in check_text(screen, "data_root"))
        assert check_text(screen, "data_root").startswith("⚠ Fashion-MNIST not found under /x[/y][link=z]w")

    run(app, scenario)


def test_the_device_picker_lists_each_gpu_with_its_free_memory(store):
    second = GpuSnapshot(True, "FakeGPU 80 GB", 1 * GIB, 80 * GIB, None, 0)
    app = make_app(store, config=RunConfig(device="cuda:2"), gpu=GPU, gpus=[GPU, second])

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        select = screen.query_one("#device", Select)
        options = [(str(prompt), value) for prompt, value in select._options]
        assert options[3:5] == [
            ("cuda:0 · 13.0 GiB free · FakeGPU 16 GB", "cuda:0"), ("cuda:1 · 79.0 GiB free · FakeGPU 80 GB", "cuda:1"),
        ]
        assert select.value == "cuda:2"  # a GPU this process does not see: the form's check says so
        assert check_text(screen, "device") == "⚠ there is no GPU 2: this process sees 2"
        select.value = "cuda:1"
        await wait_until(pilot, lambda: not check_text(screen, "device"))

    run(app, scenario)


# --- estimates ------------------------------------------------------------------------------


def test_the_estimates_keep_their_last_figures_marked_stale_while_a_field_is_invalid(store):
    app = make_app(store)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        figures = screen.query_one("#estimates-figures", Static)
        before = text_of(figures)
        screen.query_one("#hidden", Input).value = "256,"
        await pilot.pause()
        stale = text_of(figures)
        assert stale.startswith(before) and stale.endswith("(stale: fix the highlighted field)")
        screen.query_one("#hidden", Input).value = "256"
        await pilot.pause()
        assert text_of(figures) == before

    run(app, scenario)


def test_once_calibrated_the_estimate_the_log_and_the_eta_agree(store):
    config = RunConfig(epochs=3)
    events = completed_run_events(config, epochs=3)
    started = next(e for e in events if isinstance(e, Started))
    runner = ScriptedRunner(in_progress_events(config), hold=True)
    runner.events[0] = started
    app = make_app(store, runner=runner, config=config)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        await pilot.press("f5")
        try:
            await wait_until(pilot, runner.waiting.is_set)
            expected = time_estimate_text(started.time_estimate)
            await wait_until(pilot, lambda: expected in text_of(screen.query_one("#estimates-figures", Static)))
            logged = "".join(line.text for line in screen.log_view.lines)
            assert "".join(expected.split()) in "".join(logged.split())  # the log wraps lines
            total = format_seconds(started.time_estimate.total_seconds)
            assert expected.startswith(f"≈ {total} ")
        finally:
            screen.controller.cancel_event.set()

    run(app, scenario)


def test_the_live_status_starts_from_the_calibrated_total(store):
    config = RunConfig(epochs=3)
    events = completed_run_events(config, epochs=3)
    started = next(e for e in events if isinstance(e, Started))
    release = threading.Event()

    def starts_then_waits(config, store, on_event, cancel, **options):
        on_event(started)
        release.wait(TIMEOUT_S)
        raise RunRejectedError("done")

    app = make_app(store, runner=starts_then_waits, config=config)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        await pilot.press("f5")
        try:
            total = format_seconds(started.time_estimate.total_seconds)
            await wait_until(pilot, lambda: status_text(screen).startswith(f"ETA {total} · epoch 1/3"))
        finally:
            release.set()
        await wait_until(pilot, lambda: not screen.running)

    run(app, scenario)


# --- help -------------------------------------------------------------------------------------


def test_question_mark_opens_the_apps_keys_first_and_escape_closes_it(store):
    app = make_app(store)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        app.set_focus(None)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_screen = app.screen
        sections = help_screen.sections()
        assert [title for title, _ in sections][:3] == ["Everywhere", "Tuning screen", "Runs browser (F2)"]
        assert sections[-1][0] == "Text fields"
        tuning_keys = dict(sections[1][1])
        assert tuning_keys["f5"] == "Start" and tuning_keys["f6"] == "Stop"
        assert "a" in dict(sections[2][1])
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen)

    run(app, scenario)


def test_question_mark_in_a_field_is_typed_not_taken_as_help(store):
    app = make_app(store)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        field = screen.query_one("#data_root", Input)
        field.focus()
        await pilot.press("question_mark")
        await pilot.pause()
        assert field.value == "?" and app.screen is screen

    run(app, scenario)


def test_the_palettes_keys_command_opens_the_apps_help(store):
    app = make_app(store)

    async def scenario(pilot: Pilot, screen: TuningScreen) -> None:
        [keys] = [command for command in app.get_system_commands(screen) if command.title == "Keys"]
        keys.callback()
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))

    run(app, scenario)
