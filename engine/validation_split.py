"""A validation set held out of the training rows, so that a sweep never tunes on the test set.

The held-out rows are a fixed, seeded choice (the same for every trial of every sweep at the same
share), and the rows left for training keep their file order, so the lab's no-shuffle walk over
the training set is unchanged apart from the rows it no longer sees.
"""

from __future__ import annotations

import dataclasses
import weakref

import torch

from tuner_tui.engine.datasets import LoadedDataset

SPLIT_SEED = 0
# (id of a dataset, share) → (a weak reference to that dataset, its split): a worker's trials share
# one loaded dataset, so the rows are copied out once, not at every trial's start.
_splits: dict[tuple[int, float], tuple[weakref.ref[LoadedDataset], LoadedDataset]] = {}


def validation_rows(train_size: int, share: float) -> torch.Tensor:
    """The sorted indices of the `share` of `train_size` rows held out (at least one when share > 0)."""
    count = max(1, round(train_size * share)) if share > 0 else 0
    permutation = torch.randperm(train_size, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return permutation[:count].sort().values


def hold_out(dataset: LoadedDataset, share: float) -> LoadedDataset:
    """`dataset` with `share` of its training rows moved to its validation set (unchanged for 0).
    The split of a dataset still alive is made once and shared (its tensors are never written)."""
    if share <= 0:
        return dataset
    for key, (source, _) in list(_splits.items()):
        if source() is None:
            del _splits[key]
    cached = _splits.get((id(dataset), share))
    if cached is not None and cached[0]() is dataset:
        return cached[1]
    split = _split(dataset, share)
    _splits[(id(dataset), share)] = (weakref.ref(dataset), split)
    return split


def _split(dataset: LoadedDataset, share: float) -> LoadedDataset:
    train_size = dataset.train_images.shape[0]
    held = validation_rows(train_size, share)
    keep = torch.ones(train_size, dtype=torch.bool)
    keep[held] = False
    return dataclasses.replace(
        dataset,
        train_images=dataset.train_images[keep],
        train_labels=dataset.train_labels[keep],
        val_images=dataset.train_images[held],
        val_labels=dataset.train_labels[held],
    )
