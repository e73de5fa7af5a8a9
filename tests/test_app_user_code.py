"""Your own training code in the app, driven with Textual's pilot: the form built from the model's
fields (inputs and selects, each checked by its field's rule), F5 runs the real function in its child
process with its metrics drawn live, F6 stops it, and the runs land in the store and the browser."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input, Label, Select

from tests import support
from tests.support import run_on_screen, wait_until
from tests.test_user_code import MODEL_PY, MODEL_TOML
from tuner_tui.app.app import TunerApp
from tuner_tui.app.components.metrics_view import MetricsLiveView
from tuner_tui.app.components.model_screen import ModelScreen
from tuner_tui.app.components.run_detail import RunDetailScreen
from tuner_tui.app.components.runs_screen import RunsScreen
from tuner_tui.engine.events import RunStatus
from tuner_tui.runs.store import ResultsStore
from tuner_tui.usercode.config import user_config
from tuner_tui.usercode.model_file import load_model_file

RUN_TIMEOUT_S = 300.0


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_env: dict[str, str]) -> Path:
    monkeypatch.setenv("TINY_MARKER", str(tmp_path / "reached"))
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny.py").write_text(MODEL_PY)
    for function in ("train", "polite"):
        (folder / f"{function}.toml").write_text(MODEL_TOML.format(file="tiny.py", function=function))
    return folder


def make_app(store: ResultsStore, model_file: Path) -> TunerApp:
    model = load_model_file(model_file)
    return support.make_app(store, model=model, model_config=user_config(model, {"epochs": 2}))


def run(app: TunerApp, scenario: Callable[[Pilot, ModelScreen], Awaitable[None]]) -> None:
    run_on_screen(app, ModelScreen, scenario)


def test_the_form_has_an_input_or_a_select_per_field_each_checked_by_its_rule(model_dir, isolated) -> None:
    with ResultsStore(Path(isolated["TUNER_TUI_STORE"])) as store:
        app = make_app(store, model_dir / "train.toml")

        async def scenario(pilot: Pilot, screen: ModelScreen) -> None:
            form = screen.form
            assert form.query_one("#field-lr", Input).value == "0.5"
            assert form.query_one("#field-epochs", Input).value == "2"
            assert str(form.query_one("#field-width", Select).value) == "8"
            assert str(form.query_one("#field-optimizer", Select).value) == "sgd"
            assert str(form.query_one("#field-shuffle", Select).value) == "false"
            form.query_one("#field-lr", Input).value = "7"
            await wait_until(pilot, lambda: screen.form_state is not None and "lr" in screen.form_state.errors)
            assert screen.query_one("#start", Button).disabled
            assert "must be a number in [0.0001, 2]" in str(form.query_one("#field-lr-error", Label).render())
            await pilot.press("f5")
            assert not screen.running  # F5 with an invalid field starts nothing
            form.query_one("#field-lr", Input).value = "0.25"
            await wait_until(pilot, lambda: not screen.query_one("#start", Button).disabled)

        run(app, scenario)


def test_f5_runs_the_function_with_its_metrics_live_and_stores_it(model_dir, isolated) -> None:
    with ResultsStore(Path(isolated["TUNER_TUI_STORE"])) as store:
        app = make_app(store, model_dir / "train.toml")

        async def scenario(pilot: Pilot, screen: ModelScreen) -> None:
            await wait_until(pilot, lambda: screen.form_state is not None and screen.form_state.values is not None)
            await pilot.press("f5")
            await wait_until(pilot, lambda: screen.running)
            await wait_until(pilot, lambda: not screen.running, RUN_TIMEOUT_S)
            live = screen.query_one(MetricsLiveView)
            assert [r.epoch for r in live.reports] == [1, 2]
            plotted = {s.label for s in screen.query_one("#headline-plot").series}  # type: ignore[attr-defined]
            assert plotted == {"val_accuracy"}
            others = {s.label for s in screen.query_one("#metrics-plot").series}  # type: ignore[attr-defined]
            assert others == {"loss"}
            assert "completed" in str(screen.query_one("#run-status", Label).render())
            [stored] = store.list_runs()
            assert stored.status is RunStatus.COMPLETED and len(stored.epochs) == 2
            await pilot.press("f2")
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
            await pilot.pause(0.2)
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
            assert app.screen.query_one("#detail-loss").series  # type: ignore[attr-defined]

        run(app, scenario)


def test_f6_stops_the_run_at_its_next_report_and_it_is_stored_cancelled(model_dir, isolated, tmp_path) -> None:
    with ResultsStore(Path(isolated["TUNER_TUI_STORE"])) as store:
        app = make_app(store, model_dir / "polite.toml")

        async def scenario(pilot: Pilot, screen: ModelScreen) -> None:
            await wait_until(pilot, lambda: screen.form_state is not None and screen.form_state.values is not None)
            await pilot.press("f5")
            await wait_until(pilot, (tmp_path / "reached").exists, RUN_TIMEOUT_S)
            await pilot.press("f6")
            await wait_until(pilot, lambda: not screen.running, RUN_TIMEOUT_S)
            assert (tmp_path / "reached.finally").exists()
            [stored] = store.list_runs()
            assert stored.status is RunStatus.CANCELLED and len(stored.epochs) >= 2

        run(app, scenario)
