"""The engine on the real Fashion-MNIST: one lab4 epoch of 784→256→10 learns the task."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import require_path
from tuner_tui.engine.backend_registry import make_backend
from tuner_tui.engine.batching import DeviceData
from tuner_tui.engine.datasets import load_dataset
from tuner_tui.engine.params import init_params

pytestmark = pytest.mark.requires("fashion-mnist")


def test_one_lab4_epoch_on_fashion_mnist_reaches_80_percent_test_accuracy():
    dataset = load_dataset("fmnist", require_path("fashion-mnist"), download=False)
    data = DeviceData.from_tensors(
        dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels,
        dataset.spec.classes, device="cpu",
    )
    assert (data.train_size, data.features, data.classes) == (60_000, 784, 10)
    assert data.train_images.dtype == torch.uint8

    params = init_params(784, [256], 10, conventions="lab4", seed=0)
    backend = make_backend(
        "native", params, data, lr=0.01, reg=0.0, batch_size=100, conventions="lab4", seed=0
    )
    backend.start_epoch(0)
    for step in range(backend.steps_per_epoch):
        backend.train_step(step)

    totals = backend.epoch_totals(backend.steps_per_epoch)
    assert totals.samples == 60_000
    assert backend.first_nonfinite_step(backend.steps_per_epoch) is None
    assert 100.0 * totals.correct / totals.samples > 70.0
    assert backend.test_accuracy() > 80.0
