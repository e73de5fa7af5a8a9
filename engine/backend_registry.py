"""Choose a backend by the config's `engine` name."""

from __future__ import annotations

from tuner_tui.engine.backend_base import Backend
from tuner_tui.engine.batching import DeviceData
from tuner_tui.engine.config import Conventions, EngineName
from tuner_tui.engine.fused import FusedMLPBackend
from tuner_tui.engine.params import MLPParams
from tuner_tui.engine.reference_backends import AutogradBackend, GraphBackend

BACKENDS: dict[EngineName, type[Backend]] = {
    "native": FusedMLPBackend,
    "graph": GraphBackend,
    "autograd": AutogradBackend,
}


def make_backend(
    engine: EngineName,
    params: MLPParams,
    data: DeviceData,
    *,
    lr: float,
    reg: float,
    batch_size: int,
    conventions: Conventions,
    seed: int = 0,
) -> Backend:
    """An instance of the backend named `engine` (native | graph | autograd)."""
    return BACKENDS[engine](
        params, data, lr=lr, reg=reg, batch_size=batch_size, conventions=conventions, seed=seed
    )
