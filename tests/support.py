"""What the app, sweep and fault tests share: waits with a deadline (a thread's, and a Textual
pilot's), the app wired to test doubles, the pilot runner, the tiny sweep spec and the CLI runner.

No async pytest plugin is installed: a pilot scenario runs under `asyncio.run` (`run_pilot`).
Every wait here fails loudly at its deadline; none waits for ever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen

from tests.doubles import FakeGpuProbe, FixedSystemInfo
from tuner_tui.app.app import TunerApp
from tuner_tui.app.components.tuning_screen import TuningScreen
from tuner_tui.engine.gpu import GpuSnapshot
from tuner_tui.runs.store import ResultsStore

GIB = 1024**3
UI_TIMEOUT_S = 60.0  # a ceiling for loaded machines; the app usually answers in well under a second
POLL_S = 0.05
SIZE = (120, 40)
NO_DRIVER = GpuSnapshot.unavailable("no NVIDIA driver")

ScreenT = TypeVar("ScreenT", bound=Screen)


# --- waiting -------------------------------------------------------------------------------------


def wait_for(condition: Callable[[], object], timeout: float, what: str, *, poll: float = POLL_S) -> None:
    """Poll `condition` until it holds; fail with "timed out waiting for {what}" after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


async def wait_until(
    pilot: Pilot, done: Callable[[], object], timeout: float = UI_TIMEOUT_S, *, poll: float = 0.02,
    what: str = "the app",
) -> None:
    """Let the app process messages until `done()` holds; fail after `timeout` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await pilot.pause(poll)


async def settle(pilot: Pilot, done: Callable[[], object], *, timeout: float = UI_TIMEOUT_S) -> None:
    """`wait_until`, then a few frames more and any scheduled animation: a still screen to compare."""
    await wait_until(pilot, done, timeout=timeout, poll=0.01, what="the app to reach the expected state")
    for _ in range(3):
        await pilot.pause()
    await pilot.wait_for_scheduled_animations()


# --- the app on test doubles ---------------------------------------------------------------------


def make_app(
    store: ResultsStore, *, gpu: GpuSnapshot = NO_DRIVER, gpus: list[GpuSnapshot] | None = None,
    free: int = 8 * GIB, device_names: dict[str, str] | None = None, **options: Any,
) -> TunerApp:
    """The app on `store` with a fake GPU probe (`gpu`), fixed system answers (`free` bytes free),
    `gpus` as the GPUs listed, and no GPU watcher; `options` go to `TunerApp` (runner=, config=…)."""
    probe = FakeGpuProbe(gpu)
    listed = list(gpus or [])
    return TunerApp(
        store, gpu_probe=probe, system=FixedSystemInfo(probe, free=free, device_names=device_names),
        list_gpus=lambda: list(listed), watch_gpu=False, **options,
    )


def run_pilot(app: App, scenario: Callable[[Pilot], Awaitable[object]], *, size: tuple[int, int] | None = SIZE) -> None:
    """Run `app` headless at `size` (None: Textual's 80×24) and drive it with `scenario`."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await scenario(pilot)

    asyncio.run(main())


async def open_screen(
    pilot: Pilot, screen_type: type[ScreenT], key: str | None = None, *, timeout: float = UI_TIMEOUT_S,
) -> ScreenT:
    """Wait for the app's first screen (the tuning screen or `screen_type`); unless it is already
    `screen_type`, press `key`; then wait for `screen_type` and return it."""
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, TuningScreen | screen_type), timeout=timeout)
    if key is not None and not isinstance(app.screen, screen_type):
        await pilot.press(key)
    await wait_until(pilot, lambda: isinstance(app.screen, screen_type), timeout=timeout)
    screen = app.screen
    assert isinstance(screen, screen_type)
    return screen


def run_on_screen(
    app: TunerApp, screen_type: type[ScreenT], scenario: Callable[[Pilot, ScreenT], Awaitable[object]], *,
    key: str | None = None, size: tuple[int, int] = SIZE, timeout: float = UI_TIMEOUT_S,
) -> None:
    """`run_pilot` on `screen_type` (opened with `key` from the tuning screen; see `open_screen`)."""

    async def on_screen(pilot: Pilot) -> None:
        await scenario(pilot, await open_screen(pilot, screen_type, key, timeout=timeout))

    run_pilot(app, on_screen, size=size)


# --- the tiny sweep --------------------------------------------------------------------------------


def tiny_spec(
    *, title: str | None = None, objective: str | None = "val_accuracy", sampler: str = "random",
    pruner: str | None = "none", epochs: int = 2, trials: int = 4, extra: str = "",
) -> str:
    """A search spec of 784→16→10 on CPU (lr and batch size searched, validation 0.2, seed 3).

    title: a first comment line; objective, pruner: None leaves the line out (the spec's default);
    extra: lines added at the end of [search].
    """
    lines = [f"# {title}"] if title else []
    lines += [
        'base = "fmnist_quick"',
        "[config]",
        "hidden = [16]",
        'device = "cpu"',
        "[space]",
        "lr = { log_uniform = [0.001, 0.5] }",
        "batch_size = { choice = [20, 50] }",
        "[search]",
    ]
    if objective is not None:
        lines.append(f'objective = "{objective}"')
    lines += ["validation = 0.2", f'sampler = "{sampler}"']
    if pruner is not None:
        lines.append(f'pruner = "{pruner}"')
    lines += [f"epochs = {epochs}", f"trials = {trials}", "seed = 3"]
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n"


def write_spec(directory: Path, name: str = "tiny", **spec: Any) -> Path:
    """`tiny_spec(**spec)` as `directory/name.toml`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(tiny_spec(**spec))
    return path


# --- the CLI in-process ----------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`tuner-tui argv…` in this process: (exit code, stdout, stderr)."""
    from tuner_tui.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
