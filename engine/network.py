"""A `Network` runs a graph of nodes in topological order; `build_mlp` wires the lab's MLP."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tuner_tui.engine.config import Conventions
from tuner_tui.engine.nodes import Input, Layer, Linear, Regularization, ReLU, Softmax, Sum
from tuner_tui.engine.params import MLPParams


def topological_order(output: Layer) -> list[Layer]:
    """Every node that `output` depends on, each after all of its inputs."""
    order: list[Layer] = []
    seen: set[int] = set()
    stack: list[tuple[Layer, bool]] = [(output, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(node.inputs))
    return order


class Network:
    """Holds nodes in topological order; forward, backward (seeded with 1) and the SGD step."""

    def __init__(self, output: Layer) -> None:
        self.output = output
        self.layers = topological_order(output)

    @property
    def parameters(self) -> list[Input]:
        return [n for n in self.layers if isinstance(n, Input) and n.trainable]

    def forward(self) -> torch.Tensor:
        for layer in self.layers:
            layer.forward()
        return self.output.value()

    def backward(self) -> None:
        for layer in self.layers:
            layer.clear_grad()
        self.output.grad = torch.ones_like(self.output.value())
        for layer in reversed(self.layers):
            layer.backward()

    def step(self, lr: float) -> None:
        for layer in self.layers:
            layer.step(lr)


@dataclass
class MLPGraph:
    """The MLP as a graph, with handles on the nodes a training loop needs."""

    network: Network
    x: Input
    y: Input
    logits: Layer
    loss: Softmax
    weights: list[Input]
    biases: list[Input]


def build_mlp(params: MLPParams, *, conventions: Conventions = "lab4", reg: float = 0.0) -> MLPGraph:
    """Wire Linear → ReLU → … → Linear → Softmax (+ Regularization) over `params`, for any depth.

    The parameter tensors are shared, not copied: the network's SGD step updates them in place.
    """
    x, y = Input(), Input()
    weights = [Input(w, trainable=True) for w in params.weights]
    biases = [Input(b, trainable=True) for b in params.biases]
    node: Layer = x
    for index, (w, b) in enumerate(zip(weights, biases, strict=True)):
        node = Linear(node, w, b)
        if index < len(weights) - 1:
            node = ReLU(node)
    logits = node
    loss = Softmax(logits, y, conventions)
    objective: Layer = Sum(loss, Regularization(*weights, strength=reg)) if reg > 0 else Sum(loss)
    return MLPGraph(Network(objective), x, y, logits, loss, weights, biases)
