"""Packed training's specification: every slot of a pack gives its solo run's numbers.

The oracle is `FusedMLPBackend`, itself checked against the graph and torch.autograd in
tests/test_engine.py: slot by slot, a pack must agree with it in float64 to 1e-10 after 50 steps
(crossing epoch boundaries and partial batches), whatever the slots' hidden sizes, learning rates,
L2 strengths and seeds.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
import torch

from tests.conftest import require_path
from tests.datafiles import write_idx_dataset
from tuner_tui.engine.batching import DeviceData
from tuner_tui.engine.capacity import WontFitError
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import EpochEnd, Finished, Progress, RunStatus, Started
from tuner_tui.engine.fused import FusedMLPBackend
from tuner_tui.engine.memory_model import estimate_pack_memory
from tuner_tui.engine.pack_runner import PackEvent, PackKey, execute_pack, prepare_pack
from tuner_tui.engine.packed import PackedMLPBackend, PackError, SlotConfig
from tuner_tui.engine.params import MLPParams, init_params
from tuner_tui.engine.runner import execute_run, prepare_run
from tuner_tui.runs.pack_session import PackEntry, run_pack
from tuner_tui.runs.records import RunLabels

F64 = torch.float64
CLASSES = 10
SAMPLES, FEATURES, BATCH = 103, 20, 7  # 15 steps an epoch, the last one of 5 rows
AGREEMENT_STEPS = 50
TOLERANCE = 1e-10


def _data(samples: int = SAMPLES, test_samples: int = 31, validation: int = 0) -> DeviceData:
    g = torch.Generator().manual_seed(1234)

    def images(n: int) -> torch.Tensor:
        return torch.randint(0, 256, (n, FEATURES), generator=g, dtype=torch.uint8)

    def labels(n: int) -> torch.Tensor:
        return torch.randint(0, CLASSES, (n,), generator=g)

    train, test = (images(samples), labels(samples)), (images(test_samples), labels(test_samples))
    data = DeviceData.from_tensors(*train, *test, CLASSES, "cpu")
    if not validation:
        return data
    return DeviceData(
        data.train_images, data.train_labels, data.test_images, data.test_labels, CLASSES,
        images(validation), labels(validation),
    )


def _solo(data: DeviceData, slot: SlotConfig, conventions: str, dtype=F64) -> FusedMLPBackend:
    params = init_params(FEATURES, slot.hidden, CLASSES, conventions=conventions, seed=slot.seed, dtype=dtype)
    return FusedMLPBackend(
        params, data, lr=slot.lr, reg=slot.reg, batch_size=BATCH, conventions=conventions, seed=slot.seed
    )


def _pack(data: DeviceData, slots: list[SlotConfig], conventions: str, dtype=F64, **kwargs) -> PackedMLPBackend:
    return PackedMLPBackend(data, slots, batch_size=BATCH, conventions=conventions, dtype=dtype, **kwargs)


def _train(backend, total_steps: int, first_epoch: int = 0) -> list:
    """`total_steps` steps across epochs; the totals at each epoch's end and at the stop."""
    totals = []
    per_epoch = backend.steps_per_epoch
    for global_step in range(total_steps):
        epoch, step = divmod(global_step, per_epoch)
        if step == 0:
            backend.start_epoch(first_epoch + epoch)
        backend.train_step(step)
        if step == per_epoch - 1 or global_step == total_steps - 1:
            totals.append(backend.epoch_totals(step + 1))
    return totals


def _assert_params_close(got: MLPParams, want: MLPParams, tol: float, what: str) -> None:
    for index, (g, w) in enumerate(zip(got.tensors(), want.tensors(), strict=True)):
        assert g.shape == w.shape, f"{what} param {index}"
        torch.testing.assert_close(g, w, rtol=0, atol=tol, msg=f"{what} param {index}")


def _assert_totals_close(got, want, tol: float, what: str) -> None:
    assert (got.samples, got.steps, got.correct) == (want.samples, want.steps, want.correct), what
    assert got.loss_sum == pytest.approx(want.loss_sum, rel=tol), what


MIXED = [
    SlotConfig(hidden=(16,), lr=0.05, reg=0.0, seed=0),
    SlotConfig(hidden=(32,), lr=0.02, reg=0.001, seed=1),
    SlotConfig(hidden=(8,), lr=0.1, reg=0.01, seed=2),
]
DEEP = [
    SlotConfig(hidden=(16, 8), lr=0.05, reg=0.0, seed=0),
    SlotConfig(hidden=(32, 12), lr=0.02, reg=0.001, seed=1),
    SlotConfig(hidden=(8, 16), lr=0.1, reg=0.01, seed=2),
]
SAME_SEED = [SlotConfig(hidden=(16,), lr=lr, reg=0.001, seed=5) for lr in (0.01, 0.05, 0.1)]


# --- 1. Each slot equals its solo run --------------------------------------------------------


@pytest.mark.parametrize("block_steps", [1, 3, 8], ids=["every_step", "blocks_of_3", "blocks_of_8"])
@pytest.mark.parametrize("slots", [MIXED, DEEP, SAME_SEED], ids=["mixed", "2hidden", "same_seed"])
@pytest.mark.parametrize("conventions", ["lab4", "standard"])
def test_every_slot_agrees_with_its_solo_fused_run_in_float64_after_50_steps(conventions, slots, block_steps):
    """Layer 1's updates applied every step, or deferred over blocks of steps (the CPU default)."""
    data = _data()
    pack = _pack(data, slots, conventions, block_steps=block_steps)
    pack_totals = _train(pack, AGREEMENT_STEPS)
    assert len(pack_totals) == 4  # three epoch ends and the stop
    for index, slot in enumerate(slots):
        solo = _solo(data, slot, conventions)
        solo_totals = _train(solo, AGREEMENT_STEPS)
        _assert_params_close(pack.slot_params(index), solo.params, TOLERANCE, f"slot {index}")
        for got, want in zip(pack_totals, solo_totals, strict=True):
            _assert_totals_close(got[index], want, TOLERANCE, f"slot {index}")
        assert pack.test_accuracy()[index] == solo.test_accuracy()


def test_reading_the_parameters_mid_block_applies_the_deferred_updates_and_training_goes_on_exactly():
    """Calibration reads and restores the parameters in the middle of a block, then training starts
    over: the pack must give the same numbers as one that never paused."""
    data = _data()
    paused = _pack(data, MIXED, "lab4", block_steps=8)
    paused.start_epoch(0)
    for step in range(5):
        paused.train_step(step)
    saved = [t.clone() for t in paused.params.tensors()]  # mid-block: steps 0-4 of a block of 8
    for step in range(5, 11):
        paused.train_step(step)
    for tensor, value in zip(paused.params.tensors(), saved, strict=True):
        tensor.copy_(value)
    for step in range(5, 11):
        paused.train_step(step)
    straight = _pack(data, MIXED, "lab4", block_steps=8)
    _train(straight, 11)
    for index in range(len(MIXED)):
        _assert_params_close(paused.slot_params(index), straight.slot_params(index), TOLERANCE, f"slot {index}")


def test_a_slot_that_decays_too_fast_to_defer_turns_deferral_off_and_still_agrees():
    data = _data()
    slots = [MIXED[0], SlotConfig(hidden=(16,), lr=0.5, reg=1.5, seed=4)]  # decay factor 0.25
    pack = _pack(data, slots, "lab4", block_steps=8)
    assert pack._steps_per_block == 1
    _train(pack, AGREEMENT_STEPS)
    for index, slot in enumerate(slots):
        solo = _solo(data, slot, "lab4")
        _train(solo, AGREEMENT_STEPS)
        _assert_params_close(pack.slot_params(index), solo.params, TOLERANCE, f"slot {index}")


def test_slots_with_different_seeds_under_standard_take_their_own_batch_orders():
    data = _data()
    pack = _pack(data, MIXED, "standard")
    pack.start_epoch(0)
    assert pack.labels_in_order.shape == (3, SAMPLES)
    assert not torch.equal(pack.labels_in_order[0], pack.labels_in_order[1])
    for index, slot in enumerate(MIXED):
        solo = _solo(data, slot, "standard")
        solo.start_epoch(0)
        assert torch.equal(pack.labels_in_order[index], solo.labels_in_order)


def test_validation_metrics_are_each_slots_solo_figures():
    data = _data(validation=23)
    pack = _pack(data, MIXED, "lab4")
    _train(pack, 20)
    metrics = pack.validation_metrics()
    assert metrics is not None and len(metrics) == len(MIXED)
    for index, slot in enumerate(MIXED):
        solo = _solo(data, slot, "lab4")
        _train(solo, 20)
        want = solo.validation_metrics()
        assert want is not None
        assert metrics[index][0] == pytest.approx(want[0], rel=1e-10)
        assert metrics[index][1] == want[1]


def test_without_held_out_rows_validation_metrics_are_none():
    assert _pack(_data(), MIXED, "lab4").validation_metrics() is None


# --- 2. Divergence: a frozen slot does not disturb the others --------------------------------


def test_a_diverging_slot_is_frozen_and_the_others_still_equal_their_solo_runs():
    data = _data()
    # lr·λ = 100: the weights are multiplied by −99 every step and overflow within a few dozen.
    blowing_up = SlotConfig(hidden=(16,), lr=10.0, reg=10.0, seed=3)
    slots = [MIXED[0], blowing_up, MIXED[1]]
    pack = _pack(data, slots, "lab4", dtype=torch.float32)
    per_epoch = pack.steps_per_epoch
    frozen_at = None
    for global_step in range(AGREEMENT_STEPS):
        epoch, step = divmod(global_step, per_epoch)
        if step == 0:
            pack.start_epoch(epoch)
        pack.train_step(step)
        if frozen_at is None and pack.first_nonfinite_step(1, step + 1) is not None:
            pack.freeze(1)
            frozen_at = global_step
    assert frozen_at is not None and frozen_at < AGREEMENT_STEPS - 10  # it went on training after
    assert pack.slot_config(1) is None
    assert all(torch.count_nonzero(t[1]) == 0 for t in pack.params.tensors()[2:])
    totals = pack.epoch_totals(AGREEMENT_STEPS - 3 * per_epoch)
    assert math.isfinite(totals[0].loss_sum) and math.isfinite(totals[2].loss_sum)
    for index in (0, 2):
        solo = _solo(data, slots[index], "lab4", dtype=torch.float32)
        _train(solo, AGREEMENT_STEPS)
        _assert_params_close(pack.slot_params(index), solo.params, 1e-5, f"slot {index}")


# --- 3. Recycling ----------------------------------------------------------------------------


@pytest.mark.parametrize("conventions", ["lab4", "standard"])
def test_a_recycled_slot_with_another_hidden_size_equals_a_fresh_solo_run(conventions):
    data = _data()
    pack = _pack(data, MIXED, conventions)
    epochs_before = 2
    _train(pack, epochs_before * pack.steps_per_epoch)
    kept = [pack.slot_params(0), pack.slot_params(2)]
    newcomer = SlotConfig(hidden=(48,), lr=0.03, reg=0.001, seed=9)

    pack.reconfigure([0, newcomer, 2])
    assert pack.widths == (48,)
    _assert_params_close(pack.slot_params(0), kept[0], 0.0, "kept slot 0")
    _assert_params_close(pack.slot_params(2), kept[1], 0.0, "kept slot 2")
    pack_totals = _train(pack, AGREEMENT_STEPS, first_epoch=epochs_before)

    solo = _solo(data, newcomer, conventions)
    solo_totals = _train(solo, AGREEMENT_STEPS)
    _assert_params_close(pack.slot_params(1), solo.params, TOLERANCE, "recycled slot")
    for got, want in zip(pack_totals, solo_totals, strict=True):
        _assert_totals_close(got[1], want, TOLERANCE, "recycled slot")
    # The slots that stayed carried on as if nothing happened.
    for index, slot in ((0, MIXED[0]), (2, MIXED[2])):
        solo = _solo(data, slot, conventions)
        _train(solo, epochs_before * pack.steps_per_epoch + AGREEMENT_STEPS)
        _assert_params_close(pack.slot_params(index), solo.params, TOLERANCE, f"slot {index}")


def test_dropping_slots_re_slices_the_pack_to_its_widest_remaining_slot():
    data = _data()
    pack = _pack(data, MIXED, "lab4")
    _train(pack, 15)
    kept = pack.slot_params(2)
    pack.reconfigure([2])
    assert (pack.size, pack.widths) == (1, (8,))
    _assert_params_close(pack.slot_params(0), kept, 0.0, "kept slot")
    assert pack.params.weights[0].shape == (8, FEATURES)


def test_a_reserved_width_is_kept_through_reconfigure():
    pack = _pack(_data(), MIXED, "lab4", reserve=(64,))
    assert pack.widths == (64,)
    pack.reconfigure([2])
    assert pack.widths == (64,)


# --- 4. What cannot be packed ----------------------------------------------------------------


def test_slots_of_different_depths_are_refused_with_a_one_line_error_naming_hidden():
    with pytest.raises(PackError) as raised:
        _pack(_data(), [MIXED[0], DEEP[0]], "lab4")
    assert raised.value.field == "hidden"
    assert "same number of hidden layers" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_an_empty_pack_is_refused():
    with pytest.raises(PackError):
        _pack(_data(), [], "lab4")


def test_a_frozen_slot_cannot_be_kept_by_reconfigure():
    pack = _pack(_data(), MIXED, "lab4")
    pack.freeze(0)
    with pytest.raises(PackError):
        pack.reconfigure([0, 1])


# --- 5. The pack runner: each run reported as if it ran alone --------------------------------

TINY_TRAIN, TINY_TEST = 600, 200


@pytest.fixture
def tiny_root(tmp_path: Path, offline_datasets: Path) -> Path:
    root = tmp_path / "data"
    write_idx_dataset(root, train=TINY_TRAIN, test=TINY_TEST)
    return root


def _run_config(root: Path, **overrides) -> RunConfig:
    values = dict(
        dataset="fmnist", data_root=str(root), device="cpu", hidden=(32,), batch_size=10, epochs=1, lr=0.05, seed=0,
    )
    values.update(overrides)
    return RunConfig(**values)


def _solo_run(config: RunConfig) -> Finished:
    return execute_run(prepare_run(config), lambda event: None)


def _by_run(events: list[PackEvent]) -> dict[int, list]:
    runs: dict[int, list] = {}
    for tagged in events:
        runs.setdefault(tagged.run, []).append(tagged.event)
    return runs


def _assert_same_figures(got: Finished, want: Finished) -> None:
    """The float32 contract: a packed run's accuracies are its solo run's within 0.1 pp (its loss
    within 0.1 %: float32 rounds the wide and batched matmuls differently, and an epoch amplifies it)."""
    assert got.status is want.status
    assert len(got.epochs) == len(want.epochs)
    for g, w in zip(got.epochs, want.epochs, strict=True):
        assert g.test_accuracy == pytest.approx(w.test_accuracy, abs=0.1)
        assert g.train_accuracy == pytest.approx(w.train_accuracy, abs=0.1)
        assert g.train_loss == pytest.approx(w.train_loss, rel=1e-3)
    assert got.params == want.params


THREE = [
    dict(hidden=(32,), lr=0.05, seed=0, epochs=1),
    dict(hidden=(16,), lr=0.02, reg=0.001, seed=1, epochs=3),
    dict(hidden=(48,), lr=0.1, seed=2, epochs=2),
]


def test_packed_runs_report_their_solo_runs_figures_in_float32(tiny_root):
    configs = [_run_config(tiny_root, **values) for values in THREE]
    events: list[PackEvent] = []
    results = execute_pack(prepare_pack(configs), events.append)
    assert [f.status for f in results] == [RunStatus.COMPLETED] * 3
    for config, got in zip(configs, results, strict=True):
        _assert_same_figures(got, _solo_run(config))
    started = [e.event for e in events if isinstance(e.event, Started)]
    assert [s.config for s in started] == configs
    assert all(s.memory_estimate == started[0].memory_estimate for s in started)  # the pack's, shared


def test_each_run_reports_started_progress_and_epoch_ends_in_order_then_finished(tiny_root):
    configs = [_run_config(tiny_root, **values) for values in THREE]
    events: list[PackEvent] = []
    execute_pack(prepare_pack(configs), events.append)
    runs = _by_run(events)
    assert sorted(runs) == [0, 1, 2]
    steps = math.ceil(TINY_TRAIN / 10)
    for run, config in enumerate(configs):
        sequence = runs[run]
        assert isinstance(sequence[0], Started) and isinstance(sequence[-1], Finished)
        assert sum(isinstance(e, (Started, Finished)) for e in sequence) == 2
        assert [e.epoch for e in sequence if isinstance(e, EpochEnd)] == list(range(1, config.epochs + 1))
        progress = [(e.epoch, e.step) for e in sequence if isinstance(e, Progress)]
        assert progress == sorted(progress) and progress[-1] == (config.epochs, steps)
        for event in sequence:  # each EpochEnd right after its epoch's last Progress
            if isinstance(event, EpochEnd):
                before = sequence[sequence.index(event) - 1]
                assert isinstance(before, Progress) and (before.epoch, before.step) == (event.epoch, steps)
    # Run 1 sits in slot 1; once run 0 has left (no run to take its place) the pack is re-sliced.
    slots = [(e.event.epoch, e.slot) for e in events if e.run == 1 and isinstance(e.event, (Progress, EpochEnd))]
    assert {slot for epoch, slot in slots if epoch == 1} == {1}
    assert {slot for epoch, slot in slots if epoch > 1} == {0}
    # A run that ends first reports Finished before the others' later epochs.
    first_done = next(i for i, e in enumerate(events) if isinstance(e.event, Finished))
    assert events[first_done].run == 0
    assert any(isinstance(e.event, EpochEnd) and e.run == 1 for e in events[first_done:])


def test_a_freed_slot_takes_the_next_config_of_another_hidden_size_and_it_equals_its_solo_run(tiny_root):
    configs = [_run_config(tiny_root, **values) for values in THREE]
    queue = [_run_config(tiny_root, hidden=(64,), lr=0.03, seed=7, epochs=2)]
    keys: list[PackKey] = []

    def next_config(key: PackKey) -> RunConfig | None:
        keys.append(key)
        return queue.pop(0) if queue else None

    events: list[PackEvent] = []
    results = execute_pack(prepare_pack(configs), events.append, next_config=next_config)
    assert len(results) == 4 and all(f.status is RunStatus.COMPLETED for f in results)
    assert keys and keys[0] == PackKey.of(configs[0])
    recycled = _by_run(events)[3]
    assert isinstance(recycled[0], Started) and recycled[0].config.hidden == (64,)
    first_event = next(i for i, e in enumerate(events) if e.run == 3)
    run_0_done = next(i for i, e in enumerate(events) if e.run == 0 and isinstance(e.event, Finished))
    assert first_event > run_0_done
    assert events[first_event].slot == 0  # run 0's slot
    _assert_same_figures(results[3], _solo_run(_run_config(tiny_root, hidden=(64,), lr=0.03, seed=7, epochs=2)))
    _assert_same_figures(results[1], _solo_run(configs[1]))


def test_a_diverging_run_ends_alone_at_its_solo_step_and_the_others_complete_unchanged(tiny_root):
    diverging = _run_config(tiny_root, lr=10.0, reg=10.0, epochs=2, seed=3)
    configs = [_run_config(tiny_root, **THREE[1]), diverging]
    results = execute_pack(prepare_pack(configs), lambda event: None)
    solo = _solo_run(diverging)
    assert results[1].status is RunStatus.DIVERGED and solo.status is RunStatus.DIVERGED
    assert results[1].diverged_step == solo.diverged_step
    assert results[1].message == solo.message
    _assert_same_figures(results[0], _solo_run(configs[0]))


def test_a_judge_prunes_one_run_and_the_others_go_on(tiny_root):
    configs = [_run_config(tiny_root, epochs=3, seed=s) for s in range(3)]
    judged: list[tuple[int, int]] = []

    def judge(run: int, end: EpochEnd) -> bool:
        judged.append((run, end.epoch))
        return run == 1

    results = execute_pack(prepare_pack(configs), lambda event: None, judge=judge)
    assert [f.status for f in results] == [RunStatus.COMPLETED, RunStatus.PRUNED, RunStatus.COMPLETED]
    assert len(results[1].epochs) == 1 and results[1].message == "pruned after epoch 1"
    assert (1, 2) not in judged and (0, 2) in judged


def test_a_stop_cancels_every_run_in_the_pack(tiny_root):
    configs = [_run_config(tiny_root, epochs=3, seed=s) for s in range(2)]
    cancel = threading.Event()

    def on_event(tagged: PackEvent) -> None:
        if isinstance(tagged.event, EpochEnd):
            cancel.set()

    results = execute_pack(prepare_pack(configs), on_event, cancel=cancel)
    assert [f.status for f in results] == [RunStatus.CANCELLED] * 2
    assert all(len(f.epochs) == 1 and f.message.startswith("stopped in epoch 2") for f in results)


@pytest.mark.parametrize(
    "change, field",
    [(dict(batch_size=20), "batch_size"), (dict(hidden=(8, 8)), "hidden"), (dict(engine="graph"), "engine"),
     (dict(conventions="standard"), "conventions"), (dict(dataset="cifar10"), "dataset")],
)
def test_runs_that_cannot_share_a_pack_are_refused_naming_the_field(tiny_root, change, field):
    with pytest.raises(PackError) as raised:
        prepare_pack([_run_config(tiny_root), _run_config(tiny_root, **change)])
    assert raised.value.field == field and "\n" not in str(raised.value)


def test_a_pack_that_cannot_fit_is_refused_before_anything_is_loaded(tiny_root, monkeypatch):
    monkeypatch.setattr("tuner_tui.engine.capacity.available_bytes", lambda device: 1024**2)
    with pytest.raises(WontFitError):
        prepare_pack([_run_config(tiny_root), _run_config(tiny_root, seed=1)])


@pytest.mark.requires("fashion-mnist")
def test_packed_runs_on_real_fashion_mnist_report_their_solo_figures_after_an_epoch():
    """The lab's fmnist_exp1 and fmnist_exp8 (784→256→10 and 784→128→10, batch 10, lr 0.01), one epoch.
    (At larger steps, e.g. lr 0.05 at batch 100, float32 training is chaotic enough that a solo run on
    1 thread and on 2 already differs by pp: the contract is for the lab's regime.)"""
    folder = require_path("fashion-mnist")
    base = dict(dataset="fmnist", data_root=str(folder), device="cpu", batch_size=10, epochs=1, lr=0.01, seed=0)
    configs = [RunConfig(**base, hidden=(256,)), RunConfig(**base, hidden=(128,), reg=0.001)]
    results = execute_pack(prepare_pack(configs), lambda event: None)
    for config, got in zip(configs, results, strict=True):
        _assert_same_figures(got, _solo_run(config))
        assert got.test_accuracy > 75.0


# --- 6. The memory estimate counts what the pack allocates -----------------------------------


def _storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind `tensors` (views and expansions counted once)."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors if t is not None}
    return sum(storages.values())


@pytest.mark.parametrize(
    "conventions, seeds", [("lab4", (0, 1, 2)), ("standard", (4, 4, 4)), ("standard", (0, 1, 2))],
    ids=["lab4", "standard-shared-order", "standard-per-slot-orders"],
)
def test_the_pack_memory_estimate_counts_the_tensors_the_pack_allocates(conventions, seeds):
    """Resident after an epoch (full-batch block and partial-batch buffers made): the dataset, its
    orders, parameters, records and step buffers. Only the per-slot step scales (K numbers) are not counted,
    and under `standard` the estimate adds the list of orders `start_epoch` holds while it builds them."""
    features, hidden = 784, [(16,), (40,), (24,)]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (SAMPLES + 31, features), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, CLASSES, (SAMPLES + 31,), generator=g)
    train, test = (images[:SAMPLES], labels[:SAMPLES]), (images[SAMPLES:], labels[SAMPLES:])
    data = DeviceData.from_tensors(*train, *test, CLASSES, "cpu")
    slots = [SlotConfig(hidden=h, lr=0.01, reg=0.001, seed=s) for h, s in zip(hidden, seeds, strict=True)]
    pack = PackedMLPBackend(data, slots, batch_size=BATCH, conventions=conventions)
    _train(pack, pack.steps_per_epoch)
    configs = [
        RunConfig(dataset="fmnist", hidden=h, batch_size=BATCH, seed=s, conventions=conventions, device="cpu")
        for h, s in zip(hidden, seeds, strict=True)
    ]
    estimate = estimate_pack_memory(configs, device_type="cpu", train_size=SAMPLES, test_size=31)

    blocks = pack._blocks.values()
    buffers = [t for block in blocks for t in vars(block).values() if isinstance(t, torch.Tensor)]
    buffers += [t for block in blocks for t in (*block.upper, *block.upper_grads)]
    resident = _storage_bytes([
        data.train_images, data.train_labels, data.test_images, data.test_labels, pack._order,
        pack.labels_in_order, *pack.params.tensors(), pack.log_likelihoods, pack.predictions, *buffers,
    ])
    rate_vectors = sum(block.step_scale.nbytes for block in blocks)  # K numbers each
    # under standard, every slot's order while start_epoch compares them (one of them is kept when shared)
    transient_orders = len(seeds) if len(set(seeds)) > 1 else len(seeds) - 1
    order_list = 0 if conventions == "lab4" else transient_orders * SAMPLES * 8
    counted = estimate.dataset + estimate.parameters + estimate.gradients_and_buffers + estimate.activations_train
    assert counted - order_list == resident - rate_vectors
    assert estimate.activations_test >= estimate.activations_train + estimate.parameters  # calibration's copy


# --- 7. CUDA graphs: the step a graph replays -----------------------------------------------
#
# On a CUDA device both backends capture a "cursor step" (it reads its batch's positions from a
# tensor it advances itself) and replay it. On the CPU the cursor step runs eagerly: it must give
# the plain step's numbers exactly. On CUDA (skipped without it) the replayed graph must too.


def _fused(data, slot: SlotConfig, conventions: str, step_mode: str, dtype=F64) -> FusedMLPBackend:
    solo = _solo(data, slot, conventions, dtype=dtype)
    solo.step_mode = step_mode
    return solo


@pytest.mark.parametrize("conventions", ["lab4", "standard"])
def test_the_solo_cursor_step_equals_the_plain_step(conventions):
    data = _data()
    plain = _fused(data, MIXED[1], conventions, "plan")
    cursor = _fused(data, MIXED[1], conventions, "cursor")
    plain_totals, cursor_totals = _train(plain, AGREEMENT_STEPS), _train(cursor, AGREEMENT_STEPS)
    _assert_params_close(cursor.params, plain.params, 0.0, "cursor step")
    assert cursor_totals == plain_totals
    assert torch.equal(cursor.predictions, plain.predictions)
    assert cursor.graph_status == "cursor"


@pytest.mark.parametrize("slots", [MIXED, SAME_SEED, DEEP], ids=["mixed", "same_seed", "2hidden"])
@pytest.mark.parametrize("conventions", ["lab4", "standard"])
def test_the_pack_cursor_step_equals_its_plain_step_and_the_solo_runs(conventions, slots):
    data = _data()
    cursor = _pack(data, slots, conventions, block_steps=1)
    cursor.step_mode = "cursor"
    plain = _pack(data, slots, conventions, block_steps=1)
    cursor_totals, plain_totals = _train(cursor, AGREEMENT_STEPS), _train(plain, AGREEMENT_STEPS)
    for index, slot in enumerate(slots):
        _assert_params_close(cursor.slot_params(index), plain.slot_params(index), 1e-13, f"slot {index}")
        solo = _solo(data, slot, conventions)
        _train(solo, AGREEMENT_STEPS)
        _assert_params_close(cursor.slot_params(index), solo.params, TOLERANCE, f"slot {index} vs solo")
    for got, want in zip(cursor_totals, plain_totals, strict=True):
        for g, w in zip(got, want, strict=True):
            _assert_totals_close(g, w, 1e-13, "cursor totals")


def test_on_the_cpu_nothing_is_captured():
    data = _data()
    assert _solo(data, MIXED[0], "lab4").graph_status == "plan"
    assert _pack(data, MIXED, "lab4").graph_status == "plan"


def _cuda_or_skip() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device("cuda")


def _on(data: DeviceData, device: torch.device) -> DeviceData:
    return DeviceData(*(t.to(device) if isinstance(t, torch.Tensor) else t for t in (
        data.train_images, data.train_labels, data.test_images, data.test_labels, data.classes,
        data.val_images, data.val_labels,
    )))


@pytest.mark.parametrize("conventions", ["lab4", "standard"])
def test_on_cuda_the_captured_solo_step_equals_the_eager_one(conventions):
    device = _cuda_or_skip()
    data = _on(_data(), device)
    slot = MIXED[1]
    params = init_params(FEATURES, slot.hidden, CLASSES, conventions=conventions, seed=slot.seed, device=device)
    backends = {}
    for mode in ("graph", "plan"):
        backend = FusedMLPBackend(params.clone(), data, lr=slot.lr, reg=slot.reg, batch_size=BATCH,
                                  conventions=conventions, seed=slot.seed)
        backend.step_mode = mode
        backends[mode] = (backend, _train(backend, AGREEMENT_STEPS))
    (graphed, graph_totals), (eager, eager_totals) = backends["graph"], backends["plan"]
    assert graphed.graph_status == "captured"
    _assert_params_close(graphed.params, eager.params, 1e-5, "graphed")
    for got, want in zip(graph_totals, eager_totals, strict=True):
        assert (got.correct, got.samples) == (want.correct, want.samples)


@pytest.mark.parametrize("conventions", ["lab4", "standard"])
def test_on_cuda_the_captured_pack_step_equals_the_eager_one_and_the_solo_runs(conventions):
    device = _cuda_or_skip()
    data = _on(_data(), device)
    packs = {}
    for mode in ("graph", "plan"):
        pack = PackedMLPBackend(data, MIXED, batch_size=BATCH, conventions=conventions)
        pack.step_mode = mode
        packs[mode] = (pack, _train(pack, AGREEMENT_STEPS))
    (graphed, graph_totals), (eager, eager_totals) = packs["graph"], packs["plan"]
    assert graphed.graph_status == "captured"
    for index in range(len(MIXED)):
        _assert_params_close(graphed.slot_params(index), eager.slot_params(index), 1e-5, f"slot {index}")
    for got, want in zip(graph_totals, eager_totals, strict=True):
        assert [t.correct for t in got] == [t.correct for t in want]


# --- 8. Recording: every run of a pack is stored as its own run -------------------------------


def test_each_run_of_a_pack_is_stored_with_its_labels_pack_size_and_the_packs_shared_figures(tiny_root, store):
    entries = [
        PackEntry(_run_config(tiny_root, **values), RunLabels(preset=f"exp{index}"))
        for index, values in enumerate(THREE)
    ]
    extra = PackEntry(_run_config(tiny_root, hidden=(64,), seed=7, epochs=1), RunLabels(sweep="s", trial=4))
    queue = [extra]
    tagged: list[PackEvent] = []
    results = run_pack(entries, store, tagged.append, next_entry=lambda key: queue.pop(0) if queue else None)

    assert len(results) == 4 and all(r.store_error is None and r.run_id is not None for r in results)
    stored = {record.id: record for record in store.list_runs()}
    assert len(stored) == 4
    for result, entry in zip(results, [*entries, extra], strict=True):
        record = stored[result.run_id]
        assert record.status == "completed" and record.config == entry.config
        labels = entry.labels
        assert (record.preset, record.sweep, record.trial) == (labels.preset, labels.sweep, labels.trial)
        assert record.pack_size == 3
        assert len(record.epochs) == entry.config.epochs
        assert record.test_accuracy == result.finished.test_accuracy
        assert record.train_time_s == pytest.approx(result.finished.resources.train_time_s)
        assert record.peak_memory_bytes == result.finished.resources.peak_memory_bytes
    # The first runs shared the pack's first epoch: the same measured seconds in their first EpochEnd.
    first_epochs = {stored[r.run_id].epochs[0].seconds for r in results[:3]}
    assert len(first_epochs) == 1
    assert [e.run for e in tagged if isinstance(e.event, Started)] == [0, 1, 2, 3]


def test_runs_that_cannot_share_a_pack_raise_before_anything_is_stored(tiny_root, store):
    entries = [PackEntry(_run_config(tiny_root)), PackEntry(_run_config(tiny_root, batch_size=20))]
    with pytest.raises(PackError):
        run_pack(entries, store, lambda event: None)
    assert store.list_runs() == []


def test_a_next_config_that_cannot_join_is_stored_as_failed_and_the_next_one_is_asked(tiny_root, store):
    misfit = PackEntry(_run_config(tiny_root, batch_size=20), RunLabels(trial=1))
    fitting = PackEntry(_run_config(tiny_root, seed=3), RunLabels(trial=2))
    queue = [misfit, fitting]
    results = run_pack(
        [PackEntry(_run_config(tiny_root), RunLabels(trial=0))], store, lambda event: None,
        next_entry=lambda key: queue.pop(0) if queue else None,
    )
    assert [r.finished.status for r in results] == [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.COMPLETED]
    failed = store.get_run(results[1].run_id)
    assert failed.status == "failed" and failed.trial == 1
    assert failed.message.startswith("cannot join the pack: batch_size")


def test_an_error_during_a_pack_fails_every_run_in_it_with_one_line(tiny_root, monkeypatch):
    def broken(self, step):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(PackedMLPBackend, "train_step", broken)
    configs = [_run_config(tiny_root, seed=s) for s in range(2)]
    events: list[PackEvent] = []
    results = execute_pack(prepare_pack(configs), events.append)  # must not raise
    assert [f.status for f in results] == [RunStatus.FAILED] * 2
    assert all(f.message == "RuntimeError: boom" for f in results)
    assert [e.run for e in events if isinstance(e.event, Finished)] == [0, 1]


def test_a_next_config_too_big_for_the_memory_left_fails_alone_and_the_pack_goes_on(tiny_root, monkeypatch):
    # the first run: ~98 MiB
    monkeypatch.setattr("tuner_tui.engine.capacity.available_bytes", lambda device: 100 * 1024**2)
    queue = [_run_config(tiny_root, hidden=(16384,), seed=1), _run_config(tiny_root, hidden=(48,), seed=2)]
    results = execute_pack(
        prepare_pack([_run_config(tiny_root)]), lambda event: None,
        next_config=lambda key: queue.pop(0) if queue else None,
    )
    assert [f.status for f in results] == [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.COMPLETED]
    assert results[1].message.startswith("cannot join the pack: memory: the run needs an estimated")
