"""The runner's specification: event order and values, how a run ends (completed, cancelled,
diverged, failed), where bad input surfaces, and the lab's accounting end to end.

Every run loads tiny datasets written in the real formats (`tests/datafiles.py`) through the real
`prepare_run`; downloads and the system-wide Debian copy are switched off.
"""

from __future__ import annotations

import gzip
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tuner_tui.engine.runner
from tests.datafiles import write_cifar10, write_idx_dataset
from tuner_tui.engine.backend_base import Backend
from tuner_tui.engine.calibration import CALIBRATION_CHUNK_STEPS
from tuner_tui.engine.config import ConfigError, RunConfig
from tuner_tui.engine.datasets import DatasetNotFoundError
from tuner_tui.engine.events import EpochEnd, Event, Finished, Progress, RunStatus, Started
from tuner_tui.engine.params import init_params
from tuner_tui.engine.runner import PROGRESS_INTERVAL_S, execute_run, prepare_run

CLASSES = 10
FEATURES = 784
TINY_TRAIN, TINY_TEST = 600, 200
LAB4_EPSILON = 1e-8
# The fake clock's step: a binary fraction, so sums of steps are exact (1/32 s: a progress report
# every 4 steps at PROGRESS_INTERVAL_S = 0.1 s).
SECONDS_PER_STEP = 1 / 32
THREAD_TIMEOUT_S = 60.0


@pytest.fixture(autouse=True)
def _offline(offline_datasets: Path) -> None:
    """Every test here: no download, no Debian copy (see conftest)."""


def _config(root: Path, **overrides: Any) -> RunConfig:
    base = RunConfig(dataset="fmnist", data_root=str(root), device="cpu", hidden=(32,), batch_size=10, epochs=2)
    return RunConfig.from_mapping(overrides, base=base)


def _run(config: RunConfig, cancel: threading.Event | None = None) -> tuple[Finished, list[Event]]:
    events: list[Event] = []
    finished = execute_run(prepare_run(config), events.append, cancel=cancel)
    return finished, events


class StepClock:
    """A clock that moves only when the backend takes a training step, by `seconds_per_step`.

    `on_step(epoch_step, clock)` is called after each step the run takes (calibration's included).
    """

    def __init__(self, seconds_per_step: float = SECONDS_PER_STEP) -> None:
        self.now = 0.0
        self.seconds_per_step = seconds_per_step
        self.steps = 0
        self.on_step: list[Any] = []

    def __call__(self) -> float:
        return self.now

    def timed(self, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Backend:
        real_step = backend.train_step

        def step(index: int) -> None:
            real_step(index)
            self.now += self.seconds_per_step
            self.steps += 1
            for hook in self.on_step:
                hook(index)

        monkeypatch.setattr(backend, "train_step", step)
        return backend


@pytest.fixture
def step_clock(monkeypatch: pytest.MonkeyPatch) -> StepClock:
    """Every backend the runner makes advances this clock by SECONDS_PER_STEP per step."""
    clock = StepClock()
    real_make_backend = tuner_tui.engine.runner.make_backend

    def timed_backend(*args: Any, **kwargs: Any) -> Backend:
        return clock.timed(real_make_backend(*args, **kwargs), monkeypatch)

    monkeypatch.setattr(tuner_tui.engine.runner, "make_backend", timed_backend)
    return clock


def _run_on(clock: StepClock, config: RunConfig, cancel: threading.Event | None = None) -> tuple[Finished, list[Event]]:
    events: list[Event] = []
    finished = execute_run(prepare_run(config, clock=clock), events.append, cancel=cancel)
    return finished, events


def _metrics(finished: Finished) -> tuple:
    return (
        finished.train_loss, finished.train_accuracy, finished.test_accuracy,
        tuple((e.train_loss, e.train_accuracy, e.test_accuracy) for e in finished.epochs),
    )


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_idx_dataset(root, train=TINY_TRAIN, test=TINY_TEST)
    return root


@pytest.fixture(scope="module")
def completed_run(
    tmp_path_factory: pytest.TempPathFactory, offline_module: Path
) -> tuple[RunConfig, Finished, list[Event]]:
    """One 3-epoch lab4 run on the tiny learnable set, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("tiny")
    write_idx_dataset(root, train=TINY_TRAIN, test=TINY_TEST)
    config = _config(root, epochs=3, lr=0.05)
    finished, events = _run(config)
    return config, finished, events


# --- events -------------------------------------------------------------------------------------


def test_events_are_one_started_then_progress_and_epoch_ends_in_order_then_one_finished(completed_run):
    config, finished, events = completed_run
    assert isinstance(events[0], Started)
    assert events[-1] is finished
    assert sum(isinstance(e, Started) for e in events) == 1
    assert sum(isinstance(e, Finished) for e in events) == 1
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1, 2, 3]

    middle = events[1:-1]
    assert all(isinstance(e, (Progress, EpochEnd)) for e in middle)
    progress = [e for e in middle if isinstance(e, Progress)]
    assert progress
    steps = progress[0].steps_per_epoch
    assert steps == math.ceil(TINY_TRAIN / config.batch_size)
    assert all(1 <= p.step <= steps and p.steps_per_epoch == steps for p in progress)
    positions = [(p.epoch, p.step) for p in progress]
    assert positions == sorted(positions)
    # Each EpochEnd follows its epoch's final Progress and precedes the next epoch's.
    epoch, last_progress = 0, None
    for event in middle:
        if isinstance(event, Progress):
            assert event.epoch == epoch + 1
            last_progress = event
        else:
            assert isinstance(event, EpochEnd) and last_progress is not None
            assert event.epoch == epoch + 1
            assert (last_progress.epoch, last_progress.step) == (event.epoch, steps)
            epoch = event.epoch


def test_event_values_are_sane_and_test_accuracy_is_reported_every_epoch(completed_run):
    config, finished, events = completed_run
    hidden = config.hidden[0]
    expected_params = FEATURES * hidden + hidden + CLASSES * hidden + CLASSES
    started = events[0]
    assert started.params == finished.params == expected_params
    assert (started.train_samples, started.test_samples) == (TINY_TRAIN, TINY_TEST)
    assert started.config == config
    assert started.time_estimate.steps_per_epoch == math.ceil(TINY_TRAIN / config.batch_size)

    for p in (e for e in events if isinstance(e, Progress)):
        assert p.epochs == config.epochs
        assert 0.0 <= p.accuracy <= 100.0
        assert math.isfinite(p.loss) and p.loss >= 0.0
        assert p.samples_per_s > 0.0
        assert p.eta_s >= 0.0
        assert p.elapsed_s >= 0.0
    ends = [e for e in events if isinstance(e, EpochEnd)]
    assert len(ends) == config.epochs
    for end in ends:
        assert 0.0 <= end.train_accuracy <= 100.0
        assert 0.0 <= end.test_accuracy <= 100.0
        assert math.isfinite(end.train_loss) and end.train_loss >= 0.0
        assert end.seconds > 0.0


def test_a_completed_run_on_learnable_data_reaches_test_accuracy_far_above_chance(completed_run):
    _, finished, _ = completed_run
    assert finished.status is RunStatus.COMPLETED
    assert finished.test_accuracy > 80.0  # chance is 10 %
    assert finished.diverged_step is None


def test_finished_reports_the_last_epoch_end_figures(completed_run):
    _, finished, events = completed_run
    last = [e for e in events if isinstance(e, EpochEnd)][-1]
    assert (finished.train_loss, finished.train_accuracy, finished.test_accuracy) == (
        last.train_loss, last.train_accuracy, last.test_accuracy,
    )
    assert finished.epochs == tuple(e for e in events if isinstance(e, EpochEnd))
    assert finished.loss_curve and all(math.isfinite(x) for x in finished.loss_curve)


def test_resources_measure_train_time_within_total_time_and_rss_growth(completed_run):
    _, finished, _ = completed_run
    resources = finished.resources
    assert 0.0 < resources.train_time_s <= resources.total_time_s
    assert resources.train_time_s >= sum(e.seconds for e in finished.epochs) * 0.999
    assert isinstance(resources.peak_rss_growth_bytes, int)  # Linux: from VmHWM
    assert resources.peak_rss_growth_bytes >= 0
    assert resources.cuda_peak_allocated_bytes is None  # a CPU run


def test_progress_is_reported_once_per_interval_of_the_runs_clock_and_at_each_epochs_end(tiny_root, step_clock):
    config = _config(tiny_root, batch_size=1, epochs=2)  # 600 steps an epoch, 1/32 s each
    finished, events = _run_on(step_clock, config)
    assert finished.status is RunStatus.COMPLETED

    progress = [e for e in events if isinstance(e, Progress)]
    steps_between_reports = math.ceil(PROGRESS_INTERVAL_S / SECONDS_PER_STEP)  # 4
    expected = [(epoch, step) for epoch in (1, 2) for step in range(steps_between_reports, TINY_TRAIN + 1, 4)]
    assert [(p.epoch, p.step) for p in progress] == expected
    run_seconds = 2 * TINY_TRAIN * SECONDS_PER_STEP
    assert len(progress) <= run_seconds / PROGRESS_INTERVAL_S  # at most ten a second of training


def test_progress_rate_elapsed_and_eta_are_read_from_the_runs_clock(tiny_root, step_clock):
    config = _config(tiny_root, batch_size=1, epochs=2)
    _, events = _run_on(step_clock, config)
    total_steps = 2 * TINY_TRAIN
    for p in (e for e in events if isinstance(e, Progress)):
        done = (p.epoch - 1) * TINY_TRAIN + p.step
        assert p.samples_per_s == 1 / SECONDS_PER_STEP  # batch 1: one sample per step
        assert p.elapsed_s == done * SECONDS_PER_STEP
        assert p.eta_s == (total_steps - done) * SECONDS_PER_STEP  # the test pass takes no time here
    ends = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.seconds for e in ends] == [TINY_TRAIN * SECONDS_PER_STEP] * 2


def test_the_time_estimate_equals_the_measured_time_when_every_step_costs_the_same(tiny_root, step_clock):
    config = _config(tiny_root, batch_size=2, epochs=3)
    finished, events = _run_on(step_clock, config)
    started = events[0]
    assert isinstance(started, Started)
    assert started.time_estimate.seconds_per_step == SECONDS_PER_STEP
    assert started.time_estimate.train_seconds == finished.resources.train_time_s == 3 * 300 * SECONDS_PER_STEP
    assert finished.resources.total_time_s >= finished.resources.train_time_s


# --- how a run ends -----------------------------------------------------------------------------


def test_cancel_set_during_a_step_ends_the_run_before_the_next_step_keeping_completed_epochs(tiny_root, step_clock):
    config = _config(tiny_root, batch_size=1, epochs=50)
    cancel = threading.Event()
    events: list[Event] = []
    training: list[int] = []  # the steps of the training loop, after calibration
    cancelled_at: list[int] = []

    def record_step(index: int) -> None:
        training.append(index)
        if len(training) == TINY_TRAIN + 123:  # epoch 2, step 123
            cancel.set()
            cancelled_at.append(len(training))

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, Started):
            step_clock.on_step.append(record_step)

    finished = execute_run(prepare_run(config, clock=step_clock), on_event, cancel=cancel)

    assert finished.status is RunStatus.CANCELLED
    assert len(training) == cancelled_at[0]  # no step after the one during which it was set
    assert finished.message == "stopped in epoch 2 at step 123"
    assert events[-1] is finished
    assert finished.epochs == tuple(e for e in events if isinstance(e, EpochEnd))
    assert [e.epoch for e in finished.epochs] == [1]
    assert finished.train_loss == finished.epochs[-1].train_loss
    assert finished.test_accuracy == finished.epochs[-1].test_accuracy


def test_cancel_set_during_calibration_stops_within_one_chunk_before_training(tiny_root, step_clock):
    config = _config(tiny_root, batch_size=1, epochs=2)
    cancel = threading.Event()
    steps_after_cancel: list[int] = []

    def watch(index: int) -> None:
        if cancel.is_set():
            steps_after_cancel.append(index)
        elif step_clock.steps == 7:  # inside the first timed chunk
            cancel.set()

    step_clock.on_step.append(watch)
    finished, events = _run_on(step_clock, config, cancel=cancel)

    assert finished.status is RunStatus.CANCELLED
    assert finished.message == "stopped before training started"
    assert len(steps_after_cancel) < CALIBRATION_CHUNK_STEPS
    assert events == [finished]  # nothing started, nothing trained
    assert finished.epochs == ()


def test_cancel_from_another_thread_stops_a_long_run(tiny_root):
    config = _config(tiny_root, hidden=(8,), batch_size=1, epochs=1000)  # would run for minutes
    prepared = prepare_run(config)
    cancel, in_epoch_2 = threading.Event(), threading.Event()
    outcome: list[Finished] = []

    def on_event(event: Event) -> None:
        if isinstance(event, Progress) and event.epoch == 2:
            in_epoch_2.set()

    worker = threading.Thread(target=lambda: outcome.append(execute_run(prepared, on_event, cancel=cancel)))
    worker.start()
    try:
        assert in_epoch_2.wait(timeout=THREAD_TIMEOUT_S), "the run never reached epoch 2"
    finally:
        cancel.set()
        worker.join(timeout=THREAD_TIMEOUT_S)
    assert not worker.is_alive(), "the run did not stop after cancel"
    [finished] = outcome
    assert finished.status is RunStatus.CANCELLED
    assert 1 <= len(finished.epochs) < config.epochs


def _lab4_reference(
    images: np.ndarray, labels: np.ndarray, *, hidden: int, seed: int, lr: float, reg: float,
    batch_size: int, epochs: int = 1,
) -> dict:
    """The lab's loop written out in float32 with torch.autograd (independent of the engine):
    file order, `k_c = Σ -y_c log(p_c + 1e-8)`, `L = mean_c k_c`, `J = L + λ/2 (ΣW1² + ΣW2²)`,
    `param -= lr · grad`. Returns the last epoch's Σ L, correct counts scored before and after
    each update, the first non-finite step (1-based, over the whole run) and the parameters."""
    params = init_params(FEATURES, (hidden,), CLASSES, conventions="lab4", seed=seed)
    w1, b1, w2, b2 = [t.clone().requires_grad_(True) for t in params.tensors()]
    x_all = torch.from_numpy(images.astype(np.float32) / 255.0)
    label_all = torch.from_numpy(labels.astype(np.int64))
    y_all = F.one_hot(label_all, CLASSES).to(torch.float32)

    def logits(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ w1.T + b1) @ w2.T + b2

    first_nonfinite, global_step = None, 0
    for _ in range(epochs):
        loss_sum, correct_before, correct_after = 0.0, 0, 0
        for start in range(0, len(labels), batch_size):
            global_step += 1
            x, y, target = (t[start : start + batch_size] for t in (x_all, y_all, label_all))
            o = logits(x)
            shifted = o - o.max(dim=1, keepdim=True).values
            p = torch.exp(shifted) / torch.exp(shifted).sum(dim=1, keepdim=True)
            k = (-y * torch.log(p + LAB4_EPSILON)).sum(dim=0)
            loss = k.mean()
            objective = loss + reg / 2 * ((w1 * w1).sum() + (w2 * w2).sum())
            if first_nonfinite is None and not math.isfinite(loss.item()):
                first_nonfinite = global_step
            loss_sum += loss.item()
            correct_before += int((o.argmax(dim=1) == target).sum())
            objective.backward()
            with torch.no_grad():
                for t in (w1, b1, w2, b2):
                    assert t.grad is not None
                    t.sub_(lr * t.grad)
                    t.grad = None
                correct_after += int((logits(x).argmax(dim=1) == target).sum())
    return dict(
        loss_sum=loss_sum, correct_before=correct_before, correct_after=correct_after,
        first_nonfinite=first_nonfinite, logits=logits,
    )


def _read_idx_gz(path: Path, header: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=header)


def _read_split(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, FEATURES)
    labels = _read_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", 8)
    return images, labels


def test_a_non_finite_loss_ends_the_run_as_diverged_at_the_step_it_happened(tiny_root):
    # lr·λ = 100: each step multiplies the weights by (1 - 100) = -99, so they overflow within
    # a few dozen steps whatever the data.
    config = _config(tiny_root, lr=10.0, reg=10.0, epochs=5)
    finished, events = _run(config)
    steps_per_epoch = math.ceil(TINY_TRAIN / config.batch_size)

    assert finished.status is RunStatus.DIVERGED
    assert isinstance(finished.diverged_step, int) and finished.diverged_step >= 1
    assert f"step {finished.diverged_step}" in finished.message
    assert "\n" not in finished.message
    # Stopped at the first report: within epoch 1 of 5, no epoch completed.
    assert finished.diverged_step <= steps_per_epoch
    assert not [e for e in events if isinstance(e, EpochEnd)]
    assert all(e.epoch == 1 for e in events if isinstance(e, Progress))
    assert finished.epochs == () and finished.train_loss is None
    assert events[-1] is finished

    images, labels = _read_split(tiny_root / "FashionMNIST" / "raw", "train")
    reference = _lab4_reference(
        images, labels, hidden=32, seed=config.seed, lr=config.lr, reg=config.reg,
        batch_size=config.batch_size,
    )
    assert finished.diverged_step == reference["first_nonfinite"]


def test_a_run_at_chance_for_patience_epochs_in_a_row_ends_as_diverged(tiny_root):
    # lab4 at lr 10: the softmax saturates on the wrong classes; log(p + 1e-8) keeps every loss
    # finite (≤ 18.4 per sample) while accuracy sits at chance.
    config = _config(tiny_root, lr=10.0, epochs=8, chance_patience=3)
    finished, events = _run(config)
    steps_per_epoch = math.ceil(TINY_TRAIN / config.batch_size)

    assert finished.status is RunStatus.DIVERGED
    assert "at chance" in finished.message and "3 epochs in a row" in finished.message
    assert len(finished.epochs) == 3  # stopped after the third epoch at chance
    assert all(abs(e.train_accuracy - 100.0 / CLASSES) <= 2.0 for e in finished.epochs)
    assert math.isfinite(finished.epochs[-1].train_loss)
    assert finished.diverged_step == 3 * steps_per_epoch
    assert events[-1] is finished


def test_a_run_that_ends_at_chance_before_its_patience_runs_out_completes_flagged(tiny_root):
    config = _config(tiny_root, lr=10.0, epochs=2, chance_patience=3)
    finished, _ = _run(config)
    assert finished.status is RunStatus.COMPLETED
    assert "test accuracy at chance (10 %)" in finished.message


def test_patience_zero_never_stops_a_run_at_chance(tiny_root):
    config = _config(tiny_root, lr=10.0, epochs=3, chance_patience=0)
    finished, _ = _run(config)
    assert finished.status is RunStatus.COMPLETED and len(finished.epochs) == 3


def test_an_error_during_the_run_becomes_a_failed_finished_event_with_a_one_line_message(
    tiny_root, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("boom\nwith a traceback-like second line")

    monkeypatch.setattr("tuner_tui.engine.runner.make_backend", broken)
    prepared = prepare_run(_config(tiny_root))
    events: list = []
    finished = execute_run(prepared, events.append)  # must not raise

    assert finished.status is RunStatus.FAILED
    assert "boom" in finished.message
    assert "\n" not in finished.message
    assert events == [finished]
    assert finished.epochs == () and finished.train_loss is None


# --- bad input surfaces in prepare_run ----------------------------------------------------------


def test_a_batch_larger_than_the_training_set_is_a_config_error_naming_batch_size(tiny_root):
    with pytest.raises(ConfigError) as raised:
        prepare_run(_config(tiny_root, batch_size=TINY_TRAIN + 1))
    assert raised.value.field == "batch_size"
    assert str(raised.value).startswith("batch_size")
    assert str(TINY_TRAIN) in str(raised.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_cuda_is_a_config_error_naming_device(tiny_root):
    with pytest.raises(ConfigError) as raised:
        prepare_run(_config(tiny_root, device="cuda"))
    assert raised.value.field == "device"
    assert str(raised.value).startswith("device")


def test_a_missing_dataset_is_one_line_naming_every_place_looked_and_the_fix(tmp_path, offline_datasets):
    root = tmp_path / "empty"
    with pytest.raises(DatasetNotFoundError) as raised:
        prepare_run(_config(root))
    message = str(raised.value)
    assert "\n" not in message
    for place in (root / "FashionMNIST" / "raw", root, offline_datasets):
        assert str(place) in message
    assert f"torchvision download into {root}" in message
    assert "offline" in message
    assert "TUNER_TUI_DATA" in message
    assert "--data-root" in message


def test_a_truncated_dataset_file_surfaces_from_prepare_run_as_a_documented_bad_input_error(tiny_root):
    images = tiny_root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:1000])  # an interrupted download
    with pytest.raises((ConfigError, DatasetNotFoundError)) as raised:
        prepare_run(_config(tiny_root))
    assert "\n" not in str(raised.value)
    assert str(images) in str(raised.value)


# --- the lab's accounting, reproducibility, conventions ----------------------------------------


def test_lab4_loss_and_accuracy_match_a_hand_written_lab_loop_with_a_partial_last_batch(tmp_path):
    root = tmp_path / "data"
    folder = write_idx_dataset(root, train=605, test=TINY_TEST)  # B = 10: 61 steps, last of 5
    config = _config(root, epochs=1, lr=0.01, reg=0.01, seed=3)
    finished, _ = _run(config)
    assert finished.status is RunStatus.COMPLETED

    images, labels = _read_split(folder, "train")
    reference = _lab4_reference(
        images, labels, hidden=32, seed=config.seed, lr=config.lr, reg=config.reg, batch_size=10
    )
    expected_loss = reference["loss_sum"] / (605 // 10)  # Σ L over batches / floor(N/B)
    assert finished.train_loss == pytest.approx(expected_loss, rel=1e-4)
    # Accuracy counts each batch scored before its update (and that differs from after).
    assert reference["correct_before"] != reference["correct_after"]
    assert finished.train_accuracy == pytest.approx(100.0 * reference["correct_before"] / 605)

    test_images, test_labels = _read_split(folder, "t10k")
    with torch.no_grad():
        predicted = reference["logits"](torch.from_numpy(test_images.astype(np.float32) / 255.0)).argmax(dim=1)
    expected_test = 100.0 * int((predicted.numpy() == test_labels).sum()) / len(test_labels)
    assert finished.test_accuracy == pytest.approx(expected_test, abs=100.0 / len(test_labels) + 1e-9)


def test_the_same_config_twice_gives_identical_metrics(tiny_root):
    config = _config(tiny_root, epochs=2, lr=0.05)
    assert _metrics(_run(config)[0]) == _metrics(_run(config)[0])


def test_a_different_seed_gives_different_metrics(tiny_root):
    first, _ = _run(_config(tiny_root, epochs=2, lr=0.05, seed=0))
    second, _ = _run(_config(tiny_root, epochs=2, lr=0.05, seed=1))
    assert first.train_loss != second.train_loss
    assert _metrics(first) != _metrics(second)


def test_standard_conventions_run_end_to_end_and_reshuffle_every_epoch(tiny_root, monkeypatch):
    import tuner_tui.engine.backend_base

    orders: dict[int, torch.Tensor | None] = {}
    real_epoch_order = tuner_tui.engine.backend_base.epoch_order

    def recording_epoch_order(samples, *, conventions, seed, epoch, device):
        order = real_epoch_order(samples, conventions=conventions, seed=seed, epoch=epoch, device=device)
        orders[epoch] = order
        return order

    monkeypatch.setattr(tuner_tui.engine.backend_base, "epoch_order", recording_epoch_order)
    standard, _ = _run(_config(tiny_root, conventions="standard", epochs=3, lr=0.1))

    assert standard.status is RunStatus.COMPLETED
    assert standard.test_accuracy is not None and standard.test_accuracy > 80.0
    assert sorted(orders) == [0, 1, 2]
    for order in orders.values():
        assert order is not None
        assert torch.equal(order.sort().values, torch.arange(TINY_TRAIN))
    first, second, third = (orders[epoch] for epoch in (0, 1, 2))
    assert first is not None and second is not None and third is not None
    assert not torch.equal(first, second) and not torch.equal(second, third)

    monkeypatch.setattr(tuner_tui.engine.backend_base, "epoch_order", real_epoch_order)
    lab4, _ = _run(_config(tiny_root, conventions="lab4", epochs=3, lr=0.1))
    assert _metrics(standard) != _metrics(lab4)


def test_a_cifar10_run_reads_the_pickled_batches(tmp_path):
    root = tmp_path / "data"
    folder = write_cifar10(root, train_per_batch=60, test=50)
    finished, events = _run(_config(root, dataset="cifar10", epochs=2, lr=0.05))
    started = events[0]
    assert isinstance(started, Started)
    assert started.data_source == str(folder)
    assert (started.train_samples, started.test_samples) == (300, 50)
    assert started.params == 3072 * 32 + 32 + CLASSES * 32 + CLASSES
    assert finished.status is RunStatus.COMPLETED
    assert finished.test_accuracy is not None and finished.test_accuracy > 50.0
