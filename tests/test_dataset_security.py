"""Hostile and damaged dataset files: a CIFAR pickle never runs code, and bad data is refused as bad
input (one line, exit 2, nothing stored) instead of becoming a failed or a silently wrong run.

The payload tests write a marker file from the pickle's `__reduce__`; the marker must never appear.
The official CIFAR files were written by Python 2's cPickle (protocol 2, bytes as Python 2 str,
numpy 1's `numpy.core.multiarray._reconstruct`); `_python2_batch` writes that byte stream by hand.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.datasets import DatasetNotFoundError, load_dataset
from tests.conftest import require_path
from tests.datafiles import write_cifar10
from tuner_tui.cli import main

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
    assert f"{bad}: not a CIFAR batch (UnpicklingError: refused " in message


def test_the_cli_refuses_a_hostile_cifar_copy_with_one_line_exit_2_and_no_store(isolated, tmp_path, capsys):
    marker = tmp_path / "marker"
    bad = _hostile_copy(tmp_path / "root", _payloads(marker)["eval"], "whole batch")
    store = Path(isolated["TUNER_TUI_STORE"])

    code = main(["--no-ui", "--set", "dataset=cifar10", "--set", "hidden=8", "--set", "epochs=1",
                 "--set", "device=cpu", "--data-root", str(tmp_path / "root")])

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


def test_the_real_cifar10_copy_loads_through_the_restricted_unpickler():
    root = require_path("cifar10")

    loaded = load_dataset("cifar10", root, download=False)

    assert loaded.source == str(root / "cifar-10-batches-py")
    assert loaded.train_images.shape == (50000, CIFAR_FEATURES) and loaded.test_images.shape == (10000, CIFAR_FEATURES)
    assert loaded.train_images.dtype == torch.uint8
    assert torch.bincount(loaded.train_labels).tolist() == [5000] * 10
    assert torch.bincount(loaded.test_labels).tolist() == [1000] * 10
