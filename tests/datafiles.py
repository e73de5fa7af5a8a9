"""Tiny datasets written in the real on-disk formats, for tests that load through `tuner_tui.engine.datasets`.

- `write_idx_dataset`: the four IDX files of (Fashion-)MNIST in torchvision's layout
  (`<root>/FashionMNIST/raw/train-images-idx3-ubyte[.gz]`, ...).
- `write_cifar10`: `<root>/cifar-10-batches-py/data_batch_1..5` and `test_batch` pickles.

With `learnable=True` each image carries a bright block whose position depends on its label, over
low noise, so a small network learns the task in an epoch; otherwise the pixels are pure noise.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
CLASSES = 10
NOISE_MAX = 60
BLOCK_VALUE = 230


def _idx_bytes(magic: int, array: np.ndarray) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _write(path: Path, data: bytes, gz: bool) -> None:
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb", compresslevel=1) as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def _labels(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, CLASSES, size=count).astype(np.uint8)


def _images(
    rng: np.random.Generator, labels: np.ndarray, channels: int, side: int, learnable: bool
) -> np.ndarray:
    """(n, channels, side, side) uint8: noise, plus a label-placed bright block when learnable."""
    n = labels.shape[0]
    if not learnable:
        return rng.integers(0, 256, size=(n, channels, side, side), dtype=np.uint8)
    images = rng.integers(0, NOISE_MAX, size=(n, channels, side, side), dtype=np.uint8)
    cell = side // 4  # a 4×4 grid of cells; class c lights cell c
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 4)
        images[index, :, row * cell : (row + 1) * cell, col * cell : (col + 1) * cell] = BLOCK_VALUE
    return images


def write_idx_dataset(
    root: Path,
    folder: str = "FashionMNIST/raw",
    train: int = 600,
    test: int = 200,
    gz: bool = True,
    seed: int = 0,
    learnable: bool = True,
) -> Path:
    """Write train/t10k IDX image (0x803, n×28×28 uint8) and label (0x801) files; return the folder."""
    target = Path(root) / folder if folder else Path(root)
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = _labels(rng, count)
        images = _images(rng, labels, 1, 28, learnable).reshape(count, 28, 28)
        _write(target / f"{prefix}-images-idx3-ubyte", _idx_bytes(IDX_IMAGES_MAGIC, images), gz)
        _write(target / f"{prefix}-labels-idx1-ubyte", _idx_bytes(IDX_LABELS_MAGIC, labels), gz)
    return target


def write_cifar10(
    root: Path, train_per_batch: int = 100, test: int = 100, seed: int = 0, learnable: bool = True
) -> Path:
    """Write cifar-10-batches-py/data_batch_1..5 and test_batch ({b"data": (n, 3072) uint8
    channel-major, b"labels": [int]}); return the folder."""
    target = Path(root) / "cifar-10-batches-py"
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        count = test if name == "test_batch" else train_per_batch
        labels = _labels(rng, count)
        images = _images(rng, labels, 3, 32, learnable).reshape(count, 3 * 32 * 32)
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(x) for x in labels],
            b"data": images,
            b"filenames": [f"{name}_{i}.png".encode() for i in range(count)],
        }
        with open(target / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    return target
