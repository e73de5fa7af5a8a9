"""Choose a backend by the config's `engine` name."""

from __future__ import annotations

from engine.backend import Backend
from engine.batching import DeviceData
from engine.config import Conventions, EngineName
from engine.fused import FusedMLPBackend
from engine.params import MLPParams
from engine.reference_backends import AutogradBackend, GraphBackend

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
