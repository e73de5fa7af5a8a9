"""The runs browser, a run's plots and the compare screen, driven with Textual's pilot.

Runs are stored by the scripted runner (fixed numbers, no torch) into a store under tmp_path.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, Static

from tests import support
from tests.fake_runner import ScriptedRunner, completed_run_events, diverged_run_events, store_run
from tests.support import SIZE, run_pilot, wait_until
from tuner_tui.app.app import TunerApp
from tuner_tui.app.components.compare_screen import CompareScreen
from tuner_tui.app.components.confirm import ConfirmScreen
from tuner_tui.app.components.epoch_plot import EpochPlot
from tuner_tui.app.components.prompts import ChoiceScreen, TextPromptScreen
from tuner_tui.app.components.run_detail import RunDetailScreen
from tuner_tui.app.components.runs_screen import RunsScreen
from tuner_tui.app.components.tuning_screen import TuningScreen
from tuner_tui.engine.config import RunConfig
from tuner_tui.runs.records import RunLabels
from tuner_tui.runs.store import ResultsStore

pytestmark = pytest.mark.usefixtures("isolated")


def record(store: ResultsStore, config: RunConfig, events=None, preset: str | None = None) -> None:
    store_run(store, config, events or completed_run_events(config, epochs=config.epochs), RunLabels(preset=preset))


def three_runs(store: ResultsStore) -> None:
    """1: fmnist 83.5 % (3 epochs), 2: diverged (lr 5), 3: cifar10 78.5 % (2 epochs)."""
    record(store, RunConfig(epochs=3), preset="fmnist_exp1")
    wild = RunConfig(lr=5.0, batch_size=100)
    record(store, wild, diverged_run_events(wild, step=734))
    record(store, RunConfig(dataset="cifar10", hidden=(512, 256), lr=0.001, batch_size=50, epochs=2))


def make_app(store: ResultsStore) -> TunerApp:
    return support.make_app(store, runner=ScriptedRunner(completed_run_events(RunConfig())))


async def open_browser(pilot: Pilot) -> RunsScreen:
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, TuningScreen))
    await pilot.press("f2")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen))
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, RunsScreen)
    return screen


def shown_ids(screen: RunsScreen) -> list[int]:
    return [row.id for row in screen.table.ordered()]


def status(screen: RunsScreen) -> str:
    return str(screen.query_one("#runs-status", Label).render())


def browse(store: ResultsStore, scenario: Callable[[Pilot, RunsScreen], Awaitable[object]], size=SIZE) -> None:
    async def in_browser(pilot: Pilot) -> None:
        await scenario(pilot, await open_browser(pilot))

    run_pilot(make_app(store), in_browser, size=size)


def test_the_browser_lists_runs_newest_first_with_id_date_and_duration_and_stars_the_best(store):
    three_runs(store)

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        assert shown_ids(screen) == [3, 2, 1]
        titles = [str(column.label) for column in screen.table.columns.values()]
        assert titles[1:6] == ["id", "run", "status", "test acc", "time"]  # the key columns first
        assert {"date", "duration", "CE", "lab loss"} <= set(titles)
        assert screen.table.best == {"1"}
        assert str(screen.table.get_cell("1", "mark")).strip() == "★"

    browse(store, scenario)


def test_a_sorts_by_test_accuracy_best_first_in_one_press(store):
    three_runs(store)

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        await pilot.press("a")
        assert shown_ids(screen) == [1, 3, 2]
        assert "by test acc ▼" in status(screen)
        assert screen.table.current_key() == "1"  # the cursor on the best run, whichever it was on

    browse(store, scenario)


def test_the_sort_menu_sorts_by_any_column_and_the_same_column_again_reverses(store):
    three_runs(store)

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        for expected in ([3, 1, 2], [2, 1, 3]):  # by learning rate: 0.001, 0.01, 5, then reversed
            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(pilot.app.screen, ChoiceScreen))
            pilot.app.screen.dismiss("lr")
            await wait_until(pilot, lambda: pilot.app.screen is screen)
            await pilot.pause()
            assert shown_ids(screen) == expected

    browse(store, scenario)


def test_the_filter_keeps_runs_by_status_dataset_and_lr_range(store):
    three_runs(store)

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        await pilot.press("slash", *"status:completed")
        assert sorted(shown_ids(screen)) == [1, 3]
        field = screen.query_one("#runs-filter", Input)
        field.value = "dataset:fmnist lr:0.005..1"
        await pilot.pause()
        assert shown_ids(screen) == [1]
        field.value = "preset:fmnist_exp"
        await pilot.pause()
        assert shown_ids(screen) == [1]
        await pilot.press("escape")  # leaves the filter, cleared
        assert shown_ids(screen) == [3, 2, 1] and screen.table.has_focus

    browse(store, scenario)


def test_a_filter_that_matches_nothing_says_so_not_that_no_runs_are_stored(store):
    """A filter that leaves no run says that nothing matches it, not "no runs stored yet"."""
    three_runs(store)

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        await pilot.press("slash", *"dataset:cifar100")
        assert shown_ids(screen) == []
        assert "no run matches the filter 'dataset:cifar100' (3 runs stored)" in status(screen)
        assert "no runs stored yet" not in status(screen)

    browse(store, scenario)


def test_an_unreadable_filter_term_is_named_and_the_runs_stay_listed(store):
    three_runs(store)

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        await pilot.press("slash", *"lr:abc")
        assert "✗ filter: lr:abc: 'abc' is not a number" in status(screen)
        assert len(shown_ids(screen)) == 3

    browse(store, scenario)


def test_enter_opens_the_runs_plots_and_its_epochs(store):
    three_runs(store)

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        await pilot.press("down", "down", "enter")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))
        detail = pilot.app.screen
        accuracy = detail.query_one("#detail-accuracy", EpochPlot)
        assert [(s.label, list(s.values)) for s in accuracy.series] == [
            ("train", [75.0, 80.0, 85.0]), ("test", [73.5, 78.5, 83.5]),
        ]
        loss = detail.query_one("#detail-loss", EpochPlot)
        assert [(s.label, s.right) for s in loss.series] == [("lab loss (left)", False), ("CE (right)", True)]
        assert detail.query_one("#epoch-table", DataTable).row_count == 3
        built = Text.from_ansi(accuracy.plt.build()).plain
        assert "epoch" in built and "85.0" in built  # axes with ticks
        await pilot.press("escape")
        await wait_until(pilot, lambda: pilot.app.screen is screen)

    browse(store, scenario)


def test_compare_overlays_any_number_of_marked_runs_with_a_legend(store):
    three_runs(store)

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        await pilot.press("space", "down", "space", "down", "space", "c")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        compare = pilot.app.screen
        accuracy = compare.query_one("#compare-accuracy", EpochPlot)
        assert [s.label for s in accuracy.series] == ["run 3", "run 2", "#1 fmnist_exp1"]
        built = Text.from_ansi(accuracy.plt.build()).plain
        assert all(label in built for label in ("run 3", "run 2", "#1 fmnist_exp1"))  # the legend
        table = compare.query_one("#compare-table", DataTable)
        titles = [str(table.get_row_at(i)[0]).strip() for i in range(table.row_count)]
        assert "≠ batch size" in titles and "CE" in titles and "lab loss" in titles  # the form's words
        assert not any("batch_size" in title for title in titles)

    browse(store, scenario)


def test_compare_at_80x24_scrolls_to_everything(store):
    """At 80×24 the compare screen scrolls, so everything on it can be reached."""
    three_runs(store)

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        await pilot.press("space", "down", "space", "c")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        await pilot.pause()
        body = pilot.app.screen.query_one("#compare-body")
        assert body.max_scroll_y > 0
        body.scroll_end(animate=False)
        await pilot.pause()
        table = pilot.app.screen.query_one("#compare-table", DataTable)
        assert table.region.bottom <= pilot.app.screen.query_one("#compare-body").region.bottom

    browse(store, scenario, size=(80, 24))


def test_at_80x24_the_key_columns_and_the_load_key_are_on_screen(store):
    """At 80 columns the runs table still shows test acc (its 11th column) and the `l` key."""
    three_runs(store)

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        table = screen.table
        right_edge = sum(column.get_render_width(table) for column in list(table.columns.values())[:6])
        assert right_edge <= 80  # marks, id, run, status, test acc, time
        keys = [binding.key for (_, binding, enabled, _) in screen.active_bindings.values() if binding.show]
        assert "l" in keys and "a" in keys

    browse(store, scenario, size=(80, 24))


def test_tags_and_a_note_are_stored_and_shown(store):
    three_runs(store)

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, TextPromptScreen))
        await pilot.press(*"best, baseline", "enter")
        await wait_until(pilot, lambda: pilot.app.screen is screen)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, TextPromptScreen))
        await pilot.press(*"try lr 0.003 next", "enter")
        await wait_until(pilot, lambda: pilot.app.screen is screen)
        assert str(screen.table.get_cell("3", "tags")) == "baseline, best"
        assert "try lr 0.003 next" in str(screen.query_one("#run-preview", Static).render())
        await pilot.press("slash", *"tag:base")
        assert shown_ids(screen) == [3]

    browse(store, scenario)
    updated = store.get_run(3)
    assert (updated.tags, updated.note) == (("baseline", "best"), "try lr 0.003 next")


def test_delete_asks_first_and_removes_the_run(store):
    three_runs(store)

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        await pilot.press("n")
        await wait_until(pilot, lambda: pilot.app.screen is screen)
        assert shown_ids(screen) == [3, 2, 1]
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: pilot.app.screen is screen)
        assert shown_ids(screen) == [2, 1]

    browse(store, scenario)
    assert [r.id for r in store.list_runs()] == [2, 1]


def test_an_unreadable_row_is_listed_as_unreadable_with_the_others(store, tmp_path):
    three_runs(store)
    with sqlite3.connect(tmp_path / "runs.sqlite3") as conn:
        conn.execute("""UPDATE runs SET config = '{"hidden": "x", "from_the_future": 1}' WHERE id = 2""")

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        assert shown_ids(screen) == [3, 2, 1]
        assert str(screen.table.get_cell("2", "run")) == "⚠ unreadable"
        assert "1 unreadable" in status(screen)
        await pilot.press("down")
        assert "run 2 cannot be read by this version" in str(screen.query_one("#run-preview", Static).render())
        await pilot.press("enter")  # says why instead of opening
        await pilot.pause()
        assert pilot.app.screen is screen

    browse(store, scenario)


def test_store_text_with_markup_is_shown_as_plain_text(store):
    """A preset label like `[/]` or `[link=…]` in the store must not crash or turn into markup."""
    record(store, RunConfig(epochs=1), preset="[/]")
    record(store, RunConfig(epochs=1), preset="[link=https://example.com]click[/link]")

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        assert str(screen.table.get_cell("1", "run")) == "[/]"
        assert str(screen.table.get_cell("2", "run")) == "[link=https://example.com]click[/link]"
        assert "[link=https://example.com]click[/link]" in str(screen.query_one("#run-preview", Static).render())
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))

    browse(store, scenario)


def test_l_loads_the_highlighted_runs_config_and_a_finished_run_refreshes_the_browser(store):
    three_runs(store)

    async def scenario(pilot: Pilot, screen: RunsScreen) -> None:
        await pilot.press("down", "down", "l")
        app = pilot.app
        await wait_until(pilot, lambda: app.screen is app.tuning)
        assert app.tuning.form.values()["epochs"] == "3"

    browse(store, scenario)
