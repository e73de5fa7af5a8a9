"""Live estimates for the config in the form: parameters, memory against free memory, time."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from engine.architecture import count_parameters
from engine.config import RunConfig
from engine.dataset_specs import DATASET_SPECS
from engine.memory_model import estimate_memory
from tuner_tui.formatting import format_bytes, format_seconds

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


class EstimatesPanel(Static):
    """Re-renders whenever the form's config or the device context changes."""

    def show(self, config: RunConfig | None, device: DeviceContext) -> None:
        self.update(render_estimates(config, device))


def render_estimates(config: RunConfig | None, device: DeviceContext) -> Text:
    text = Text()
    if config is None:
        text.append("fix the highlighted fields to see estimates", style="italic")
        return text
    spec = DATASET_SPECS[config.dataset]
    params = count_parameters(spec.features, config.hidden, spec.classes)
    text.append("parameters  ", style="bold")
    text.append(f"{params:,}  ({config.layers_label})\n")

    memory = estimate_memory(config, device_type=device.device_type, context_bytes=device.context_bytes)
    text.append("memory      ", style="bold")
    text.append(f"≈ {format_bytes(memory.total)}")
    where = "GPU" if device.device_type == "cuda" else "RAM"
    if device.free_bytes is not None:
        text.append(f" of {format_bytes(device.free_bytes)} free {where}")
        if memory.total > device.free_bytes:
            text.append("  ✗ will not fit", style="bold reverse")
    text.append("\n")
    parts = [f"{SHORT_PART_NAMES[k]} {format_bytes(v)}" for k, v in memory.parts().items() if v]
    text.append("  " + " · ".join(parts) + "\n", style="dim")

    text.append("time        ", style="bold")
    if device.seconds_per_step is None:
        text.append("calibrates at start")
    else:
        steps = math.ceil(spec.train_size / config.batch_size) * config.epochs
        text.append(f"≈ {format_seconds(device.seconds_per_step * steps)} (past runs on this device)")
    return text
