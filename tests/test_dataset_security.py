"""Hostile and damaged dataset files: a CIFAR pickle never runs code, and bad data is refused as bad
input (one line, exit 2, nothing stored) instead of becoming a failed or a silently wrong run.

The payload tests write a marker file from the pickle's `__reduce__`; the marker must never appear.
The official CIFAR files were written by Python 2's cPickle (protocol 2, bytes as Python 2 str,
numpy 1's `numpy.core.multiarray._reconstruct`); `_python2_batch` writes that byte stream by hand.
"""

from __future__ import annotations

import builtins
import errno
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import require_path
from tests.datafiles import write_cifar10, write_idx_dataset
from tuner_tui.cli import main
from tuner_tui.engine.datasets import DatasetNotFoundError, load_dataset
from tuner_tui.runs.store import ResultsStore

CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
CIFAR_FEATURES = 3 * 32 * 32


# --- writing pickles ----------------------------------------------------------------------------


class _Payload:
    """Unpickling this calls `call(argument)`."""

    def __init__(self, call: Callable[[str], object], argument: str) -> None:
        self.call, self.argument = call, argument

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return self.call, (self.argument,)


def _payloads(marker: Path) -> dict[str, _Payload]:
    return {
        "eval": _Payload(eval, f"open({str(marker)!r}, 'w').write('ran')"),
        "exec": _Payload(exec, f"open({str(marker)!r}, 'w').write('ran')"),
        "os.system": _Payload(os.system, f"touch {marker}"),
    }


def _py2_str(data: bytes) -> bytes:
    """A Python 2 `str` as cPickle wrote it; Python 3 reads it back as bytes with encoding="bytes"."""
    if len(data) < 256:
        return pickle.SHORT_BINSTRING + bytes([len(data)]) + data
    return pickle.BINSTRING + struct.pack("<i", len(data)) + data


def _int(value: int) -> bytes:
    return pickle.BININT + struct.pack("<i", value)


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _python2_batch(data: np.ndarray, labels: list[int], name: str) -> bytes:
    """A CIFAR batch with the opcodes of the official files: {"batch_label", "labels", "data",
    "filenames"} with `data` rebuilt by numpy.core.multiarray._reconstruct, numpy.ndarray and numpy.dtype."""
    rows, columns = data.shape
    array = (
        _global("numpy.core.multiarray", "_reconstruct") + _global("numpy", "ndarray")
        + _int(0) + pickle.TUPLE1 + _py2_str(b"b") + pickle.TUPLE3 + pickle.REDUCE
        + pickle.MARK + _int(1) + _int(rows) + _int(columns) + pickle.TUPLE2
        + _global("numpy", "dtype") + _py2_str(b"u1") + _int(0) + _int(1) + pickle.TUPLE3 + pickle.REDUCE
        + pickle.MARK + _int(3) + _py2_str(b"|") + pickle.NONE * 3 + _int(-1) + _int(-1) + _int(0)
        + pickle.TUPLE + pickle.BUILD
        + pickle.NEWFALSE + _py2_str(data.astype(np.uint8).tobytes()) + pickle.TUPLE + pickle.BUILD
    )
    label_list = pickle.EMPTY_LIST + pickle.MARK + b"".join(_int(label) for label in labels) + pickle.APPENDS
    filenames = b"".join(_py2_str(f"{name}_{i}.png".encode()) for i in range(rows))
    return (
        pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.MARK
        + _py2_str(b"batch_label") + _py2_str(name.encode())
        + _py2_str(b"labels") + label_list
        + _py2_str(b"data") + array
        + _py2_str(b"filenames") + pickle.EMPTY_LIST + pickle.MARK + filenames + pickle.APPENDS
        + pickle.SETITEMS + pickle.STOP
    )


def _batches(rows: int = 3, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(seed)
    return {
        name: (
            rng.integers(0, 256, size=(rows, CIFAR_FEATURES), dtype=np.uint8),
            [int(x) for x in rng.integers(0, 10, size=rows)],
        )
        for name in CIFAR10_FILES
    }


def _hostile_copy(root: Path, payload: object, place: str) -> Path:
    """A valid tiny CIFAR-10 copy whose test_batch carries `payload` as the whole batch or as one
    filename inside an otherwise real batch; returns the test_batch path."""
    folder = write_cifar10(root, train_per_batch=2, test=2)
    path = folder / "test_batch"
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    if place == "whole batch":
        batch = payload
    else:
        batch[b"filenames"][1] = payload
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return path


# --- no code from a pickle ------------------------------------------------------------------------


@pytest.mark.parametrize("place", ["whole batch", "inside a filename list"])
@pytest.mark.parametrize("call", ["eval", "exec", "os.system"])
def test_a_cifar_pickle_that_calls_code_is_refused_and_the_code_never_runs(offline_datasets, tmp_path, call, place):
    marker = tmp_path / "marker"
    bad = _hostile_copy(tmp_path / "root", _payloads(marker)[call], place)

    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("cifar10", tmp_path / "root", download=False)

    assert not marker.exists()
    message = str(caught.value)
    assert "\n" not in message
    # protocol 2 writes Python 2's name for builtins
    refused = {"eval": "__builtin__.eval", "exec": "__builtin__.exec", "os.system": f"{os.system.__module__}.system"}
    reason = f"UnpicklingError: refused global '{refused[call]}': not part of a CIFAR batch"
    assert f"{bad}: not a CIFAR batch ({reason})" in message


def test_a_refused_global_is_named_quoted_on_one_line_whatever_text_the_file_holds(offline_datasets, tmp_path):
    folder = write_cifar10(tmp_path, train_per_batch=2, test=2)
    module, name = "os\n\x1b[31mred", "system"
    (folder / "test_batch").write_bytes(
        pickle.PROTO + b"\x04" + pickle.SHORT_BINUNICODE + bytes([len(module)]) + module.encode()
        + pickle.SHORT_BINUNICODE + bytes([len(name)]) + name.encode() + pickle.STACK_GLOBAL + pickle.STOP
    )

    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("cifar10", tmp_path, download=False)

    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message
    assert "refused global 'os\\n\\x1b[31mred.system'" in message


def test_the_cli_refuses_a_hostile_cifar_copy_with_one_line_exit_2_and_no_store(isolated, tmp_path, capsys):
    marker = tmp_path / "marker"
    bad = _hostile_copy(tmp_path / "root", _payloads(marker)["eval"], "whole batch")
    store = Path(isolated["TUNER_TUI_STORE"])

    code = main(["--no-ui", "--set", "dataset=cifar10", "--set", "hidden=8", "--set", "epochs=1",
                 "--set", "device=cpu", "--set", "batch_size=1", "--data-root", str(tmp_path / "root")])

    err = capsys.readouterr().err
    assert code == 2
    assert not marker.exists()
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("tuner-tui: error: CIFAR-10 not found") and f"{bad}: not a CIFAR batch" in err
    assert not store.exists()


# --- what the real files hold still loads ---------------------------------------------------------


def _write_all(folder: Path, write: Callable[[Path, np.ndarray, list[int]], object], batches) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in batches.items():
        write(folder / name, data, labels)
    return folder


def _assert_loaded(loaded, batches) -> None:
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    assert torch.equal(loaded.train_images, torch.from_numpy(np.concatenate([data for data, _ in train])))
    assert loaded.train_labels.tolist() == [label for _, labels in train for label in labels]
    assert torch.equal(loaded.test_images, torch.from_numpy(batches["test_batch"][0]))
    assert loaded.test_labels.tolist() == batches["test_batch"][1]


def test_a_python2_protocol_2_copy_with_numpy_1_names_loads(offline_datasets, tmp_path):
    batches = _batches()
    stream = _python2_batch(*batches["test_batch"], "test_batch")
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in stream and b"_codecs" not in stream

    _write_all(
        tmp_path / "cifar-10-batches-py",
        lambda path, data, labels: path.write_bytes(_python2_batch(data, labels, path.name)),
        batches,
    )

    _assert_loaded(load_dataset("cifar10", tmp_path, download=False), batches)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_copy_pickled_by_this_numpy_loads_at_protocol(offline_datasets, tmp_path, protocol):
    """Protocol 2 stores bytes through `_codecs.encode`, 5 rebuilds arrays with `_frombuffer`."""
    batches = _batches(seed=protocol)

    def write(path: Path, data: np.ndarray, labels: list[int]) -> None:
        batch = {b"batch_label": path.name.encode(), b"labels": labels, b"data": data, b"filenames": [b"a.png"]}
        path.write_bytes(pickle.dumps(batch, protocol=protocol))

    _write_all(tmp_path / "cifar-10-batches-py", write, batches)

    _assert_loaded(load_dataset("cifar10", tmp_path, download=False), batches)


@pytest.mark.requires("cifar10")
def test_the_real_cifar10_copy_loads_through_the_restricted_unpickler():
    root = require_path("cifar10")

    loaded = load_dataset("cifar10", root, download=False)

    assert loaded.source == str(root / "cifar-10-batches-py")
    assert loaded.train_images.shape == (50000, CIFAR_FEATURES) and loaded.test_images.shape == (10000, CIFAR_FEATURES)
    assert loaded.train_images.dtype == torch.uint8
    assert torch.bincount(loaded.train_labels).tolist() == [5000] * 10
    assert torch.bincount(loaded.test_labels).tolist() == [1000] * 10


# --- bad data is bad input, found when loading ----------------------------------------------------


def _write_idx(folder: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> Path:
    """Raw IDX files for train and t10k from the given arrays (whatever their shapes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        for kind, magic, array in (("images-idx3", 0x803, images[prefix]), ("labels-idx1", 0x801, labels[prefix])):
            header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
            (folder / f"{prefix}-{kind}-ubyte").write_bytes(header + array.astype(np.uint8).tobytes())
    return folder


def _idx_copy(root: Path, train_images: np.ndarray, train_labels: np.ndarray) -> Path:
    """An MNIST copy under root/MNIST/raw with the given training files and a valid 2-image test split."""
    test_images, test_labels = np.zeros((2, 28, 28), np.uint8), np.array([0, 9], np.uint8)
    return _write_idx(
        root / "MNIST" / "raw",
        {"train": train_images, "t10k": test_images},
        {"train": train_labels, "t10k": test_labels},
    )


def _cifar_copy(root: Path, change: Callable[[dict], None], name: str = "data_batch_2") -> Path:
    """A tiny CIFAR-10 copy (str keys) whose batch `name` is edited by `change`; returns that file."""
    folder = write_cifar10(root, train_per_batch=3, test=3)
    path = folder / name
    batch = {key.decode(): value for key, value in pickle.loads(path.read_bytes(), encoding="bytes").items()}
    change(batch)
    path.write_bytes(pickle.dumps(batch, protocol=4))
    return path


IDX_BAD_COPIES: dict[str, tuple[np.ndarray, np.ndarray, str]] = {
    "no images": (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8), "train-images-idx3-ubyte: holds no images"),
    "32×32 images": (
        np.zeros((3, 32, 32), np.uint8), np.array([0, 1, 2], np.uint8),
        "train-images-idx3-ubyte: images of 32×32 pixels, expected 28×28",
    ),
    "label 10": (
        np.zeros((3, 28, 28), np.uint8), np.array([0, 10, 9], np.uint8),
        "train-labels-idx1-ubyte: label 10 outside 0..9 (1 of 3 labels)",
    ),
    "label 255": (
        np.zeros((2, 28, 28), np.uint8), np.array([255, 255], np.uint8),
        "train-labels-idx1-ubyte: label 255 outside 0..9 (2 of 2 labels)",
    ),
}


@pytest.mark.parametrize("case", IDX_BAD_COPIES)
def test_an_idx_copy_that_cannot_be_trained_on_is_refused_when_loading(offline_datasets, tmp_path, case):
    images, labels, reason = IDX_BAD_COPIES[case]
    folder = _idx_copy(tmp_path, images, labels)

    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("mnist", tmp_path, download=False)

    assert f"unusable: {folder}/{reason}" in str(caught.value)


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda batch: batch.__setitem__(key, value)


CIFAR_BAD_BATCHES: dict[str, tuple[Callable[[dict], None], str]] = {
    "label -1": (_set("labels", [0, -1, 2]), "label -1 outside 0..9 (1 of 3 labels)"),
    "label 10": (_set("labels", [10, 1, 2]), "label 10 outside 0..9 (1 of 3 labels)"),
    "float labels": (_set("labels", [0.5, 1.0, 2.0]), "labels of shape (3,) (float64), expected integers"),
    "text labels": (_set("labels", ["cat", "dog", "cat"]), "labels of shape (3,) (<U3), expected integers"),
    "int64 pixels": (
        _set("data", np.full((3, CIFAR_FEATURES), 300, np.int64)),
        "images of shape (3, 3072) (int64), expected (N, 3072) uint8",
    ),
    "images as HWC": (
        _set("data", np.zeros((3, 32, 32, 3), np.uint8)), "images of shape (3, 32, 32, 3) (uint8), expected (N, 3072)",
    ),
    "more labels than rows": (_set("labels", [0, 1, 2, 3]), "3 images but 4 labels"),
    "no rows": (
        lambda batch: batch.update(data=np.zeros((0, CIFAR_FEATURES), np.uint8), labels=[]), "holds no images"
    ),
}


@pytest.mark.parametrize("case", CIFAR_BAD_BATCHES)
def test_a_cifar_batch_that_cannot_be_trained_on_is_refused_when_loading(offline_datasets, tmp_path, case):
    change, reason = CIFAR_BAD_BATCHES[case]
    bad = _cifar_copy(tmp_path, change)

    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("cifar10", tmp_path, download=False)

    assert f"unusable: {bad}: {reason}" in str(caught.value)


def test_a_cifar100_fine_label_of_100_is_out_of_range(offline_datasets, tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, labels in (("train", [0, 99]), ("test", [100, 5])):
        batch = {"data": np.zeros((2, CIFAR_FEATURES), np.uint8), "fine_labels": labels, "coarse_labels": [0, 19]}
        (folder / name).write_bytes(pickle.dumps(batch))

    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("cifar100", tmp_path, download=False)
    assert f"{folder / 'test'}: label 100 outside 0..99" in str(caught.value)


def test_rows_and_labels_are_matched_in_each_batch_not_only_in_total(offline_datasets, tmp_path):
    """3+2 rows and 2+3 labels add up, but every label after the first batch would be one row off."""
    folder = write_cifar10(tmp_path, train_per_batch=2, test=2)
    for name, rows, labels in (("data_batch_1", 3, [0, 1]), ("data_batch_2", 2, [2, 3, 4])):
        batch = {"data": np.zeros((rows, CIFAR_FEATURES), np.uint8), "labels": labels}
        (folder / name).write_bytes(pickle.dumps(batch))

    with pytest.raises(DatasetNotFoundError, match="data_batch_1: 3 images but 2 labels"):
        load_dataset("cifar10", tmp_path, download=False)


def _deny_reading(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Act as if `folder` were `chmod 000` for this user (the tests run as root, who reads anything):
    stat and open of a path below it raise PermissionError, as the kernel would."""

    def check(path: object) -> None:
        if isinstance(path, str | os.PathLike) and folder in Path(os.fspath(path)).parents:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    real_stat, real_open = Path.stat, builtins.open

    def stat(self: Path, *, follow_symlinks: bool = True) -> os.stat_result:
        check(self)
        return real_stat(self, follow_symlinks=follow_symlinks)

    def open_(file, *args, **kwargs):
        check(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    monkeypatch.setattr(builtins, "open", open_)


def test_an_unreadable_data_root_is_reported_as_not_found_naming_the_folder(offline_datasets, monkeypatch, tmp_path):
    write_cifar10(tmp_path / "locked", train_per_batch=2, test=2)
    _deny_reading(monkeypatch, tmp_path / "locked")

    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("cifar10", tmp_path / "locked", download=False)

    message = str(caught.value)
    assert "\n" not in message
    folder = tmp_path / "locked" / "cifar-10-batches-py"
    assert f"unusable: {folder}: cannot read: [Errno 13] Permission denied" in message


def _unusable_root(case: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An MNIST copy under `root` that no run can use."""
    if case == "unreadable data root":
        _idx_copy(root, np.zeros((2, 28, 28), np.uint8), np.array([1, 2], np.uint8))
        _deny_reading(monkeypatch, root)
    else:
        _idx_copy(root, *IDX_BAD_COPIES[case][:2])


@pytest.mark.parametrize("case", ["no images", "label 10", "unreadable data root"])
def test_the_cli_refuses_an_unusable_copy_with_one_line_exit_2_and_no_store(
    isolated, monkeypatch, tmp_path, capsys, case
):
    _unusable_root(case, tmp_path / "root", monkeypatch)

    code = main(["--no-ui", "--set", "dataset=mnist", "--set", "hidden=8", "--set", "epochs=1",
                 "--set", "device=cpu", "--set", "batch_size=1", "--data-root", str(tmp_path / "root")])

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("tuner-tui: error: MNIST not found")
    assert f"unusable: {tmp_path / 'root'}" in err
    assert not Path(isolated["TUNER_TUI_STORE"]).exists()


# --- which copy was used, and why -----------------------------------------------------------------


def test_an_unreadable_data_root_falls_back_to_the_system_copy_saying_why(offline_datasets, monkeypatch, tmp_path):
    debian = write_idx_dataset(tmp_path / "debian", folder="", train=4, test=2)
    write_idx_dataset(tmp_path / "locked", train=6, test=2)
    _deny_reading(monkeypatch, tmp_path / "locked")

    loaded = load_dataset("fmnist", tmp_path / "locked", download=False, debian_copy=debian)

    assert loaded.source == str(debian)
    skipped = [tmp_path / "locked" / "FashionMNIST" / "raw", tmp_path / "locked"]
    assert [note.split(": cannot read: ")[0] for note in loaded.notes] == [
        f"Fashion-MNIST read from {debian}, skipping an unusable copy: {folder}" for folder in skipped
    ]
    assert all("Permission denied" in note for note in loaded.notes)


def test_the_cli_warns_on_one_line_which_copy_it_used_instead_of_a_broken_one(
    isolated, monkeypatch, tmp_path, capsys
):
    debian = write_idx_dataset(tmp_path / "debian", folder="", train=40, test=10)
    monkeypatch.setattr("tuner_tui.engine.datasets.DEBIAN_FASHION_MNIST", debian)
    broken = write_idx_dataset(tmp_path / "root", train=40, test=10, gz=False) / "t10k-labels-idx1-ubyte"
    broken.write_bytes(broken.read_bytes()[:-3])

    code = main(["--no-ui", "--set", "dataset=fmnist", "--set", "hidden=8", "--set", "epochs=1",
                 "--set", "device=cpu", "--set", "batch_size=10", "--data-root", str(tmp_path / "root")])

    err = capsys.readouterr().err
    assert code == 0
    warning = (
        f"tuner-tui: warning: Fashion-MNIST read from {debian}, skipping an unusable copy: "
        f"{broken}: holds 7 bytes of data, its header says 10"
    )
    assert warning in err.splitlines()
    with ResultsStore(Path(isolated["TUNER_TUI_STORE"])) as store:
        [record] = store.list_runs()
    assert record.data_source == str(debian)
