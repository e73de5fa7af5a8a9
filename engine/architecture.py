"""Layer sizes and parameter counts of the MLP (pure arithmetic, no torch)."""

from __future__ import annotations

from itertools import pairwise


def layer_sizes(features: int, hidden: tuple[int, ...] | list[int], classes: int) -> list[int]:
    """`[features, *hidden, classes]`."""
    return [features, *hidden, classes]


def count_parameters(features: int, hidden: tuple[int, ...] | list[int], classes: int) -> int:
    """Weights plus biases, e.g. D*H + H + 10*H + 10 for one hidden layer."""
    sizes = layer_sizes(features, hidden, classes)
    return sum(n_in * n_out + n_out for n_in, n_out in pairwise(sizes))
