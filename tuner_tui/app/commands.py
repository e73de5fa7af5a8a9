"""Command palette entries (ctrl+p): load any preset, open the runs screen, save a preset."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tuner_tui.formatting import config_brief


class PresetCommands(Provider):
    """`Load preset NAME` for every shipped and user preset."""

    def _commands(self) -> list[tuple[str, str, object]]:
        from tuner_tui.runs.presets import list_presets

        app = self.app
        commands = [
            (f"Load preset {p.name}", config_brief(p.config), partial(app.load_preset, p.name))
            for p in list_presets()
        ]
        commands.append(("Show runs", "browse and compare stored runs (F2)", app.action_runs))
        commands.append(("Save as preset", "save the form's config (F3)", app.action_save_preset))
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
