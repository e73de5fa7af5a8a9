"""Shape facts about the datasets the engine knows (no torch import: the app reads these at start)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    """Shape facts about one dataset."""

    name: str
    title: str
    channels: int
    height: int
    width: int
    classes: int
    train_size: int
    test_size: int

    @property
    def features(self) -> int:
        return self.channels * self.height * self.width


DATASET_SPECS: dict[str, DatasetSpec] = {
    "fmnist": DatasetSpec("fmnist", "Fashion-MNIST", 1, 28, 28, 10, 60000, 10000),
    "mnist": DatasetSpec("mnist", "MNIST", 1, 28, 28, 10, 60000, 10000),
    "cifar10": DatasetSpec("cifar10", "CIFAR-10", 3, 32, 32, 10, 50000, 10000),
    "cifar100": DatasetSpec("cifar100", "CIFAR-100", 3, 32, 32, 100, 50000, 10000),
}
