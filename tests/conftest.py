"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def offline_datasets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Datasets come only from the data root a test gives: no download, no system-wide copy.

    `engine.datasets._download` raises `OSError("offline")` and the Debian Fashion-MNIST folder
    points at a path that does not exist (returned, so a test can check error messages name it).
    """

    def offline(name: str, root: Path) -> None:
        raise OSError("offline")

    missing = tmp_path / "no-debian-fashion-mnist"
    monkeypatch.setattr("engine.datasets._download", offline)
    monkeypatch.setattr("engine.datasets.DEBIAN_FASHION_MNIST", missing)
    monkeypatch.delenv("TUNER_TUI_DATA", raising=False)
    return missing
