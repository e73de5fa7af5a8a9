"""Shared fixtures: datasets only from where a test puts them, per-test paths, and `require` for the
tests that need real data or a real service.

`require(name)` returns where a real dataset or service is, or skips the test when it is absent;
under `CI=true` (where `.ci/run` provides them all) an absent one fails the test instead, so a CI
run never passes by skipping. `@pytest.mark.requires(name)` does the same before a test starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.datafiles import write_idx_dataset
from tuner_tui.runs.store import ResultsStore

CIFAR_ROOT_ENV = "TUNER_TUI_CIFAR_ROOT"
POSTGRES_URL_ENV = "TUNER_TUI_TEST_POSTGRES_URL"
FASHION_MNIST_FILES = tuple(
    f"{split}-{kind}-ubyte.gz" for split in ("train", "t10k") for kind in ("images-idx3", "labels-idx1")
)
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
SERVICE_PROBE_TIMEOUT_S = 10


def on_ci() -> bool:
    """Whether the suite runs as CI (`CI=true`): missing real data or services fail, never skip."""
    return os.environ.get("CI") == "true"


# --- real data and services -------------------------------------------------------------------


def _fashion_mnist() -> tuple[Path | None, str]:
    folder = Path("/usr/share/datasets/fashion-mnist")
    if all((folder / name).is_file() for name in FASHION_MNIST_FILES):
        return folder, ""
    return None, f"Fashion-MNIST is not installed in {folder} (apt-get install dataset-fashion-mnist)"


def cifar10_roots() -> list[Path]:
    """Where a CIFAR-10 copy is looked for: $TUNER_TUI_CIFAR_ROOT, then `data-cifar` beside the checkout
    (where ../shared/data/build_cifar10.py puts it for this project)."""
    roots = [Path(os.environ[CIFAR_ROOT_ENV]).expanduser()] if os.environ.get(CIFAR_ROOT_ENV) else []
    return [*roots, Path(__file__).resolve().parents[2] / "data-cifar"]


def _cifar10() -> tuple[Path | None, str]:
    roots = cifar10_roots()
    for root in roots:
        if all((root / "cifar-10-batches-py" / name).is_file() for name in CIFAR10_FILES):
            return root, ""
    where = ", ".join(str(root / "cifar-10-batches-py") for root in roots)
    return None, (
        f"no CIFAR-10 copy in {where} (set ${CIFAR_ROOT_ENV}, or build one with "
        "../shared/data/build_cifar10.py ROOT)"
    )


def _slurm() -> tuple[str | None, str]:
    sbatch = shutil.which("sbatch")
    if sbatch is None or shutil.which("sinfo") is None:
        return None, "SLURM is not installed (no sbatch/sinfo on PATH)"
    try:
        answered = subprocess.run(
            ["sinfo", "--noheader"], capture_output=True, timeout=SERVICE_PROBE_TIMEOUT_S, check=False
        ).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        answered = False
    return (sbatch, "") if answered else (None, "SLURM is installed but its controller does not answer sinfo")


def _postgresql() -> tuple[str | None, str]:
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        return url, ""
    return None, f"no PostgreSQL to test against (set ${POSTGRES_URL_ENV} to a database URL)"


REQUIREMENTS: dict[str, Callable[[], tuple[object | None, str]]] = {
    "fashion-mnist": _fashion_mnist,
    "cifar10": _cifar10,
    "slurm": _slurm,
    "postgresql": _postgresql,
}
REAL_DATA = {"fashion-mnist", "cifar10"}


def require(name: str) -> object:
    """Where the real dataset or service `name` is (a folder, a data root, a command, a URL).

    Absent: the test is skipped, or fails under `CI=true`. Names: fashion-mnist (its folder),
    cifar10 (a data root holding cifar-10-batches-py), slurm (the sbatch command), postgresql (a URL).
    """
    if name not in REQUIREMENTS:
        raise ValueError(f"unknown requirement {name!r}; known: {', '.join(REQUIREMENTS)}")
    found, why_not = REQUIREMENTS[name]()
    if found is not None:
        return found
    if on_ci():
        pytest.fail(f"CI=true and {why_not}", pytrace=False)
    pytest.skip(why_not)


def require_path(name: str) -> Path:
    """`require` for the real datasets, typed as the folder it returns."""
    found = require(name)
    assert isinstance(found, Path), f"{name} is not a dataset"
    return found


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"requires(name): needs a real dataset or service ({', '.join(REQUIREMENTS)}); "
        "skips when absent, fails under CI=true",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that `requires` real data is also marked `realdata`, one that needs a service `service`."""
    for item in items:
        for marker in item.iter_markers("requires"):
            item.add_marker(pytest.mark.realdata if marker.args[0] in REAL_DATA else pytest.mark.service)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("requires"):
        require(*marker.args)


# --- datasets only from the test's own folders --------------------------------------------------


def switch_off_system_datasets(patch: pytest.MonkeyPatch, missing: Path) -> None:
    """No download, no system-wide Debian copy (it points at `missing`), no $TUNER_TUI_DATA: for tests
    that load through the CLI or the app, which cannot pass `load_dataset` its `fetch=` and
    `debian_copy=`, the defaults those parameters fall back on (`download_with_torchvision`,
    `DEBIAN_FASHION_MNIST`) are replaced."""

    def offline(name: str, root: Path) -> None:
        raise OSError("offline")

    patch.setattr("tuner_tui.engine.datasets.download_with_torchvision", offline)
    patch.setattr("tuner_tui.engine.datasets.DEBIAN_FASHION_MNIST", missing)
    patch.delenv("TUNER_TUI_DATA", raising=False)


@pytest.fixture
def offline_datasets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Datasets come only from the data root a test gives (see `switch_off_system_datasets`).

    Returns the missing path the Debian folder now points at, so a test can check messages name it.
    """
    missing = tmp_path / "no-debian-fashion-mnist"
    switch_off_system_datasets(monkeypatch, missing)
    return missing


@pytest.fixture(scope="session")
def tiny_fmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a tiny, learnable Fashion-MNIST (600 training and 200 test images) in the
    real IDX format, written once per session, for tests that train for real but fast."""
    root = tmp_path_factory.mktemp("tiny-fmnist")
    write_idx_dataset(root, train=600, test=200)
    return root


@pytest.fixture(scope="module")
def offline_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`offline_datasets` for module-scoped fixtures (a run shared by the tests that only read it)."""
    missing = tmp_path_factory.mktemp("nowhere") / "no-debian-fashion-mnist"
    with pytest.MonkeyPatch.context() as patch:
        switch_off_system_datasets(patch, missing)
        yield missing


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, offline_datasets: Path) -> dict[str, str]:
    """Per-test config, cache, data and store paths under tmp_path, datasets offline; returns those
    variables, to pass on to a subprocess."""
    env = {
        "TUNER_TUI_CONFIG_DIR": str(tmp_path / "config"),
        "TUNER_TUI_CACHE_DIR": str(tmp_path / "cache"),
        "TUNER_TUI_DATA": str(tmp_path / "no-data"),
        "TUNER_TUI_STORE": str(tmp_path / "store" / "runs.sqlite3"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    """A results store of its own under tmp_path (not the one `isolated` points at), closed after."""
    with ResultsStore(tmp_path / "runs.sqlite3") as opened:
        yield opened


@pytest.fixture
def tiny_env(isolated: dict[str, str], monkeypatch: pytest.MonkeyPatch, tiny_fmnist: Path) -> dict[str, str]:
    """`isolated`, with the tiny Fashion-MNIST (`tiny_fmnist`) as the default data root, for child
    processes too; returns the variables to pass on."""
    monkeypatch.setenv("TUNER_TUI_DATA", str(tiny_fmnist))
    return {**isolated, "TUNER_TUI_DATA": str(tiny_fmnist)}


@pytest.fixture
def isolated_small_data(isolated: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """`isolated`, with a 20-image Fashion-MNIST (10 test images) in its own default data root: enough
    for the app's dataset check to find one, too small to train on; returns the variables to pass on."""
    root = tmp_path / "small-data"
    write_idx_dataset(root, train=20, test=10)
    monkeypatch.setenv("TUNER_TUI_DATA", str(root))
    return {**isolated, "TUNER_TUI_DATA": str(root)}
