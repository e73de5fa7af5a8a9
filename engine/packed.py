"""Packed training: K runs of the MLP trained side by side as one, each slot giving its solo numbers.

The slots of a pack share the dataset, the batch size and the conventions, so every step has the
same shape for all of them. Each slot has its own hidden sizes, learning rate, L2 strength and seed
(its initialization and, under `standard`, its batch order); its epoch count is the runner's.

How a step is laid out:
- Layer 1 of every slot is one wide GEMM. The slots' first-layer weights are the rows of one
  (K·w × D) matrix, so one `addmm` computes layer 1 of the shared batch for all slots and one
  `addmm_` updates them all. When the slots' batch orders differ, each slot gathers its own rows
  and layer 1 is one `baddbmm` over (K, w, D) views of the same matrix instead.
- Every later layer (the output layer; the hidden-to-hidden layers of deeper slots) is a batched
  matmul over (K, out, in) weights: `baddbmm` forward, `bmm` for the gradient below it, `baddbmm_`
  for the update. Activations and gradients are laid out (slot, unit, sample), so each of these
  reads and writes contiguous memory.
- Hidden sizes may differ: per layer the pack is as wide as its widest slot (w), and a narrower
  slot's extra units have zero weights in and out. They stay exactly zero (ReLU(0) = 0, and no
  gradient reaches them), so the slot computes its solo numbers.
- Per-slot learning rates scale the output gradient per slot before the backward pass (every
  gradient below is linear in it); per-slot L2 decay multiplies by a per-slot factor.
- Losses and predictions are written per slot and per sample on the device and read back only when
  the runner asks (`epoch_totals`), as in `tuner_tui.engine.fused`.

Deferred layer-1 updates (the CPU). At batch 10 the wide layer-1 GEMMs have 10 rows: streaming K·w·D
weights through the cache three times a step (forward, update read and write) for so few rows made a
naive pack slower per core than its runs one after another (whose weights stay in the core's cache).
So on the CPU the pack trains in blocks of steps (80 samples: 8 steps at batch 10): one GEMM
computes layer 1 of the whole block at the weights of its start, each step adds the exact effect of
the block's earlier updates (a rank-(j·B) correction from the block's input products, see
`_layer_one`), and one GEMM applies the block's updates at its end (`_flush`). Every step's scores
and updates are those of plain SGD; only the rounding differs (float64 agrees with the solo runs to
1e-10). A read of the parameters applies pending updates first. The figures are in
benchmarks/README.md ("Packed training").

On a GPU the pack steps one batch at a time and captures that step as a CUDA graph
(`tuner_tui.engine.cuda_graphs`), one launch per step.

Batch order under `standard` (each run reshuffles per epoch from its own seed): slots whose orders
coincide share one gathered batch; otherwise each slot gathers its own (gather per slot). This
was chosen over packing only runs with equal seeds because gathering per slot costs little against a
shared order (benchmarks/README.md), and equal-seed packing could not recycle a slot under
`standard` at all: a new run starts at its own epoch 0, whose order differs from the others' epoch.

Slot recycling (`reconfigure`, between epochs): a run that ended is replaced by a new one, of any
hidden size, or dropped. The pack re-slices its concatenation every time: it rebuilds its storage
exactly as wide as its widest remaining slot and copies the kept slots over, instead of reserving the
widest size it may ever need and masking: a rebuild costs a few of the pack's steps once per epoch
boundary where a run changes, while a reserved width costs on every step for as long as the wide run
is gone (benchmarks/README.md has both figures); `reserve` keeps a minimum width for a caller that knows one is coming.

Depth: the slots of a pack have the same number of hidden layers (all the lab's experiments have
one); `PackError` refuses a mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tuner_tui.engine.backend_base import EpochTotals
from tuner_tui.engine.batching import PIXEL_SCALE, DeviceData, batch_bounds, epoch_order, steps_per_epoch
from tuner_tui.engine.config import ConfigError, Conventions
from tuner_tui.engine.cuda_graphs import StepCursor, StepReplayer, graphs_wanted
from tuner_tui.engine.memory_model import pack_block_steps, pack_eval_rows
from tuner_tui.engine.nodes import LAB4_LOG_EPSILON
from tuner_tui.engine.params import MLPParams, init_params

_relu_backward = torch.ops.aten.threshold_backward.grad_input


class PackError(ConfigError):
    """Runs that cannot share a pack."""


@dataclass(frozen=True)
class SlotConfig:
    """What one slot trains: its hidden sizes, step size, L2 strength and seed (init and order)."""

    hidden: tuple[int, ...]
    lr: float
    reg: float
    seed: int


@dataclass
class _Slot:
    config: SlotConfig
    first_epoch: int | None  # the pack epoch in which this slot's run started (None: not yet)


@dataclass
class _Block:
    """Preallocated tensors for blocks of up to `steps` batches of `rows` rows, in the layout
    (slot, unit, sample): activations and gradients are (K, width, rows), so every per-slot matmul
    reads and writes contiguous memory. Layer 1's per-block tensors hold `steps · rows` samples."""

    rows: int
    steps: int
    images_u8: torch.Tensor  # gather target: (steps·rows, D) shared, (K·steps·rows, D) per slot
    inputs: torch.Tensor  # unscaled pixels: (steps·rows, D) shared, (K, steps·rows, D) per slot
    base: torch.Tensor  # (K, w, steps·rows): layer 1 with the weights as at the block's start
    gram: torch.Tensor  # (steps·rows)² input products: shared, or (K, …) per slot
    pending: torch.Tensor  # (K, w, steps, rows): this block's layer-1 gradients, not yet applied
    first: torch.Tensor  # (K, w, rows): layer-1 activations of the current step
    first_grad: torch.Tensor  # (K, w, rows): d objective / d layer-1 pre-activation
    upper: list[torch.Tensor]  # per later layer (K, out, rows)
    upper_grads: list[torch.Tensor]  # per later layer (K, out, rows); the last holds the softmax
    label_probs: torch.Tensor  # (K, 1, rows)
    label_probs_eps: torch.Tensor
    ratio: torch.Tensor
    log_likelihoods: torch.Tensor  # (K, 1, rows)
    predictions: torch.Tensor  # (K, rows)
    minus_ones: torch.Tensor  # (K, 1, rows)
    ones: torch.Tensor  # (rows,)
    slot_ones: torch.Tensor  # (K, rows, 1)
    step_scale: torch.Tensor  # (K, 1, 1): −lr · d(loss)/d(logits) scale, per slot


@dataclass
class _CursorState:
    """What the cursor step (the CUDA graph's step) reads and writes besides its block."""

    cursor: StepCursor
    replayer: StepReplayer
    order: torch.Tensor | None  # this epoch's order, (N,) shared or (K, N) per slot, copied in each epoch
    rows: torch.Tensor  # (B,) shared or (K·B,) per slot: the batch's sample indices
    labels: torch.Tensor  # (K, 1, B) view of the gathered labels
    gathered_labels: torch.Tensor  # (B,) shared or (K·B,) per slot


@dataclass
class _Progress:
    """The block being trained: its first step, its length and how many of its steps are done."""

    block: _Block
    first_step: int
    length: int
    done: int = 0


class PackedMLPBackend:
    """K MLP runs over one dataset, stepped together; slot k's numbers are its solo run's."""

    def __init__(
        self,
        data: DeviceData,
        slots: Sequence[SlotConfig],
        *,
        batch_size: int,
        conventions: Conventions,
        dtype: torch.dtype = torch.float32,
        params: Sequence[MLPParams] | None = None,
        reserve: Sequence[int] = (),
        block_steps: int | None = None,
    ) -> None:
        """`params` (one per slot) replaces the draw from each slot's seed; `reserve` is a minimum
        width per hidden layer, kept through `reconfigure`; `block_steps` is how many steps' layer-1
        updates are deferred into one GEMM (default: `memory_model.pack_block_steps`; 1 whatever is
        asked while a slot decays faster than MIN_DEFERRED_DECAY)."""
        if not slots:
            raise PackError("pack", "needs at least one run")
        self.data = data
        self.batch_size = batch_size
        self.conventions = conventions
        self.dtype = dtype
        self.device = data.train_images.device
        self.samples = data.train_size
        self.steps_per_epoch = steps_per_epoch(self.samples, batch_size)
        self.reserve = tuple(reserve)
        self._block_steps = block_steps
        self._epoch = 0
        self._order: torch.Tensor | None = None  # None: file order; (N,) shared; (K, N) per slot
        self._shared_order = True
        self._progress: _Progress | None = None
        self.step_mode = "graph" if graphs_wanted(self.device) else "plan"
        self._cursor_state: _CursorState | None = None
        self._slots: list[_Slot | None] = []
        given: Sequence[MLPParams | None] = params if params is not None else [None] * len(slots)
        self._build([(_Slot(c, 0), p) for c, p in zip(slots, given, strict=True)])

    # --- composition -------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """K, the number of slots (frozen ones included)."""
        return len(self._slots)

    @property
    def widths(self) -> tuple[int, ...]:
        """The pack's width per hidden layer (its widest slot's, or the reserve)."""
        return self._widths

    @property
    def params(self) -> MLPParams:
        """The packed parameters, up to date (a block's deferred layer-1 updates are applied first):
        layer 1 as (K·w, D) rows, every later layer as (K, out, in)."""
        self._flush()
        return self._params

    def slot_config(self, slot: int) -> SlotConfig | None:
        """What slot `slot` trains (None once frozen)."""
        entry = self._slots[slot]
        return None if entry is None else entry.config

    def reconfigure(self, plan: Sequence[int | SlotConfig], params: Sequence[MLPParams | None] | None = None) -> None:
        """Between epochs: the new slots in order. An int keeps that current slot (its parameters and
        epoch count), a SlotConfig starts a new run (drawn from its seed, or `params`). The storage
        is rebuilt as wide as the widest slot left (see the module docstring)."""
        entries: list[tuple[_Slot, MLPParams | None]] = []
        for index, item in enumerate(plan):
            if isinstance(item, SlotConfig):
                entries.append((_Slot(item, None), None if params is None else params[index]))
            else:
                kept = self._slots[item]
                if kept is None:
                    raise PackError("pack", f"slot {item} is frozen and cannot be kept")
                entries.append((kept, self.slot_params(item)))
        if not entries:
            raise PackError("pack", "needs at least one run")
        self._build(entries)

    def freeze(self, slot: int) -> None:
        """Stop training `slot` (a diverged run): its parameters become zeros that stay zeros and
        its learning rate zero, so it cannot disturb the others; drop it at the next `reconfigure`."""
        params = self.params
        self._slots[slot] = None
        with torch.no_grad():
            self._first_weight_by_slot[slot].zero_()
            self._first_bias_by_slot[slot].zero_()
            for w, b in zip(params.weights[1:], params.biases[1:], strict=True):
                w[slot].zero_()
                b[slot].zero_()
        self._set_rates()

    def slot_params(self, slot: int) -> MLPParams:
        """A copy of slot `slot`'s parameters in its solo shapes."""
        config = self._config(slot)
        params = self.params
        sizes = [*config.hidden, self.data.classes]
        weights = [self._first_weight_by_slot[slot][: sizes[0]].clone()]
        biases = [self._first_bias_by_slot[slot][: sizes[0]].clone()]
        for layer, (w, b) in enumerate(zip(params.weights[1:], params.biases[1:], strict=True)):
            weights.append(w[slot, : sizes[layer + 1], : sizes[layer]].clone())
            biases.append(b[slot, : sizes[layer + 1]].clone())
        return MLPParams(weights, biases)

    def _config(self, slot: int) -> SlotConfig:
        entry = self._slots[slot]
        if entry is None:
            raise PackError("pack", f"slot {slot} is frozen")
        return entry.config

    def _build(self, entries: list[tuple[_Slot, MLPParams | None]]) -> None:
        """Allocate storage and records for `entries` and write their parameters."""
        depths = {len(slot.config.hidden) for slot, _ in entries}
        if len(depths) > 1:
            raise PackError(
                "hidden", f"runs in a pack must have the same number of hidden layers, got {sorted(depths)}"
            )
        depth = depths.pop()
        if self.reserve and len(self.reserve) != depth:
            raise PackError("reserve", f"must give one width per hidden layer ({depth}), got {len(self.reserve)}")
        reserve = self.reserve or (0,) * depth
        self._widths = tuple(
            max(r, *(slot.config.hidden[layer] for slot, _ in entries)) for layer, r in enumerate(reserve)
        )
        k, d, classes = len(entries), self.data.features, self.data.classes
        outs = [*self._widths[1:], classes]
        ins = list(self._widths)
        self._progress = None
        self._params = MLPParams([], [])  # the old storage goes before the new one is allocated

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, dtype=self.dtype, device=self.device)

        w0 = self._widths[0]
        self._params = MLPParams(
            [zeros(k * w0, d), *(zeros(k, o, i) for o, i in zip(outs, ins, strict=True))],
            [zeros(k * w0), *(zeros(k, o) for o in outs)],
        )
        self._first_weight_by_slot = self._params.weights[0].view(k, w0, d)
        self._first_bias_by_slot = self._params.biases[0].view(k, w0)
        self._slots = [slot for slot, _ in entries]
        for index, (slot, given) in enumerate(entries):
            self._write_slot(index, given or self._draw(slot.config))
        self.log_likelihoods = zeros(k, self.samples)
        self.predictions = torch.zeros(k, self.samples, dtype=torch.int64, device=self.device)
        self.labels_in_order = self.data.train_labels.expand(k, -1)
        self._set_rates()

    def _draw(self, config: SlotConfig) -> MLPParams:
        return init_params(
            self.data.features, config.hidden, self.data.classes, conventions=self.conventions,
            seed=config.seed, dtype=self.dtype, device=self.device,
        )

    def _write_slot(self, slot: int, params: MLPParams) -> None:
        with torch.no_grad():
            first_w, first_b = params.weights[0], params.biases[0]
            self._first_weight_by_slot[slot][: first_w.shape[0]].copy_(first_w)
            self._first_bias_by_slot[slot][: first_b.shape[0]].copy_(first_b)
            for w, b, given_w, given_b in zip(
                self._params.weights[1:], self._params.biases[1:], params.weights[1:], params.biases[1:], strict=True
            ):
                w[slot, : given_w.shape[0], : given_w.shape[1]].copy_(given_w)
                b[slot, : given_b.shape[0]].copy_(given_b)

    def _set_rates(self) -> None:
        """Per-slot −lr and decay factors (a frozen slot: lr 0, decay 1), and whether layer 1's
        updates can be deferred (every decay factor in [MIN_DEFERRED_DECAY, 1]; see `_flush`)."""
        configs = [None if slot is None else slot.config for slot in self._slots]
        lrs = [0.0 if c is None else c.lr for c in configs]
        decays = [1.0 if c is None else 1.0 - c.lr * c.reg for c in configs]
        self._has_decay = any(d != 1.0 for d in decays)
        steps = pack_block_steps(self.device.type, self.batch_size, decays, self._block_steps)
        self._deferred = steps > 1
        self._steps_per_block = steps

        def column(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=self.dtype, device=self.device).view(-1, 1, 1)

        self._minus_lr = -column(lrs)
        self._decay_upper = column(decays)
        # Per slot and power j: d^j for j = 0..steps (the weights j deferred steps on), and d^-(j+1).
        decay = torch.tensor(decays, dtype=torch.float64).view(1, -1, 1, 1)
        powers = torch.arange(steps + 1, dtype=torch.float64).view(-1, 1, 1, 1)
        self._decay_powers = decay.pow(powers).to(self.dtype).to(self.device)
        inverse = decay.pow(-(powers[:-1] + 1)) if self._deferred else torch.ones(1, len(decays), 1, 1)
        self._inverse_decay_powers = inverse.to(self.dtype).to(self.device)
        self._blocks: dict[int, _Block] = {}
        self._cursor_state = None

    # --- the epoch's order -------------------------------------------------------------------

    def start_epoch(self, epoch: int) -> None:
        """Fix this epoch's order per slot: file order under lab4; under standard each slot's own
        seeded permutation for its own epoch count (a slot that joined later is at an earlier one)."""
        self._flush()
        self._epoch = epoch
        for slot in self._slots:
            if slot is not None and slot.first_epoch is None:
                slot.first_epoch = epoch
        orders = [self._slot_order(slot, epoch) for slot in self._slots]
        first = next((o for o in orders if o is not None), None)
        if first is None or all(o is None or torch.equal(o, first) for o in orders):
            shared = True
            self._order = first
            labels = self.data.train_labels if first is None else self.data.train_labels[first]
            self.labels_in_order = labels.expand(self.size, -1)
        else:
            shared = False
            self._order = torch.stack([first if o is None else o for o in orders])
            self.labels_in_order = self.data.train_labels[self._order]
        if shared != self._shared_order:
            self._shared_order = shared
            self._blocks = {}
            self._cursor_state = None
        state = self._cursor_state
        if state is not None and state.order is not None and self._order is not None:
            state.order.copy_(self._order)

    def _slot_order(self, slot: _Slot | None, epoch: int) -> torch.Tensor | None:
        if slot is None or self.conventions == "lab4":
            return None
        return epoch_order(
            self.samples, conventions=self.conventions, seed=slot.config.seed,
            epoch=epoch - (slot.first_epoch or 0), device=self.device,
        )

    # --- a step ------------------------------------------------------------------------------

    def train_step(self, step: int) -> None:
        """Score batch `step` of the current epoch for every slot, then update every slot on it.

        Layer 1's update is deferred to the end of the step's block (or to the next read of the
        parameters); the step's scores are exact all the same (see `_layer_one`)."""
        start, stop = batch_bounds(step, self.batch_size, self.samples)
        if self.step_mode != "plan" and self._steps_per_block == 1 and stop - start == self.batch_size:
            self._flush()
            state = self._cursor_state or self._make_cursor_state()
            if self.step_mode == "cursor":
                state.cursor.move_to(start)
                self._cursor_step()
                return
            if state.replayer.run(start):
                return
            self.step_mode = "plan"  # the step could not be captured: `graph_status` says why
        progress = self._progress
        if progress is None or step != progress.first_step + progress.done:
            self._flush()
            progress = self._progress = self._start_block(step)
        block, j = progress.block, progress.done
        self._layer_one(block, j)
        labels = self.labels_in_order[:, start:stop].unsqueeze(1)
        self._score_and_update(block, labels)
        torch.mul(block.first_grad, self._inverse_decay_powers[j], out=block.pending[:, :, j])
        progress.done += 1
        self.predictions[:, start:stop].copy_(block.predictions)
        self.log_likelihoods[:, start:stop].copy_(block.log_likelihoods.view(self.size, -1))
        if progress.done == progress.length:
            self._flush()

    def _start_block(self, step: int) -> _Progress:
        """Load the block of batches from `step` (full batches, at most `block_steps`, within the
        epoch; a partial batch alone) and compute layer 1 for all of it at the current weights."""
        start, stop = batch_bounds(step, self.batch_size, self.samples)
        rows = stop - start
        limit = self._steps_per_block
        length = 1 if rows < self.batch_size else min(limit, self.samples // self.batch_size - step)
        block = self._block(rows, limit if rows == self.batch_size else 1)
        count = length * rows
        if self._order is None:
            block.inputs[:count].copy_(self.data.train_images[start : start + count])
        elif self._shared_order:
            self._load_rows(block, self._order[start : start + count])
        else:
            self._load_rows(block, self._order[:, start : start + count].reshape(-1))
        self._layer_one_base(block, count, with_products=length > 1)
        return _Progress(block, step, length)

    def _load_rows(self, block: _Block, rows: torch.Tensor) -> None:
        """The block's inputs from these sample indices (per slot: K runs of indices, one after another)."""
        gathered = block.images_u8[: rows.shape[0]]
        torch.index_select(self.data.train_images, 0, rows, out=gathered)
        if self._shared_order:
            block.inputs[: rows.shape[0]].copy_(gathered)
        else:
            count = rows.shape[0] // self.size
            block.inputs[:, :count].copy_(gathered.view(self.size, count, -1))

    def _layer_one_base(self, block: _Block, count: int, *, with_products: bool) -> None:
        """Layer 1 (no bias) of the block's first `count` samples at the weights as they are now, and
        the samples' products with each other (for `_layer_one`'s corrections)."""
        inputs = block.inputs
        if self._shared_order:
            weight = self._params.weights[0]
            base = block.base.view(weight.shape[0], -1)[:, :count]
            torch.addmm(base, weight, inputs[:count].t(), beta=0, alpha=PIXEL_SCALE, out=base)
            if with_products:
                torch.mm(inputs[:count], inputs[:count].t(), out=block.gram[:count, :count])
        else:
            slot_inputs = inputs[:, :count]
            base = block.base[:, :, :count]
            torch.baddbmm(base, self._first_weight_by_slot, slot_inputs.transpose(1, 2), beta=0, alpha=PIXEL_SCALE,
                          out=base)
            if with_products:
                torch.bmm(slot_inputs, slot_inputs.transpose(1, 2), out=block.gram[:, :count, :count])

    def _make_cursor_state(self) -> _CursorState:
        b, k = self.batch_size, self.size
        cursor = StepCursor(b, self.device)
        order = None if self._order is None else self._order.clone()
        copies = 1 if self._shared_order else k
        gathered = torch.empty(copies * b, dtype=torch.int64, device=self.device)
        labels = gathered.view(1, 1, b).expand(k, 1, b) if self._shared_order else gathered.view(k, 1, b)
        self._cursor_state = _CursorState(
            cursor, StepReplayer(self._cursor_step, cursor, self._params.tensors), order,
            rows=torch.empty(copies * b, dtype=torch.int64, device=self.device), labels=labels,
            gathered_labels=gathered,
        )
        return self._cursor_state

    def _cursor_step(self) -> None:
        """A whole full-batch step (block of one) that reads its batch's positions from the cursor and
        advances it, so that one captured call trains every batch (see `tuner_tui.engine.cuda_graphs`)."""
        state, k = self._cursor_state, self.size
        assert state is not None
        block = self._block(self.batch_size, 1)
        positions = state.cursor.current()
        if state.order is None:
            rows = positions
        elif self._shared_order:
            rows = torch.index_select(state.order, 0, positions, out=state.rows)
        else:
            index = positions.expand(k, -1)
            rows = torch.gather(state.order, 1, index, out=state.rows.view(k, -1)).view(-1)
        self._load_rows(block, rows)
        torch.index_select(self.data.train_labels, 0, rows, out=state.gathered_labels)
        self._layer_one_base(block, self.batch_size, with_products=False)
        self._layer_one(block, 0)
        self._score_and_update(block, state.labels)
        torch.mul(block.first_grad, self._inverse_decay_powers[0], out=block.pending[:, :, 0])
        self._apply_pending(block, 1)
        self.predictions.index_copy_(1, positions, block.predictions)
        self.log_likelihoods.index_copy_(1, positions, block.log_likelihoods.view(k, -1))
        state.cursor.advance()

    @property
    def graph_status(self) -> str:
        """How full-batch steps run: "plan" (eager blocks), "cursor", or the CUDA graph's status."""
        if self._cursor_state is None or self.step_mode == "cursor":
            return self.step_mode
        return self._cursor_state.replayer.status

    def _layer_one(self, block: _Block, j: int) -> None:
        """Layer 1 of step j of the block, exactly as if the block's earlier updates were applied:
        with decay d per step and the earlier steps' gradients G_i kept as d^-(i+1)·G_i,
            W_j·x = d^j ⊙ (W_0·x + Σ_{i<j} (d^-(i+1) G_i)·(x_i·x) / 255)."""
        rows, first = block.rows, block.first
        columns = slice(j * rows, (j + 1) * rows)
        first.copy_(block.base[:, :, columns])
        if j:
            done = slice(0, j * rows)
            pending = block.pending.view(self.size, self._widths[0], -1)[:, :, done]
            if self._shared_order:
                cross = block.gram[done, columns]
                first.view(-1, rows).addmm_(pending.reshape(-1, j * rows), cross, alpha=PIXEL_SCALE * PIXEL_SCALE)
            else:
                first.baddbmm_(pending, block.gram[:, done, columns], alpha=PIXEL_SCALE * PIXEL_SCALE)
        if self._deferred and self._has_decay:
            first.mul_(self._decay_powers[j])
        first.add_(self._first_bias_by_slot.unsqueeze(2))
        first.relu_()

    def _score_and_update(self, block: _Block, labels: torch.Tensor) -> None:
        """Layers above the first, per-sample records, the backward pass and the updates (layer 1's
        deferred) for one step whose layer-1 activations are in `block.first`."""
        logits = self._upper_forward(block)
        torch.argmax(logits, 1, out=block.predictions)
        probs = block.upper_grads[-1]
        if self.conventions == "lab4":
            torch._softmax(logits, 1, False, out=probs)
            torch.gather(probs, 1, labels, out=block.label_probs)
            torch.add(block.label_probs, LAB4_LOG_EPSILON, out=block.label_probs_eps)
            torch.log(block.label_probs_eps, out=block.log_likelihoods)
            # Exact d/do of -log(p_y + eps): (p - onehot) · p_y / (p_y + eps).
            torch.div(block.label_probs, block.label_probs_eps, out=block.ratio)
            probs.scatter_add_(1, labels, block.minus_ones)
            probs.mul_(block.ratio)
        else:
            torch._log_softmax(logits, 1, False, out=probs)
            torch.gather(probs, 1, labels, out=block.log_likelihoods)
            probs.exp_()
            probs.scatter_add_(1, labels, block.minus_ones)
        probs.mul_(block.step_scale)
        self._upper_backward(block)

    def _upper_forward(self, block: _Block) -> torch.Tensor:
        below = block.first
        last = len(block.upper) - 1
        layers = zip(block.upper, self._params.weights[1:], self._params.biases[1:], strict=True)
        for index, (out, w, b) in enumerate(layers):
            torch.baddbmm(b.unsqueeze(2), w, below, out=out)
            if index < last:
                out.relu_()
            below = out
        return below

    def _upper_backward(self, block: _Block) -> None:
        """Gradients arrive pre-scaled by −lr·scale per slot, so each update is a plain add."""
        weights, biases = self._params.weights, self._params.biases
        for index in range(len(block.upper) - 1, -1, -1):
            grad, w = block.upper_grads[index], weights[index + 1]
            below = block.upper[index - 1] if index > 0 else block.first
            lower = block.upper_grads[index - 1] if index > 0 else block.first_grad
            torch.bmm(w.transpose(1, 2), grad, out=lower)
            _relu_backward(lower, below, 0, grad_input=lower)
            if self._has_decay:
                w.mul_(self._decay_upper)
            w.baddbmm_(grad, below.transpose(1, 2))
            biases[index + 1].unsqueeze(2).baddbmm_(grad, block.slot_ones)
        biases[0].addmv_(block.first_grad.view(-1, block.rows), block.ones)

    def _flush(self) -> None:
        """Apply the current block's deferred layer-1 updates: after j steps with decay d,
        W ← d^j ⊙ (W + Σ_{i<j} (d^-(i+1) G_i)·x_i / 255) (without deferral, W ← d·W + G·x / 255)."""
        progress = self._progress
        if progress is None:
            return
        self._progress = None
        if progress.done:
            self._apply_pending(progress.block, progress.done)

    def _apply_pending(self, block: _Block, j: int) -> None:
        """Layer 1's update for the block's first j steps (see `_flush`)."""
        count = j * block.rows
        weight = self._params.weights[0]
        if not self._deferred and self._has_decay:
            self._first_weight_by_slot.mul_(self._decay_powers[1])
        pending = block.pending.view(self.size, self._widths[0], -1)[:, :, :count]
        if self._shared_order:
            weight.addmm_(pending.reshape(weight.shape[0], count), block.inputs[:count], alpha=PIXEL_SCALE)
        else:
            self._first_weight_by_slot.baddbmm_(pending, block.inputs[:, :count], alpha=PIXEL_SCALE)
        if self._deferred and self._has_decay:
            self._first_weight_by_slot.mul_(self._decay_powers[j])

    def _block(self, rows: int, steps: int) -> _Block:
        block = self._blocks.get(rows)
        if block is None:
            block = self._blocks[rows] = self._allocate(rows, steps)
        return block

    def _allocate(self, rows: int, steps: int) -> _Block:
        k, d, w0 = self.size, self.data.features, self._widths[0]
        samples = steps * rows

        def empty(*shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
            return torch.empty(*shape, dtype=dtype or self.dtype, device=self.device)

        copies = 1 if self._shared_order else k
        gram = empty(samples, samples) if self._shared_order else empty(k, samples, samples)
        inputs = empty(samples, d) if self._shared_order else empty(k, samples, d)
        outs = [*self._widths[1:], self.data.classes]
        loss_scale = 1.0 / self.data.classes if self.conventions == "lab4" else 1.0 / rows
        return _Block(
            rows=rows, steps=steps, images_u8=empty(copies * samples, d, dtype=torch.uint8), inputs=inputs,
            base=empty(k, w0, samples), gram=gram, pending=empty(k, w0, steps, rows),
            first=empty(k, w0, rows), first_grad=empty(k, w0, rows),
            upper=[empty(k, o, rows) for o in outs], upper_grads=[empty(k, o, rows) for o in outs],
            label_probs=empty(k, 1, rows), label_probs_eps=empty(k, 1, rows), ratio=empty(k, 1, rows),
            log_likelihoods=empty(k, 1, rows), predictions=empty(k, rows, dtype=torch.int64),
            minus_ones=torch.full((k, 1, rows), -1.0, dtype=self.dtype, device=self.device),
            ones=torch.ones(rows, dtype=self.dtype, device=self.device),
            slot_ones=torch.ones(k, rows, 1, dtype=self.dtype, device=self.device),
            step_scale=self._minus_lr * loss_scale,
        )

    # --- what the runner reads ---------------------------------------------------------------

    def epoch_totals(self, steps_done: int) -> list[EpochTotals]:
        """Per slot, loss and correct predictions over the first `steps_done` batches (one sync)."""
        stop = batch_bounds(steps_done - 1, self.batch_size, self.samples)[1] if steps_done else 0
        loss_sums = (-self.log_likelihoods[:, :stop].sum(dim=1)).tolist()
        correct = (self.predictions[:, :stop] == self.labels_in_order[:, :stop]).sum(dim=1).tolist()
        return [EpochTotals(loss, hits, stop, steps_done) for loss, hits in zip(loss_sums, correct, strict=True)]

    def first_nonfinite_step(self, slot: int, steps_done: int) -> int | None:
        """The 1-based step of this epoch whose loss first went non-finite in `slot`, if any did."""
        stop = batch_bounds(steps_done - 1, self.batch_size, self.samples)[1] if steps_done else 0
        bad = (~torch.isfinite(self.log_likelihoods[slot, :stop])).nonzero()
        return None if bad.numel() == 0 else int(bad[0, 0]) // self.batch_size + 1

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(K, rows, classes): every slot's output for uint8 `images` (nothing recorded)."""
        params = self.params
        first = torch.addmm(params.biases[0], images.to(self.dtype), params.weights[0].t(), alpha=PIXEL_SCALE)
        activation = first.relu_().view(images.shape[0], self.size, -1).transpose(0, 1)
        last = len(params.weights) - 2
        for index, (w, b) in enumerate(zip(params.weights[1:], params.biases[1:], strict=True)):
            activation = torch.baddbmm(b.unsqueeze(1), activation, w.transpose(1, 2))
            if index < last:
                activation.relu_()
        return activation

    @property
    def eval_rows(self) -> int:
        """Images per evaluation chunk: a solo run's chunk shared by the slots, to bound memory."""
        return pack_eval_rows(self.size)

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> list[float]:
        """Per slot, percent of `images` classified as `labels`, in chunks to bound memory."""
        correct = torch.zeros(self.size, dtype=torch.int64, device=self.device)
        rows = self.eval_rows
        for start in range(0, images.shape[0], rows):
            chunk = self.logits(images[start : start + rows])
            correct += (chunk.argmax(dim=2) == labels[start : start + rows]).sum(dim=1)
        return [100.0 * hits / max(1, images.shape[0]) for hits in correct.tolist()]

    def test_accuracy(self) -> list[float]:
        """Per slot, percent correct on the test set (one pass for the whole pack)."""
        return self.accuracy(self.data.test_images, self.data.test_labels)

    @torch.no_grad()
    def validation_metrics(self) -> list[tuple[float, float]] | None:
        """Per slot, (mean cross-entropy, accuracy in percent) on the held-out rows; None without any."""
        images, labels = self.data.val_images, self.data.val_labels
        if images is None or labels is None or images.shape[0] == 0:
            return None
        loss_sum = torch.zeros(self.size, dtype=torch.float64, device=self.device)
        correct = torch.zeros(self.size, dtype=torch.int64, device=self.device)
        rows = self.eval_rows
        for start in range(0, images.shape[0], rows):
            chunk_labels = labels[start : start + rows]
            logits = self.logits(images[start : start + rows])
            log_p = torch.log_softmax(logits, dim=2)
            index = chunk_labels.view(1, -1, 1).expand(self.size, -1, 1)
            loss_sum -= log_p.gather(2, index).sum(dim=(1, 2)).to(torch.float64)
            correct += (logits.argmax(dim=2) == chunk_labels).sum(dim=1)
        count = images.shape[0]
        pairs = zip(loss_sum.tolist(), correct.tolist(), strict=True)
        return [(loss / count, 100.0 * hits / count) for loss, hits in pairs]
