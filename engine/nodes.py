"""The autograd graph's nodes, named as in the course's layer library.

Each node holds its `output` after `forward()` and the gradient of the objective with respect to
that output in `grad` after the nodes downstream have run `backward()`. `backward()` pushes this
node's share of the gradient into its inputs with `accumulate_grad()`. No torch.autograd is used:
every local derivative is written out here. Batches are row-major (samples × features).
"""

from __future__ import annotations

import functools
import operator

import torch

from tuner_tui.engine.config import Conventions

LAB4_LOG_EPSILON = 1e-8


class Layer:
    """A node of the graph: it knows its inputs, its output and the gradient arriving at it."""

    def __init__(self, *inputs: Layer) -> None:
        self.inputs: tuple[Layer, ...] = inputs
        self.output: torch.Tensor | None = None
        self.grad: torch.Tensor | None = None

    def value(self) -> torch.Tensor:
        """`output`, which `forward()` (or `Input.set`) has filled."""
        if self.output is None:
            raise RuntimeError(f"{self!r} has no output yet: run forward() first")
        return self.output

    def incoming(self) -> torch.Tensor:
        """`grad`, which the nodes downstream have filled by running `backward()`."""
        if self.grad is None:
            raise RuntimeError(f"{self!r} has no gradient yet: run backward() downstream first")
        return self.grad

    def forward(self) -> None:
        """Compute `output` from the inputs' outputs."""

    def backward(self) -> None:
        """Send d(objective)/d(input) to each input, given `grad`."""

    def accumulate_grad(self, grad: torch.Tensor) -> None:
        """Add a contribution to this node's gradient (a node can feed several others)."""
        self.grad = grad if self.grad is None else self.grad + grad

    def clear_grad(self) -> None:
        self.grad = None

    def step(self, lr: float) -> None:
        """Apply an SGD update; only trainable inputs have something to update."""

    def __repr__(self) -> str:
        shape = None if self.output is None else tuple(self.output.shape)
        return f"{type(self).__name__}(output={shape})"


class Input(Layer):
    """Data or a parameter: a value set from outside, updated by SGD when `trainable`."""

    def __init__(self, value: torch.Tensor | None = None, *, trainable: bool = False) -> None:
        super().__init__()
        self.output = value
        self.trainable = trainable

    def set(self, value: torch.Tensor) -> None:
        self.output = value

    def step(self, lr: float) -> None:
        if self.trainable and self.grad is not None:
            self.value().sub_(self.grad, alpha=lr)


class Linear(Layer):
    """`x W^T + b` for a batch x (B × in), weights W (out × in) and bias b (out)."""

    def __init__(self, x: Layer, weight: Input, bias: Input) -> None:
        super().__init__(x, weight, bias)
        self.x, self.weight, self.bias = x, weight, bias

    def forward(self) -> None:
        self.output = torch.addmm(self.bias.value(), self.x.value(), self.weight.value().t())

    def backward(self) -> None:
        grad = self.incoming()
        self.x.accumulate_grad(grad @ self.weight.value())
        self.weight.accumulate_grad(grad.t() @ self.x.value())
        self.bias.accumulate_grad(grad.sum(dim=0))


class ReLU(Layer):
    """max(0, x), elementwise."""

    def __init__(self, x: Layer) -> None:
        super().__init__(x)
        self.x = x

    def forward(self) -> None:
        self.output = torch.relu(self.x.value())

    def backward(self) -> None:
        self.x.accumulate_grad(self.incoming() * (self.x.value() > 0))


class Softmax(Layer):
    """Softmax over classes followed by cross-entropy against (one-hot) labels; a scalar.

    `lab4`: the batch's summed `-y log(p + 1e-8)` divided by the number of classes.
    `standard`: the batch's mean cross-entropy, computed through log-softmax.
    After `forward()`, `sample_losses` holds each sample's cross-entropy term (the lab's
    `-log(p_y + 1e-8)` under lab4) and `probabilities` the softmax.
    """

    def __init__(self, logits: Layer, labels: Input, conventions: Conventions = "lab4") -> None:
        super().__init__(logits, labels)
        self.logits, self.labels = logits, labels
        self.conventions = conventions
        self.probabilities: torch.Tensor | None = None
        self.sample_losses: torch.Tensor | None = None

    def forward(self) -> None:
        o, y = self.logits.value(), self.labels.value()
        shifted = o - o.amax(dim=1, keepdim=True)
        if self.conventions == "lab4":
            self.probabilities = torch.softmax(shifted, dim=1)
            terms = -y * torch.log(self.probabilities + LAB4_LOG_EPSILON)
            self.sample_losses = terms.sum(dim=1)
            self.output = self.sample_losses.sum() / o.shape[1]
        else:
            log_p = torch.log_softmax(shifted, dim=1)
            self.probabilities = log_p.exp()
            self.sample_losses = -(y * log_p).sum(dim=1)
            self.output = self.sample_losses.mean()

    def backward(self) -> None:
        p, y = self.probabilities, self.labels.value()
        if p is None:
            raise RuntimeError(f"{self!r} has no probabilities yet: run forward() first")
        if self.conventions == "lab4":
            # d/do of -y log(p + eps), exactly: with q = y p / (p + eps), p * sum(q) - q.
            q = y * p / (p + LAB4_LOG_EPSILON)
            local = (p * q.sum(dim=1, keepdim=True) - q) / p.shape[1]
        else:
            local = (p * y.sum(dim=1, keepdim=True) - y) / p.shape[0]
        self.logits.accumulate_grad(self.incoming() * local)


class Regularization(Layer):
    """`λ/2 · Σ‖W‖²` over the given weights (biases are not regularized in the lab)."""

    def __init__(self, *weights: Input, strength: float) -> None:
        super().__init__(*weights)
        self.weights = weights
        self.strength = strength

    def forward(self) -> None:
        squares = functools.reduce(operator.add, (w.value().square().sum() for w in self.weights))
        self.output = 0.5 * self.strength * squares

    def backward(self) -> None:
        grad = self.incoming()
        for w in self.weights:
            w.accumulate_grad(grad * self.strength * w.value())


class Sum(Layer):
    """The sum of scalar terms, e.g. loss + regularization = the objective J."""

    def forward(self) -> None:
        self.output = functools.reduce(operator.add, (term.value() for term in self.inputs))

    def backward(self) -> None:
        grad = self.incoming()
        for term in self.inputs:
            term.accumulate_grad(grad)
