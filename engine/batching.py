"""Training data resident on the run's device, and the order batches are taken from it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PIXEL_SCALE = 1.0 / 255.0


@dataclass(frozen=True)
class DeviceData:
    """uint8 images (N × features, 1/255 applied per batch) and int64 labels on one device."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: int

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
        return cls(
            train_images.to(device=device, dtype=torch.uint8),
            train_labels.to(device=device, dtype=torch.int64),
            test_images.to(device=device, dtype=torch.uint8),
            test_labels.to(device=device, dtype=torch.int64),
            classes,
        )

    @property
    def train_size(self) -> int:
        return self.train_images.shape[0]

    @property
    def features(self) -> int:
        return self.train_images.shape[1]

    @property
    def nbytes(self) -> int:
        tensors = (self.train_images, self.train_labels, self.test_images, self.test_labels)
        return sum(t.numel() * t.element_size() for t in tensors)


def steps_per_epoch(samples: int, batch_size: int) -> int:
    """Batches in one epoch; the last one is partial when `batch_size` does not divide `samples`."""
    return math.ceil(samples / batch_size)


def batch_bounds(step: int, batch_size: int, samples: int) -> tuple[int, int]:
    """The `[start, stop)` positions of batch `step` (0-based) within an epoch's order."""
    start = step * batch_size
    return start, min(start + batch_size, samples)


def epoch_order(
    samples: int, *, conventions: str, seed: int, epoch: int, device: torch.device | str
) -> torch.Tensor | None:
    """The sample order of an epoch: None for file order (lab4), else a permutation from the seed."""
    if conventions == "lab4":
        return None
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(samples, generator=generator).to(device)
