"""The app's parts that need no screen: the browser's filter, epoch ticks, the form's words, the device
list, and the log wrapping again after a resize."""

from __future__ import annotations

from typing import ClassVar

import pytest
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from tests.fake_runner import completed_run_events, store_run
from tests.support import run_pilot
from tuner_tui.app import device_choices
from tuner_tui.app.components.epoch_plot import epoch_ticks
from tuner_tui.app.components.run_log import RunLog
from tuner_tui.app.field_words import field_list, in_form_words
from tuner_tui.app.run_filter import FilterError, parse_filter
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.gpu import GpuSnapshot
from tuner_tui.runs.records import RunLabels, RunRecord
from tuner_tui.runs.store import ResultsStore

GIB = 1024**3


@pytest.fixture
def runs(tmp_path) -> list[RunRecord]:
    """lr 0.001 cifar10 completed (tag best), lr 0.01 fmnist completed (preset fmnist_exp1), lr 5 fmnist."""
    configs = [
        (RunConfig(dataset="cifar10", lr=0.001, epochs=1), "cifar_exp2"),
        (RunConfig(lr=0.01, epochs=1), "fmnist_exp1"),
        (RunConfig(lr=5.0, epochs=1), None),
    ]
    with ResultsStore(tmp_path / "runs.sqlite3") as store:
        for config, preset in configs:
            store_run(store, config, completed_run_events(config, epochs=1), RunLabels(preset=preset))
        store.set_tags(1, ["best"])
        store.set_note(3, "Too HOT")
        return sorted(store.list_runs(), key=lambda r: r.id)


def kept(text: str, runs: list[RunRecord]) -> list[int]:
    rule = parse_filter(text)
    return [r.id for r in runs if rule.matches(r)]


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("", [1, 2, 3]),
        ("dataset:cifar", [1]),
        ("DATASET:FMNIST", [2, 3]),
        ("preset:fmnist", [2]),
        ("tag:be", [1]),
        ("status:completed lr:0.005..1", [2]),
        ("lr:..0.01", [1, 2]),
        ("lr:0.01..", [2, 3]),
        ("lr:0.01", [2]),
        ("lr>0.01", [3]),
        ("lr>=0.01", [2, 3]),
        ("lr<0.01", [1]),
        ("lr<=0.01", [1, 2]),
        ("hot", [3]),
        ("run fmnist", [3]),
    ],
)
def test_the_filter_keeps_runs_matching_every_term(runs, text, ids):
    assert kept(text, runs) == ids


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr:abc", "lr:abc: 'abc' is not a number"),
        ("lr>nan", "lr>nan: 'nan' is not a finite number"),
        ("lr:1..0.1", "lr:1..0.1: the range is empty (1 > 0.1)"),
        ("colour:red", "colour:red: unknown key 'colour'; use status, dataset, preset, tag, lr"),
        ("status:", "status:: give a value after status:"),
    ],
)
def test_a_filter_term_that_cannot_be_read_is_named(text, message):
    with pytest.raises(FilterError) as caught:
        parse_filter(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("last", "ticks"),
    [(1, [1]), (2, [1, 2]), (8, [1, 2, 3, 4, 5, 6, 7, 8]), (20, [1, 4, 7, 10, 13, 16, 19, 20]), (1000, None)],
)
def test_epoch_ticks_are_whole_epochs_at_most_eight_with_the_last(last, ticks):
    got = epoch_ticks(last)
    assert got[0] == 1 and got[-1] == last and len(got) <= 8
    assert ticks is None or got == ticks


def test_messages_name_fields_as_the_form_does():
    assert in_form_words("batch_size: must be in [1, 300], got 1000") == "batch size: must be in [1, 300], got 1000"
    assert in_form_words("reg: must be in [0, 10], got 1e+09") == "L2 reg (λ): must be in [0, 10], got 1e+09"
    assert in_form_words("Fashion-MNIST not found; looked in /x") == "Fashion-MNIST not found; looked in /x"
    assert field_list(("reg", "lr", "batch_size")) == "learning rate, batch size, L2 reg (λ)"


class FakeProbe:
    """Stands in for NvmlGpuProbe: GPU `index` answers while index < `count`."""

    count = 0
    probed: ClassVar[list[int]] = []

    def __init__(self, index: int = 0) -> None:
        self.index = index

    def snapshot(self) -> GpuSnapshot:
        FakeProbe.probed.append(self.index)
        if self.index >= FakeProbe.count:
            return GpuSnapshot.unavailable(f"no NVIDIA GPU {self.index}")
        return GpuSnapshot(True, f"GPU{self.index}", GIB, 16 * GIB, None, 0)


@pytest.mark.parametrize(
    ("visible", "machine_gpus", "listed"),
    [(None, 3, 3), ("2", 3, 1), ("2,0", 3, 2), ("", 3, 0), ("-1", 3, 0), ("0,1,2,3", 2, 2)],
)
def test_the_device_list_follows_cuda_visible_devices(monkeypatch, visible, machine_gpus, listed):
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    FakeProbe.count, FakeProbe.probed = machine_gpus, []
    monkeypatch.setattr(device_choices, "NvmlGpuProbe", FakeProbe)

    gpus = device_choices.visible_gpus()

    assert [g.name for g in gpus] == [f"GPU{i}" for i in range(listed)]
    assert max(FakeProbe.probed, default=-1) <= listed  # no GPU beyond the visible ones is asked for
    choices = device_choices.device_choices(gpus)
    assert [value for _, value in choices] == ["auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(listed))]
    assert all("15.0 GiB free" in label for label, value in choices if value.startswith("cuda:"))


class LogApp(App):
    def compose(self) -> ComposeResult:
        yield RunLog(id="run-log")


def test_the_log_wraps_its_lines_again_after_a_resize():
    """A line already in the log is wrapped again to the new width after the terminal is resized."""
    line = "epoch 1: " + " · ".join(f"figure {i} 0.{i}234" for i in range(12))

    async def scenario(pilot: Pilot) -> None:
        log = pilot.app.query_one(RunLog)
        await pilot.pause()
        log.add_line(line, now=True)
        await pilot.pause()
        wide = [strip.text.rstrip() for strip in log.lines]
        await pilot.resize_terminal(50, 20)
        await pilot.pause()
        await pilot.pause()
        narrow = [strip.text.rstrip() for strip in log.lines]
        assert len(narrow) > len(wide)
        assert all(len(text) <= 50 for text in narrow)
        assert "".join(narrow).replace(" ", "") == line.replace(" ", "")

    run_pilot(LogApp(), scenario, size=(120, 20))
