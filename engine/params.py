"""The MLP's parameters and their initialization under each set of conventions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch

from tuner_tui.engine.architecture import layer_sizes
from tuner_tui.engine.config import Conventions

LAB4_INIT_SCALE = 0.1


@dataclass
class MLPParams:
    """Weights (out × in, the lab's orientation) and biases, one pair per linear layer."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]

    def tensors(self) -> list[torch.Tensor]:
        """All parameters in a fixed order: W1, b1, W2, b2, …"""
        return [t for pair in zip(self.weights, self.biases, strict=True) for t in pair]

    def clone(self) -> MLPParams:
        return MLPParams([w.clone() for w in self.weights], [b.clone() for b in self.biases])


def init_params(
    features: int,
    hidden: tuple[int, ...] | list[int],
    classes: int,
    *,
    conventions: Conventions,
    seed: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> MLPParams:
    """Draw the parameters on the CPU from `seed` (so every device gets the same numbers).

    `lab4`: standard normal × 0.1, biases zero. `standard`: Kaiming-normal for layers that feed a
    ReLU, Glorot-normal for the output layer, biases zero.
    """
    generator = torch.Generator().manual_seed(seed)
    sizes = layer_sizes(features, hidden, classes)
    weights, biases = [], []
    for index, (n_in, n_out) in enumerate(pairwise(sizes)):
        w = torch.randn(n_out, n_in, generator=generator, dtype=torch.float64)
        if conventions == "lab4":
            w *= LAB4_INIT_SCALE
        elif index < len(sizes) - 2:
            w *= math.sqrt(2.0 / n_in)
        else:
            w *= math.sqrt(2.0 / (n_in + n_out))
        weights.append(w.to(device=device, dtype=dtype))
        biases.append(torch.zeros(n_out, dtype=dtype, device=device))
    return MLPParams(weights, biases)
