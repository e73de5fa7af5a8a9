"""Live estimates for the config in the form: parameters, memory against free memory, time.

While a field is briefly invalid (half-typed), the panel keeps the last valid figures, marked
stale, instead of collapsing the layout on every keystroke. Once a run has calibrated, the time
shown for its config is the calibrated one, the same figure the log and the ETA start from. The
memory breakdown is its own line, so the compact layout can fold it away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from tuner_tui.engine.architecture import count_parameters
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.dataset_specs import DATASET_SPECS
from tuner_tui.engine.events import TimeEstimate
from tuner_tui.engine.memory_model import estimate_memory
from tuner_tui.engine.units import format_bytes
from tuner_tui.formatting import format_seconds, time_estimate_text

SHORT_PART_NAMES = {
    "dataset": "data",
    "parameters": "params",
    "gradients + step buffers": "buffers",
    "activations (train batch)": "batch",
    "activations (test pass)": "test pass",
    "runtime overhead": "runtime",
}


@dataclass(frozen=True)
class DeviceContext:
    """What the estimates need to know of the device the run would take."""

    device_type: str  # "cuda" or "cpu"
    free_bytes: int | None
    context_bytes: int | None = None  # remembered CUDA context, if measured before
    seconds_per_step: float | None = None  # from the store's history on this device and shape


class EstimatesPanel(Vertical):
    """Figures for the form's config; `show()` whenever the config or the device context changes."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shown: tuple[RunConfig, DeviceContext] | None = None
        self.calibrated: tuple[RunConfig, TimeEstimate] | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("fix the highlighted fields to see estimates", style="italic"), id="estimates-figures")
        yield Static("", id="estimates-breakdown")

    def show(self, config: RunConfig | None, device: DeviceContext) -> None:
        """The figures of `config`; with None (an invalid field), the last ones, marked stale."""
        figures = self.query_one("#estimates-figures", Static)
        breakdown = self.query_one("#estimates-breakdown", Static)
        if config is None:
            if self.shown is None:
                return
            stale = render_figures(*self.shown, self._calibration_of(self.shown[0]))
            stale.stylize("dim")
            stale.append("\n(stale: fix the highlighted field)", style="italic")
            figures.update(stale)
            return
        self.shown = (config, device)
        figures.update(render_figures(config, device, self._calibration_of(config)))
        breakdown.update(render_breakdown(config, device))

    def show_calibrated(self, config: RunConfig, estimate: TimeEstimate, device: DeviceContext) -> None:
        """A run of `config` has calibrated: its time is shown from now on for that config."""
        self.calibrated = (config, estimate)
        if self.shown is not None and self.shown[0] == config:
            self.show(config, device)

    def _calibration_of(self, config: RunConfig) -> TimeEstimate | None:
        if self.calibrated is not None and self.calibrated[0] == config:
            return self.calibrated[1]
        return None


def render_figures(config: RunConfig, device: DeviceContext, calibrated: TimeEstimate | None = None) -> Text:
    """Parameters, memory against free memory, and time, one line each."""
    spec = DATASET_SPECS[config.dataset]
    params = count_parameters(spec.features, config.hidden, spec.classes)
    text = Text()
    text.append("params ", style="bold")
    text.append(f"{params:,}  ({config.layers_label})\n")

    memory = estimate_memory(config, device_type=device.device_type, context_bytes=device.context_bytes)
    text.append("memory ", style="bold")
    text.append(f"≈ {format_bytes(memory.total)}")
    where = "GPU" if device.device_type == "cuda" else "RAM"
    if device.free_bytes is not None:
        text.append(f" of {format_bytes(device.free_bytes)} free {where}")
        if memory.total > device.free_bytes:
            text.append("  ✗ will not fit", style="bold reverse")
    text.append("\n")

    text.append("time   ", style="bold")
    if calibrated is not None:
        text.append(f"{time_estimate_text(calibrated)}, calibrated")
    elif device.seconds_per_step is None:
        text.append("calibrates at start")
    else:
        steps = math.ceil(spec.train_size / config.batch_size) * config.epochs
        text.append(f"≈ {format_seconds(device.seconds_per_step * steps)} training (past runs on this device)")
    return text


def render_breakdown(config: RunConfig, device: DeviceContext) -> Text:
    """The memory estimate by part, on one line."""
    memory = estimate_memory(config, device_type=device.device_type, context_bytes=device.context_bytes)
    parts = [f"{SHORT_PART_NAMES[k]} {format_bytes(v)}" for k, v in memory.parts().items() if v]
    return Text("  " + " · ".join(parts), style="dim")
