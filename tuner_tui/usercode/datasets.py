"""`run.load_dataset(name)`: tuner-tui's datasets for a user's code, read through the same readers and
data root as built-in runs, with the run's validation rows held out of training."""

from __future__ import annotations

import torch

from tuner_tui.engine.config import DATASETS
from tuner_tui.engine.datasets import load_dataset
from tuner_tui.engine.validation_split import hold_out
from tuner_tui.usercode.api import Dataset


def load_for_user(name: str, data_root: str | None, validation: float) -> Dataset:
    """Dataset `name` as float32 images in [0, 1] (flattened) and int64 labels, on the CPU."""
    if name not in DATASETS:
        raise ValueError(f"run.load_dataset: unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    loaded = hold_out(load_dataset(name, data_root), validation)
    features = loaded.train_images.shape[1]
    empty_x = torch.empty((0, features), dtype=torch.float32)
    empty_y = torch.empty((0,), dtype=torch.int64)
    return Dataset(
        name=name, classes=loaded.spec.classes,
        train_x=_pixels(loaded.train_images), train_y=loaded.train_labels.to(torch.int64),
        val_x=_pixels(loaded.val_images) if loaded.val_images is not None else empty_x,
        val_y=loaded.val_labels.to(torch.int64) if loaded.val_labels is not None else empty_y,
        test_x=_pixels(loaded.test_images), test_y=loaded.test_labels.to(torch.int64), source=loaded.source,
    )


def _pixels(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32).div_(255.0)
