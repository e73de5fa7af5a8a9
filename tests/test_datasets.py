"""Finding and reading datasets: IDX and CIFAR pickles, search order, offline errors, bad files.

Every test but the `realdata` one builds tiny datasets in the real on-disk formats under tmp
folders; a test gives `load_dataset` its own download (`fetch=`) and Debian folder (`debian_copy=`),
or switches both off with conftest's `offline_datasets`.
"""

from __future__ import annotations

import gzip
import pickle
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import tuner_tui.engine.datasets as datasets
from tests.conftest import require_path
from tests.datafiles import write_cifar10, write_idx_dataset
from tuner_tui.engine.datasets import (
    DATA_ROOT_ENV,
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    DatasetFormatError,
    DatasetNotFoundError,
    LoadedDataset,
    default_data_root,
    load_dataset,
    read_idx,
)

CIFAR_CHANNEL = 32 * 32


# --- helpers -------------------------------------------------------------------------------------


def _idx_bytes(magic: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape) + payload


def _write_idx_files(folder: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray], gz: bool) -> None:
    """Write train/t10k IDX files from given arrays (images n×28×28, labels n)."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        for stem, magic, array in (
            (f"{prefix}-images-idx3-ubyte", IDX_IMAGES_MAGIC, images[prefix]),
            (f"{prefix}-labels-idx1-ubyte", IDX_LABELS_MAGIC, labels[prefix]),
        ):
            data = _idx_bytes(magic, array.shape, np.ascontiguousarray(array, dtype=np.uint8).tobytes())
            if gz:
                (folder / (stem + ".gz")).write_bytes(gzip.compress(data, compresslevel=1))
            else:
                (folder / stem).write_bytes(data)


def _write_cifar_pickle(path: Path, data: np.ndarray, labels: list[int], label_key: str, bytes_keys: bool) -> None:
    """One CIFAR batch: str keys (as build_cifar10.py writes) or bytes keys (the official Python-2 files)."""
    batch: dict[str, object] = {
        "batch_label": path.name, label_key: labels, "data": data, "filenames": [f"{i}.png" for i in labels]
    }
    if label_key == "fine_labels":
        batch["coarse_labels"] = [label // 5 for label in labels]
    keyed = {key.encode(): value for key, value in batch.items()} if bytes_keys else batch
    with open(path, "wb") as handle:
        pickle.dump(keyed, handle, protocol=2 if bytes_keys else 4)


def _cifar_batches(count_per_file: dict[str, int], label_key: str = "labels", classes: int = 10, seed: int = 0):
    """Per file name: (data (n, 3072) uint8, labels list)."""
    rng = np.random.default_rng(seed)
    return {
        name: (
            rng.integers(0, 256, size=(count, 3 * CIFAR_CHANNEL), dtype=np.uint8),
            [int(x) for x in rng.integers(0, classes, size=count)],
        )
        for name, count in count_per_file.items()
    }


def _write_cifar_folder(folder: Path, batches, label_key: str = "labels", bytes_keys: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in batches.items():
        _write_cifar_pickle(folder / name, data, labels, label_key, bytes_keys)
    return folder


CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _sizes(loaded: LoadedDataset) -> tuple[int, int]:
    return loaded.train_images.shape[0], loaded.test_images.shape[0]


# --- IDX -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_images_load_as_uint8_rows_of_784_and_labels_as_int64(offline_datasets, tmp_path, gz):
    write_idx_dataset(tmp_path / "root", train=12, test=5, gz=gz)
    loaded = load_dataset("fmnist", tmp_path / "root")
    assert loaded.train_images.shape == (12, 784) and loaded.test_images.shape == (5, 784)
    assert loaded.train_images.dtype == torch.uint8 and loaded.test_images.dtype == torch.uint8
    assert loaded.train_labels.shape == (12,) and loaded.test_labels.shape == (5,)
    assert loaded.train_labels.dtype == torch.int64 and loaded.test_labels.dtype == torch.int64
    assert loaded.spec.name == "fmnist"


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_pixel_at_image_row_col_lands_at_flat_index_row_times_28_plus_col(offline_datasets, tmp_path, gz):
    images = {"train": np.zeros((4, 28, 28), np.uint8), "t10k": np.zeros((3, 28, 28), np.uint8)}
    labels = {"train": np.array([3, 1, 4, 1], np.uint8), "t10k": np.array([5, 9, 2], np.uint8)}
    images["train"][2, 7, 19] = 201
    images["t10k"][1, 27, 0] = 77
    _write_idx_files(tmp_path / "FashionMNIST" / "raw", images, labels, gz)

    loaded = load_dataset("fmnist", tmp_path)

    assert loaded.train_images[2, 7 * 28 + 19] == 201
    assert int(loaded.train_images.sum()) == 201
    assert loaded.test_images[1, 27 * 28 + 0] == 77
    assert int(loaded.test_images.sum()) == 77
    assert loaded.train_labels.tolist() == [3, 1, 4, 1]
    assert loaded.test_labels.tolist() == [5, 9, 2]


def test_mnist_loads_from_the_mnist_raw_folder(offline_datasets, tmp_path):
    folder = write_idx_dataset(tmp_path, folder="MNIST/raw", train=8, test=4)
    loaded = load_dataset("mnist", tmp_path)
    assert loaded.spec.name == "mnist"
    assert loaded.source == str(folder)
    assert _sizes(loaded) == (8, 4)


def test_mnist_does_not_read_the_fashion_mnist_folder(offline_datasets, tmp_path):
    write_idx_dataset(tmp_path, folder="FashionMNIST/raw", train=8, test=4)
    with pytest.raises(DatasetNotFoundError, match="MNIST not found"):
        load_dataset("mnist", tmp_path, download=False)


def test_idx_files_directly_in_the_data_root_load(offline_datasets, tmp_path):
    write_idx_dataset(tmp_path, folder="", train=9, test=2)
    loaded = load_dataset("fmnist", tmp_path)
    assert loaded.source == str(tmp_path)
    assert _sizes(loaded) == (9, 2)


def test_torchvision_layout_wins_over_files_directly_in_the_root(offline_datasets, tmp_path):
    write_idx_dataset(tmp_path, folder="", train=9, test=2)
    raw = write_idx_dataset(tmp_path, folder="FashionMNIST/raw", train=6, test=3)
    loaded = load_dataset("fmnist", tmp_path)
    assert loaded.source == str(raw)
    assert _sizes(loaded) == (6, 3)


# --- CIFAR ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bytes_keys", [False, True], ids=["str-keys", "bytes-keys"])
def test_cifar10_pickles_load_with_str_or_bytes_keys(offline_datasets, tmp_path, bytes_keys):
    batches = _cifar_batches({name: (2 if name == "test_batch" else 3) for name in CIFAR10_FILES})
    folder = _write_cifar_folder(tmp_path / "cifar-10-batches-py", batches, bytes_keys=bytes_keys)

    loaded = load_dataset("cifar10", tmp_path)

    assert loaded.source == str(folder)
    assert loaded.train_images.shape == (15, 3072) and loaded.train_images.dtype == torch.uint8
    assert loaded.test_images.shape == (2, 3072) and loaded.test_images.dtype == torch.uint8
    assert loaded.train_labels.dtype == torch.int64 and loaded.test_labels.dtype == torch.int64
    assert torch.equal(loaded.test_images, torch.from_numpy(batches["test_batch"][0]))
    assert loaded.test_labels.tolist() == batches["test_batch"][1]


def test_cifar10_written_by_the_shared_datafiles_helper_loads(offline_datasets, tmp_path):
    write_cifar10(tmp_path, train_per_batch=4, test=3)
    loaded = load_dataset("cifar10", tmp_path)
    assert _sizes(loaded) == (20, 3)
    assert loaded.spec.features == 3072


def test_cifar_rows_are_channel_major(offline_datasets, tmp_path):
    batches = {name: (np.zeros((2, 3, 32, 32), np.uint8), [0, 1]) for name in CIFAR10_FILES}
    batches["data_batch_1"][0][1, 2, 0, 5] = 99  # sample 1, blue channel, position 5
    batches["test_batch"][0][0, 0, 31, 31] = 42  # sample 0, red channel, last position
    flat = {name: (data.reshape(2, -1), labels) for name, (data, labels) in batches.items()}
    _write_cifar_folder(tmp_path / "cifar-10-batches-py", flat)

    loaded = load_dataset("cifar10", tmp_path)

    assert loaded.train_images[1, 2 * CIFAR_CHANNEL + 5] == 99
    assert int(loaded.train_images.sum()) == 99
    assert loaded.test_images[0, 0 * CIFAR_CHANNEL + 1023] == 42


def test_cifar10_train_batches_are_concatenated_in_order(offline_datasets, tmp_path):
    batches = {}
    for number, name in enumerate(CIFAR10_FILES, start=1):
        data = np.full((2, 3072), number, np.uint8)  # every pixel of batch k is k
        batches[name] = (data, [number, number - 1])
    _write_cifar_folder(tmp_path / "cifar-10-batches-py", batches, bytes_keys=True)

    loaded = load_dataset("cifar10", tmp_path)

    assert loaded.train_images[:, 0].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert loaded.train_labels.tolist() == [1, 0, 2, 1, 3, 2, 4, 3, 5, 4]
    assert loaded.test_images[:, 0].tolist() == [6, 6]
    assert loaded.test_labels.tolist() == [6, 5]


@pytest.mark.parametrize("bytes_keys", [False, True], ids=["str-keys", "bytes-keys"])
def test_cifar100_loads_fine_labels_with_100_classes(offline_datasets, tmp_path, bytes_keys):
    batches = _cifar_batches({"train": 6, "test": 4}, classes=100, seed=3)
    batches["train"][1][0] = 99
    folder = _write_cifar_folder(tmp_path / "cifar-100-python", batches, "fine_labels", bytes_keys)

    loaded = load_dataset("cifar100", tmp_path)

    assert loaded.spec.name == "cifar100" and loaded.spec.classes == 100
    assert loaded.source == str(folder)
    assert _sizes(loaded) == (6, 4)
    assert loaded.train_labels.tolist() == batches["train"][1]  # fine, not coarse, labels
    assert loaded.test_labels.tolist() == batches["test"][1]
    assert torch.equal(loaded.train_images, torch.from_numpy(batches["train"][0]))


# --- search order and data root ------------------------------------------------------------------


def test_data_root_wins_over_the_debian_folder(offline_datasets, tmp_path):
    debian = write_idx_dataset(tmp_path / "debian", folder="", train=5, test=2, seed=1)
    in_root = write_idx_dataset(tmp_path / "root", train=7, test=3)

    loaded = load_dataset("fmnist", tmp_path / "root", debian_copy=debian)

    assert loaded.source == str(in_root)
    assert _sizes(loaded) == (7, 3)
    assert loaded.notes == ()


def test_debian_folder_is_used_when_the_data_root_is_empty(offline_datasets, tmp_path):
    debian = write_idx_dataset(tmp_path / "debian", folder="", train=5, test=2, seed=1)
    (tmp_path / "root").mkdir()

    loaded = load_dataset("fmnist", tmp_path / "root", download=False, debian_copy=debian)

    assert loaded.source == str(debian)
    assert _sizes(loaded) == (5, 2)
    assert loaded.notes == ()  # an absent copy is no news


def test_data_root_env_var_sets_the_default_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "from-env"))
    assert default_data_root() == tmp_path / "from-env"


def test_data_root_env_var_is_expanded_for_the_home_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(DATA_ROOT_ENV, "~/datasets")
    assert default_data_root() == tmp_path / "datasets"


def test_default_data_root_without_the_env_var_is_a_per_user_cache_dir(monkeypatch):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    root = default_data_root()
    assert root.is_absolute() and root.name == "data" and "tuner-tui" in root.parts


def test_load_dataset_without_data_root_reads_the_env_var_root(offline_datasets, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(DATA_ROOT_ENV, "~/datasets")
    folder = write_idx_dataset(tmp_path / "datasets", train=4, test=2)

    loaded = load_dataset("fmnist")

    assert loaded.source == str(folder)
    assert _sizes(loaded) == (4, 2)


def test_data_root_argument_is_expanded_for_the_home_dir(offline_datasets, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = write_idx_dataset(tmp_path / "mine", train=3, test=1)
    assert load_dataset("fmnist", "~/mine").source == str(folder)


# --- not found, offline, download ----------------------------------------------------------------


def offline_url_error(name: str, root: Path) -> None:
    """A download that fails as one does offline."""
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def must_not_download(name: str, root: Path) -> None:
    """A download that fails the test if it is ever called."""
    pytest.fail(f"download({name!r}, {root}) called with download=False")


def test_offline_fmnist_error_is_one_line_naming_folders_download_and_fixes(offline_datasets, tmp_path):
    root = tmp_path / "root"

    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("fmnist", root, fetch=offline_url_error)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Fashion-MNIST not found")
    for folder in (root / "FashionMNIST" / "raw", root, offline_datasets):
        assert str(folder) in message
    assert f"download into {root}" in message
    assert "URLError" in message and "Temporary failure in name resolution" in message
    assert "--data-root" in message
    assert DATA_ROOT_ENV in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_offline_cifar10_error_names_its_folder_and_no_apt_hint(offline_datasets, tmp_path):
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("cifar10", tmp_path, fetch=offline_url_error)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("CIFAR-10 not found")
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "URLError" in message
    assert "--data-root" in message and DATA_ROOT_ENV in message
    assert "apt-get" not in message


def test_not_found_is_a_dataset_error_with_a_one_line_message(offline_datasets, tmp_path):
    with pytest.raises(datasets.DatasetError) as caught:
        load_dataset("cifar100", tmp_path)
    assert isinstance(caught.value, DatasetNotFoundError)
    assert "\n" not in str(caught.value) and "CIFAR-100" in str(caught.value)


@pytest.mark.parametrize("name", ["fmnist", "mnist", "cifar10", "cifar100"])
def test_download_false_never_calls_download(offline_datasets, tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset(name, tmp_path, download=False, fetch=must_not_download)
    assert "download into" not in str(caught.value)


def test_download_false_still_loads_a_local_copy(offline_datasets, tmp_path):
    write_idx_dataset(tmp_path, train=3, test=2)
    assert _sizes(load_dataset("fmnist", tmp_path, download=False, fetch=must_not_download)) == (3, 2)


def test_download_that_writes_the_files_is_then_loaded(offline_datasets, tmp_path):
    calls = []

    def fake_download(name: str, root: Path) -> None:
        calls.append((name, root))
        write_idx_dataset(root, folder="MNIST/raw", train=6, test=3)

    root = tmp_path / "root"

    loaded = load_dataset("mnist", root, fetch=fake_download)

    assert calls == [("mnist", root)]
    assert loaded.source == str(root / "MNIST" / "raw")
    assert _sizes(loaded) == (6, 3)


@pytest.mark.parametrize("name", ["fmnist", "cifar10"])
def test_without_torchvision_not_found_says_so_plainly_and_how_to_install_it(monkeypatch, tmp_path, name):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision raises ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)

    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset(name, tmp_path / "root", debian_copy=tmp_path / "no-debian-fashion-mnist")

    message = str(caught.value)
    assert "\n" not in message
    assert "; no download: torchvision is not installed (pip install 'tuner-tui[download]'); " in message
    assert "ModuleNotFoundError" not in message and "download into" not in message
    assert not (tmp_path / "root").exists()


def test_download_that_writes_nothing_is_reported_as_not_found(offline_datasets, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no usable files after it"):
        load_dataset("cifar10", tmp_path, fetch=lambda name, root: None)


# --- malformed files -----------------------------------------------------------------------------


def test_read_idx_rejects_a_wrong_magic_naming_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_idx_bytes(IDX_LABELS_MAGIC, (3,), bytes(3)))
    with pytest.raises(DatasetFormatError, match="magic") as caught:
        read_idx(path, IDX_IMAGES_MAGIC)
    assert str(path) in str(caught.value)


def test_read_idx_rejects_a_file_shorter_than_its_header_says_naming_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_idx_bytes(IDX_IMAGES_MAGIC, (2, 28, 28), bytes(28 * 28 + 10)))
    with pytest.raises(DatasetFormatError, match="header says 1568") as caught:
        read_idx(path, IDX_IMAGES_MAGIC)
    assert str(path) in str(caught.value)


def test_read_idx_rejects_a_truncated_gzip_naming_the_file(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(IDX_LABELS_MAGIC, (500,), bytes(500)))[:-20])
    with pytest.raises(DatasetFormatError, match="cannot read") as caught:
        read_idx(path, IDX_LABELS_MAGIC)
    assert str(path) in str(caught.value)


def test_read_idx_rejects_a_file_too_short_for_a_header(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DatasetFormatError, match="too short"):
        read_idx(path, IDX_LABELS_MAGIC)


def test_read_idx_returns_the_declared_shape(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(_idx_bytes(IDX_LABELS_MAGIC, (4,), bytes([0, 9, 3, 7])))
    array = read_idx(path, IDX_LABELS_MAGIC)
    assert array.dtype == np.uint8 and array.tolist() == [0, 9, 3, 7]


def test_mismatched_image_and_label_counts_are_an_unusable_copy(offline_datasets, tmp_path):
    folder = write_idx_dataset(tmp_path, train=5, test=2, gz=False)
    (folder / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(IDX_LABELS_MAGIC, (4,), bytes(4)))

    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("fmnist", tmp_path, download=False)

    message = str(caught.value)
    assert "unusable" in message
    assert str(folder / "train-images-idx3-ubyte") in message
    assert "5 images but 4 labels" in message


def test_corrupt_idx_copy_is_reported_with_its_file_and_reason(offline_datasets, tmp_path):
    folder = write_idx_dataset(tmp_path, train=5, test=2, gz=False)
    bad = folder / "t10k-images-idx3-ubyte"
    bad.write_bytes(b"\xde\xad\xbe\xef" + bad.read_bytes()[4:])

    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("fmnist", tmp_path)

    message = str(caught.value)
    assert "\n" not in message
    assert f"unusable: {bad}: IDX magic 0xdeadbeef" in message
    assert "offline" in message  # the download was still tried, and failed


def test_cifar_file_that_is_not_a_pickle_is_reported_with_its_file_and_reason(offline_datasets, tmp_path):
    folder = _write_cifar_folder(tmp_path / "cifar-10-batches-py", _cifar_batches({n: 2 for n in CIFAR10_FILES}))
    bad = folder / "data_batch_3"
    bad.write_bytes(b"<!DOCTYPE html><html>rate limited</html>")

    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("cifar10", tmp_path, download=False)

    message = str(caught.value)
    assert "\n" not in message
    assert f"{bad}: not a CIFAR batch (UnpicklingError" in message


def test_cifar_pickle_without_the_label_key_is_reported(offline_datasets, tmp_path):
    folder = _write_cifar_folder(tmp_path / "cifar-100-python", _cifar_batches({"train": 2, "test": 2}))  # "labels"
    with pytest.raises(DatasetNotFoundError, match="not a CIFAR batch \\(KeyError") as caught:
        load_dataset("cifar100", tmp_path, download=False)
    assert str(folder / "train") in str(caught.value)


def test_cifar_data_of_the_wrong_width_is_reported(offline_datasets, tmp_path):
    batches = {name: (np.zeros((2, 784), np.uint8), [0, 1]) for name in CIFAR10_FILES}
    folder = _write_cifar_folder(tmp_path / "cifar-10-batches-py", batches)
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("cifar10", tmp_path, download=False)
    assert f"{folder / 'data_batch_1'}: images of shape (2, 784) (uint8), expected (N, 3072) uint8" in str(caught.value)


def test_cifar_pickle_that_is_not_a_dict_is_reported(offline_datasets, tmp_path):
    folder = _write_cifar_folder(tmp_path / "cifar-10-batches-py", _cifar_batches({n: 2 for n in CIFAR10_FILES}))
    bad = folder / "test_batch"
    bad.write_bytes(pickle.dumps([1, 2, 3]))

    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("cifar10", tmp_path, download=False)
    assert f"{bad}: not a CIFAR batch" in str(caught.value)


def test_corrupt_root_copy_falls_through_to_a_valid_debian_copy(offline_datasets, tmp_path):
    folder = write_idx_dataset(tmp_path / "root", train=5, test=2, gz=False)
    (folder / "train-images-idx3-ubyte").write_bytes(b"garbage")
    debian = write_idx_dataset(tmp_path / "debian", folder="", train=4, test=1, seed=2)

    loaded = load_dataset("fmnist", tmp_path / "root", debian_copy=debian)

    assert loaded.source == str(debian)
    assert _sizes(loaded) == (4, 1)
    assert loaded.notes == (
        f"Fashion-MNIST read from {debian}, skipping an unusable copy: "
        f"{folder / 'train-images-idx3-ubyte'}: too short for an IDX file",
    )


def test_corrupt_copy_left_in_place_by_a_download_is_still_not_found(offline_datasets, tmp_path):
    folder = write_idx_dataset(tmp_path, folder="MNIST/raw", train=5, test=2, gz=False)
    bad = folder / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-100])  # truncated extraction
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("mnist", tmp_path, fetch=lambda name, root: None)  # "files already there"
    assert str(bad) in str(caught.value)


# --- the real Fashion-MNIST ----------------------------------------------------------------------


@pytest.mark.requires("fashion-mnist")
def test_real_fashion_mnist_loads_from_the_debian_folder(tmp_path):
    real = require_path("fashion-mnist")

    loaded = load_dataset("fmnist", tmp_path, download=False, fetch=must_not_download, debian_copy=real)

    assert loaded.source == str(real)
    assert loaded.notes == ()
    assert loaded.train_images.shape == (60000, 784) and loaded.test_images.shape == (10000, 784)
    assert loaded.train_images.dtype == torch.uint8
    assert loaded.train_labels.shape == (60000,) and loaded.test_labels.shape == (10000,)
    assert sorted(loaded.train_labels.unique().tolist()) == list(range(10))
    assert sorted(loaded.test_labels.unique().tolist()) == list(range(10))
    assert torch.bincount(loaded.train_labels).tolist() == [6000] * 10
