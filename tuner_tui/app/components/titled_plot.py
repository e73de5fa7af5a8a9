"""The base of the sweep and study plots: a textual-plotext plot with a title, what it says when there is
nothing to draw, and a drawing error shown as a line instead of ending the app."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

View = TypeVar("View")


class TitledPlot(PlotextPlot, Generic[View]):
    """A plot of one kind of view; `show(view)` redraws it, and so does a resize (what fits changes)."""

    def __init__(self, title: str, *, empty: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.empty = empty
        self.view: View | None = None
        self.show(None)

    def render(self) -> RenderResult:
        try:
            return super().render()
        except Exception as error:  # plotext failing on some data must not end the app
            return Text(f"{self.title}: cannot draw this ({type(error).__name__})")

    def on_resize(self) -> None:
        self.show(self.view)

    def show(self, view: View | None) -> None:
        self.view = view
        self.plt.clear_figure()
        message = self.draw(view) if view is not None else self.empty
        if message is not None:
            self.plt.title(f"{self.title}: {message}")
        self.refresh()

    def draw(self, view: View) -> str | None:
        """Draw `view`; what to say instead when there is nothing to draw yet."""
        raise NotImplementedError
