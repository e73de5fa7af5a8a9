"""Command palette entries (ctrl+p): load any preset, open the runs browser, save a preset, the sweeps,
several presets at once."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tuner_tui.formatting import config_brief

if TYPE_CHECKING:
    from tuner_tui.app.app import TunerApp

Command = tuple[str, str, Callable[[], object]]


class PresetCommands(Provider):
    """`Load preset NAME` for every shipped and user preset, and the app's screens."""

    def _commands(self) -> list[Command]:
        from tuner_tui.runs.presets import list_presets

        app = cast("TunerApp", self.app)
        commands: list[Command] = [
            (f"Load preset {p.name}", config_brief(p.config), partial(app.load_preset, p.name))
            for p in list_presets()
        ]
        commands.append(("Show runs", "browse, plot and compare stored runs (F2)", app.action_runs))
        commands.append(("Save as preset", "save the form's config (F3)", app.action_save_preset))
        commands.append(("Show sweeps", "start, stop and watch sweeps (F4)", app.action_sweeps))
        commands.append(("Run presets together", "mark presets and start them at once (F7)", app.action_presets))
        return commands

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
