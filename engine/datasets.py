"""Datasets the lab uses (and their siblings), found on disk or downloaded, kept as uint8.

Search order, reported in the run record: the data root (argument, `TUNER_TUI_DATA`, or a per-user
cache dir) in the layouts torchvision uses; the Debian package's folder for Fashion-MNIST; then a
torchvision download into the data root. Files are read here (IDX and CIFAR pickles), not through
torchvision, so a valid local copy is never refused for its md5 sum.

A data root is often a shared folder, and unpickling can run code: CIFAR pickles are read by an
unpickler that builds only what the real files hold (dicts, lists, strings, numbers, numpy arrays)
and refuses every other global as a corrupt copy.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs
import torch

from tuner_tui.engine.dataset_specs import DATASET_SPECS, DatasetSpec

DATA_ROOT_ENV = "TUNER_TUI_DATA"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_FOLDERS = {"fmnist": "FashionMNIST", "mnist": "MNIST"}
CIFAR_LAYOUTS = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels"),
}
TORCHVISION_MISSING = "torchvision is not installed (pip install 'tuner-tui[download]')"
TORCHVISION_CLASSES = {"fmnist": "FashionMNIST", "mnist": "MNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}


class DatasetError(Exception):
    """A dataset that cannot be used: bad input for the run; `str()` is one line."""


class DatasetNotFoundError(DatasetError):
    """No usable copy of a dataset anywhere looked; the message says how to fix it."""


class DatasetFormatError(DatasetError):
    """A dataset file exists but is not what its name says."""


class DownloadUnavailable(Exception):
    """This installation cannot download datasets; `str()` says what to install."""


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset in memory: uint8 images (N × features, channel-major) and int64 labels."""

    spec: DatasetSpec
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str
    val_images: torch.Tensor | None = None  # training rows held out for a sweep's objective
    val_labels: torch.Tensor | None = None
    notes: tuple[str, ...] = ()  # one line per unusable copy passed over on the way to `source`


def default_data_root() -> Path:
    """`$TUNER_TUI_DATA`, else a per-user cache dir."""
    configured = os.environ.get(DATA_ROOT_ENV)
    return Path(configured).expanduser() if configured else Path(platformdirs.user_cache_dir("tuner-tui")) / "data"


def _read_bytes(path: Path) -> bytes:
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as handle:
        return handle.read()


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """An IDX file (raw or .gz) as a uint8 array of its declared shape."""
    try:
        data = _read_bytes(path)
    except (OSError, EOFError) as error:
        raise DatasetFormatError(f"{path}: cannot read: {error}") from None
    if len(data) < 8:
        raise DatasetFormatError(f"{path}: too short for an IDX file")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DatasetFormatError(f"{path}: IDX magic {magic:#010x}, expected {expected_magic:#010x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) if shape else 0
    if len(data) - header != expected:
        raise DatasetFormatError(f"{path}: holds {len(data) - header} bytes of data, its header says {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _check_split(spec: DatasetSpec, images: np.ndarray, labels: np.ndarray, images_at: Path, labels_at: Path) -> None:
    """Refuse a split a run cannot train on: no images, rows that are not `spec.features` uint8
    values, or labels that are not one integer in 0..classes-1 per image."""
    if images.ndim != 2 or images.shape[1] != spec.features or images.dtype != np.uint8:
        raise DatasetFormatError(
            f"{images_at}: images of shape {images.shape} ({images.dtype}), expected (N, {spec.features}) uint8"
        )
    count = images.shape[0]
    if count == 0:
        raise DatasetFormatError(f"{images_at}: holds no images")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetFormatError(f"{labels_at}: labels of shape {labels.shape} ({labels.dtype}), expected integers")
    if labels.shape[0] != count:
        raise DatasetFormatError(f"{images_at}: {count} images but {labels.shape[0]} labels")
    outside = labels[(labels < 0) | (labels >= spec.classes)]
    if outside.size:
        raise DatasetFormatError(
            f"{labels_at}: label {outside[0]} outside 0..{spec.classes - 1} ({outside.size} of {count} labels)"
        )


def _read_idx_split(spec: DatasetSpec, images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if images.shape[1:] != (spec.height, spec.width):
        side = "×".join(str(n) for n in images.shape[1:])
        raise DatasetFormatError(f"{images_path}: images of {side} pixels, expected {spec.height}×{spec.width}")
    rows = images.reshape(images.shape[0], spec.features)
    _check_split(spec, rows, labels, images_path, labels_path)
    return torch.from_numpy(rows.copy()), torch.from_numpy(labels.astype(np.int64))


def _load_idx_folder(spec: DatasetSpec, folder: Path) -> LoadedDataset | None:
    found = {}
    for split, stems in IDX_FILES.items():
        images_path, labels_path = (_find_idx(folder, stem) for stem in stems)
        if images_path is None or labels_path is None:
            return None
        found[split] = (images_path, labels_path)
    train_images, train_labels = _read_idx_split(spec, *found["train"])
    test_images, test_labels = _read_idx_split(spec, *found["test"])
    return LoadedDataset(spec, train_images, train_labels, test_images, test_labels, source=str(folder))


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """`_codecs.encode` as protocol-2 pickles written by Python 3 use it: bytes stored as latin-1 text."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode to {encoding!r}")
    return text.encode("latin1")


def _empty_array(subtype: object, shape: object, typecode: object) -> np.ndarray:
    """numpy's `_reconstruct`: a plain empty array; the pickle's state then sets its shape and data."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refused an array of type {subtype!r}")
    return np.empty(0, np.uint8)


def _array_from_buffer(buffer: object, dtype: object, shape: object, order: object) -> np.ndarray:
    """numpy's `_frombuffer`, used by protocol-5 pickles of an array."""
    if not (isinstance(buffer, bytes | bytearray) and isinstance(dtype, np.dtype) and isinstance(shape, tuple)):
        raise pickle.UnpicklingError("refused a numpy buffer that is not bytes of a dtype and shape")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order="F" if order == "F" else "C")


# Every global a CIFAR batch may name, as numpy 1 and numpy 2 (which moved numpy.core to numpy._core)
# and Python 2 and 3 write them; each maps to what this process builds instead.
CIFAR_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _empty_array,
    ("numpy._core.multiarray", "_reconstruct"): _empty_array,
    ("numpy.core.numeric", "_frombuffer"): _array_from_buffer,
    ("numpy._core.numeric", "_frombuffer"): _array_from_buffer,
    ("_codecs", "encode"): _latin1_bytes,
}


class _CifarUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return CIFAR_PICKLE_GLOBALS[module, name]
        except KeyError:
            refused = ascii(f"{module}.{name}")  # the file's own text: quoted, on one line
            raise pickle.UnpicklingError(f"refused global {refused}: not part of a CIFAR batch") from None


def _read_cifar_pickle(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """A batch file's data and labels as arrays, their shapes and values not yet checked."""
    try:
        with open(path, "rb") as handle:
            batch = _CifarUnpickler(handle, encoding="bytes").load()
        if not isinstance(batch, dict):
            raise TypeError(f"holds a {type(batch).__name__}, not a dict")
        # The official files were pickled by Python 2 (bytes keys); rebuilt copies have str keys.
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        data, labels = batch["data"], np.asarray(batch[label_key])
        if not isinstance(data, np.ndarray):
            raise TypeError(f"data is a {type(data).__name__}, not an array")
        return data, labels
    except Exception as error:  # a hostile or damaged file can fail in any way: all mean a corrupt copy
        raise DatasetFormatError(f"{path}: not a CIFAR batch ({_first_line(error)})") from None


def _read_cifar_split(spec: DatasetSpec, paths: list[Path], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    parts = []
    for path in paths:
        images, labels = _read_cifar_pickle(path, label_key)
        _check_split(spec, images, labels, path, path)
        parts.append((images, labels))
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts]).astype(np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)


def _load_cifar_folder(spec: DatasetSpec, folder: Path) -> LoadedDataset | None:
    _, train_files, test_files, label_key = CIFAR_LAYOUTS[spec.name]
    if not all((folder / name).is_file() for name in train_files + test_files):
        return None
    train_images, train_labels = _read_cifar_split(spec, [folder / name for name in train_files], label_key)
    test_images, test_labels = _read_cifar_split(spec, [folder / name for name in test_files], label_key)
    return LoadedDataset(spec, train_images, train_labels, test_images, test_labels, source=str(folder))


def _candidates(spec: DatasetSpec, root: Path, debian_copy: Path) -> list[Path]:
    """Folders to look in, in order."""
    if spec.name in CIFAR_LAYOUTS:
        return [root / CIFAR_LAYOUTS[spec.name][0]]
    places = [root / IDX_FOLDERS[spec.name] / "raw", root]
    if spec.name == "fmnist":
        places.append(debian_copy)
    return places


def _load_folder(spec: DatasetSpec, folder: Path) -> LoadedDataset | None:
    if spec.name in CIFAR_LAYOUTS:
        return _load_cifar_folder(spec, folder)
    return _load_idx_folder(spec, folder)


Download = Callable[[str, Path], None]


def download_with_torchvision(name: str, root: Path) -> None:
    """Fetch the dataset into `root` with torchvision: DownloadUnavailable without torchvision, any
    other exception when offline or refused."""
    try:
        torchvision_datasets = importlib.import_module("torchvision.datasets")
    except ModuleNotFoundError as error:
        if error.name not in ("torchvision", "torchvision.datasets"):
            raise
        raise DownloadUnavailable(TORCHVISION_MISSING) from None
    dataset_class = getattr(torchvision_datasets, TORCHVISION_CLASSES[name])
    for train in (True, False):
        dataset_class(str(root), train=train, download=True)


def _first_line(error: Exception) -> str:
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else 'failed'}"


def _first_loadable(spec: DatasetSpec, places: list[Path], problems: list[str]) -> LoadedDataset | None:
    """The first folder in `places` that holds the dataset; unusable copies are added to `problems`."""
    for folder in places:
        try:
            loaded = _load_folder(spec, folder)
        except DatasetFormatError as error:
            problems.append(str(error))
            continue
        except OSError as error:  # e.g. a folder this user may not read
            problems.append(f"{folder}: cannot read: {error}")
            continue
        if loaded is not None:
            return loaded
    return None


def _noting_skipped(loaded: LoadedDataset, problems: list[str]) -> LoadedDataset:
    """`loaded`, with a note for each unusable copy looked at before it."""
    notes = tuple(f"{loaded.spec.title} read from {loaded.source}, skipping an unusable copy: {p}" for p in problems)
    return dataclasses.replace(loaded, notes=notes)


def load_dataset(
    name: str, data_root: str | Path | None = None, *, download: bool = True, fetch: Download | None = None,
    debian_copy: Path | None = None,
) -> LoadedDataset:
    """Find and read dataset `name`; raises DatasetNotFoundError (one line) when there is none.

    A copy found after unusable ones says why they were passed over in its `notes`. `fetch`: how a
    missing dataset is downloaded (`download_with_torchvision` when None); `debian_copy`: where the
    system-wide Fashion-MNIST is looked for (`DEBIAN_FASHION_MNIST` when None)."""
    spec = DATASET_SPECS[name]
    root = Path(data_root).expanduser() if data_root else default_data_root()
    places = _candidates(spec, root, DEBIAN_FASHION_MNIST if debian_copy is None else debian_copy)
    problems: list[str] = []
    loaded = _first_loadable(spec, places, problems)
    if loaded is not None:
        return _noting_skipped(loaded, problems)
    looked = ", ".join(str(p) for p in places)
    if download:
        try:
            (download_with_torchvision if fetch is None else fetch)(name, root)
        except DownloadUnavailable as error:
            looked += f"; no download: {error}"
        except Exception as error:  # offline, refused, or a partial file: all mean "not found"
            looked += f", a torchvision download into {root} ({_first_line(error)})"
        else:
            problems.clear()  # the same folders are read again: report what they hold now
            loaded = _first_loadable(spec, places, problems)
            if loaded is not None:
                return _noting_skipped(loaded, problems)
            looked += f", a torchvision download into {root} (no usable files after it)"
    fix = f"put it under a folder given with --data-root DIR or the env var {DATA_ROOT_ENV}"
    if name == "fmnist":
        fix += ", or run: apt-get install dataset-fashion-mnist"
    unusable = f"; unusable: {'; '.join(problems)}" if problems else ""
    raise DatasetNotFoundError(f"{spec.title} not found; looked in {looked}{unusable}; {fix}")
