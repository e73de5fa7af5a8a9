"""Two straightforward backends: our node graph, and the lab's loop on torch.autograd (the oracle)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tuner_tui.engine.backend_base import Backend
from tuner_tui.engine.batching import PIXEL_SCALE
from tuner_tui.engine.network import build_mlp
from tuner_tui.engine.nodes import LAB4_LOG_EPSILON


class GraphBackend(Backend):
    """Each step runs the hand-written graph: forward, backward from 1, SGD step."""

    def setup(self) -> None:
        self.graph = build_mlp(self.params, conventions=self.conventions, reg=self.reg)

    def train_step(self, step: int) -> None:
        start, stop, _ = self.batch_indices(step)
        labels = self.labels_in_order[start:stop]
        self.graph.x.set(self.batch_images(step).to(self.dtype) * PIXEL_SCALE)
        self.graph.y.set(F.one_hot(labels, self.data.classes).to(self.dtype))
        network = self.graph.network
        network.forward()
        sample_losses = self.graph.loss.sample_losses
        assert sample_losses is not None, "forward() fills the per-sample losses"
        self.predictions[start:stop] = self.graph.logits.value().argmax(dim=1)
        self.log_likelihoods[start:stop, 0] = -sample_losses
        network.backward()
        network.step(self.lr)


class AutogradBackend(Backend):
    """The lab's loop shape: manual tensors, loss written out, `loss.backward()`, manual SGD."""

    def setup(self) -> None:
        for t in self.params.tensors():
            t.requires_grad_(True)

    def train_step(self, step: int) -> None:
        start, stop, _ = self.batch_indices(step)
        x = self.batch_images(step).to(self.dtype) * PIXEL_SCALE
        y = F.one_hot(self.labels_in_order[start:stop], self.data.classes).to(self.dtype)
        activation = x
        last = len(self.params.weights) - 1
        for index, (w, b) in enumerate(zip(self.params.weights, self.params.biases, strict=True)):
            activation = activation @ w.t() + b
            if index < last:
                activation = torch.relu(activation)
        logits = activation
        shifted = logits - logits.amax(dim=1, keepdim=True)
        if self.conventions == "lab4":
            p = torch.softmax(shifted, dim=1)
            sample_terms = -(y * torch.log(p + LAB4_LOG_EPSILON)).sum(dim=1)
            loss = sample_terms.sum() / self.data.classes
        else:
            sample_terms = -(y * torch.log_softmax(shifted, dim=1)).sum(dim=1)
            loss = sample_terms.mean()
        if self.reg > 0:
            loss = loss + 0.5 * self.reg * sum((w * w).sum() for w in self.params.weights)
        loss.backward()
        with torch.no_grad():
            self.predictions[start:stop] = logits.argmax(dim=1)
            self.log_likelihoods[start:stop, 0] = -sample_terms
            for t in self.params.tensors():
                assert t.grad is not None, "backward() gives every parameter a gradient"
                t.sub_(self.lr * t.grad)
                t.grad = None
