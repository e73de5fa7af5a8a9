"""conftest's `require`: a test that needs real data or a service skips without it, except under
CI=true, where it fails (a CI run must not pass by skipping)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest
from tests.conftest import require


@pytest.fixture
def absent_service(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(conftest.REQUIREMENTS, "postgresql", lambda: (None, "no PostgreSQL here"))
    return "postgresql"


def test_an_absent_requirement_skips_the_test_outside_ci(absent_service: str, monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL here"):
        require(absent_service)


def test_an_absent_requirement_fails_the_test_under_ci(absent_service: str, monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no PostgreSQL here"):
        require(absent_service)


def test_a_present_requirement_gives_its_location(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setitem(conftest.REQUIREMENTS, "slurm", lambda: ("/usr/bin/sbatch", ""))
    assert require("slurm") == "/usr/bin/sbatch"


def test_an_unknown_requirement_is_a_mistake_in_the_test() -> None:
    with pytest.raises(ValueError, match="unknown requirement"):
        require("mongodb")


def test_cifar10_is_found_through_the_environment_variable(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in conftest.CIFAR10_FILES:
        (folder / name).write_bytes(b"")
    monkeypatch.setenv(conftest.CIFAR_ROOT_ENV, str(tmp_path))
    assert require("cifar10") == tmp_path


def test_an_incomplete_cifar10_copy_does_not_count(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"")
    monkeypatch.setenv(conftest.CIFAR_ROOT_ENV, str(tmp_path))
    found, why_not = conftest.REQUIREMENTS["cifar10"]()
    assert found != tmp_path
    if found is None:
        assert str(tmp_path / "cifar-10-batches-py") in why_not


@pytest.mark.requires("fashion-mnist")
def test_the_requires_marker_also_marks_the_test_as_needing_real_data(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("realdata") is not None
