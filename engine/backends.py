"""Choose a backend by the config's `engine` name."""

from __future__ import annotations

from engine.backend import Backend
from engine.fused import FusedMLPBackend
from engine.reference_backends import AutogradBackend, GraphBackend

BACKENDS: dict[str, type[Backend]] = {
    "native": FusedMLPBackend,
    "graph": GraphBackend,
    "autograd": AutogradBackend,
}


def make_backend(engine: str, *args, **kwargs) -> Backend:
    """An instance of the backend named `engine` (native | graph | autograd)."""
    return BACKENDS[engine](*args, **kwargs)
