"""Drawing at most a few times a second: the pacer, and the run log that writes through one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from textual.app import App, ComposeResult
from textual.pilot import Pilot

from tests.support import run_pilot, wait_until
from tuner_tui.app.components.run_log import RunLog
from tuner_tui.app.draw_pacer import DrawPacer

INTERVAL_S = 0.2


class LogApp(App):
    def compose(self) -> ComposeResult:
        yield RunLog(id="run-log")


@asynccontextmanager
async def mounted_log() -> AsyncIterator[tuple[Pilot, RunLog]]:
    """A running app with a RunLog that knows its size (a RichLog holds writes back until then)."""
    async with LogApp().run_test() as pilot:
        await pilot.pause()
        yield pilot, pilot.app.query_one(RunLog)


def written(log: RunLog) -> list[str]:
    return [line.text.rstrip() for line in log.lines]


def test_the_first_request_draws_at_once():
    draws: list[int] = []

    async def scenario(pilot: Pilot) -> None:
        DrawPacer(pilot.app, lambda: draws.append(1), INTERVAL_S).request()
        assert draws == [1]

    run_pilot(App(), scenario, size=None)


def test_requests_within_the_interval_make_one_draw_at_its_end():
    draws: list[int] = []

    async def scenario(pilot: Pilot) -> None:
        pacer = DrawPacer(pilot.app, lambda: draws.append(len(draws)), INTERVAL_S)
        for _ in range(5):
            pacer.request()
        assert draws == [0]
        await pilot.pause(INTERVAL_S * 3)
        assert draws == [0, 1]

    run_pilot(App(), scenario, size=None)


def test_now_draws_at_once_and_drops_the_pending_draw():
    draws: list[int] = []

    async def scenario(pilot: Pilot) -> None:
        pacer = DrawPacer(pilot.app, lambda: draws.append(len(draws)), INTERVAL_S)
        pacer.request()
        pacer.request()  # pending
        pacer.now()
        assert draws == [0, 1]
        await pilot.pause(INTERVAL_S * 3)
        assert draws == [0, 1]

    run_pilot(App(), scenario, size=None)


def test_run_log_writes_lines_added_within_a_second_together_in_order():
    async def scenario() -> None:
        async with mounted_log() as (pilot, log):
            log.add_line("epoch 1")
            log.add_line("epoch 2")
            log.add_line("epoch 3")
            assert written(log) == ["epoch 1"]
            assert log.unwritten == ["epoch 2", "epoch 3"]
            await wait_until(pilot, lambda: not log.unwritten, poll=0.05)
            assert written(log) == ["epoch 1", "epoch 2", "epoch 3"]

    asyncio.run(scenario())


def test_run_log_now_writes_the_waiting_lines_first():
    async def scenario() -> None:
        async with mounted_log() as (_pilot, log):
            log.add_line("epoch 1")
            log.add_line("epoch 2")
            log.add_line("completed: 2 epochs", now=True)
            assert written(log) == ["epoch 1", "epoch 2", "completed: 2 epochs"]
            assert log.unwritten == []

    asyncio.run(scenario())
