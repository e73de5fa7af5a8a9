"""Training data resident on the run's device, and the order batches are taken from it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tuner_tui.engine.config import Conventions
from tuner_tui.engine.datasets import LoadedDataset

PIXEL_SCALE = 1.0 / 255.0


@dataclass(frozen=True)
class DeviceData:
    """uint8 images (N × features, 1/255 applied per batch) and int64 labels on one device."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: int
    val_images: torch.Tensor | None = None  # rows held out of the training set (sweeps), if any
    val_labels: torch.Tensor | None = None

    @classmethod
    def from_tensors(
        cls,
        train_images: torch.Tensor,
        train_labels: torch.Tensor,
        test_images: torch.Tensor,
        test_labels: torch.Tensor,
        classes: int,
        device: torch.device | str,
    ) -> DeviceData:
        """Tensors (of any integer dtype) as uint8 images and int64 labels on `device`."""
        return cls(
            train_images.to(device=device, dtype=torch.uint8),
            train_labels.to(device=device, dtype=torch.int64),
            test_images.to(device=device, dtype=torch.uint8),
            test_labels.to(device=device, dtype=torch.int64),
            classes,
        )

    @classmethod
    def from_dataset(cls, dataset: LoadedDataset, device: torch.device | str) -> DeviceData:
        """The dataset's tensors on `device` (uint8 images, int64 labels)."""

        def images(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device=device, dtype=torch.uint8)

        def labels(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device=device, dtype=torch.int64)

        return cls(
            dataset.train_images.to(device=device, dtype=torch.uint8),
            dataset.train_labels.to(device=device, dtype=torch.int64),
            dataset.test_images.to(device=device, dtype=torch.uint8),
            dataset.test_labels.to(device=device, dtype=torch.int64),
            dataset.spec.classes,
            images(dataset.val_images),
            labels(dataset.val_labels),
        )

    @property
    def train_size(self) -> int:
        return self.train_images.shape[0]

    @property
    def features(self) -> int:
        return self.train_images.shape[1]



def steps_per_epoch(samples: int, batch_size: int) -> int:
    """Batches in one epoch; the last one is partial when `batch_size` does not divide `samples`."""
    return math.ceil(samples / batch_size)


def batch_bounds(step: int, batch_size: int, samples: int) -> tuple[int, int]:
    """The `[start, stop)` positions of batch `step` (0-based) within an epoch's order."""
    start = step * batch_size
    return start, min(start + batch_size, samples)


def epoch_order(
    samples: int, *, conventions: Conventions, seed: int, epoch: int, device: torch.device | str
) -> torch.Tensor | None:
    """The sample order of an epoch: None for file order (lab4), else a permutation from the seed."""
    if conventions == "lab4":
        return None
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(samples, generator=generator).to(device)
