"""The fast path: a fused SGD step for the MLP that gives the graph's numbers with fewer, larger ops.

What makes it fast, step by step:
- images stay uint8 on the device; each batch is copied (or gathered) into one preallocated float
  buffer and the 1/255 scale is folded into the first matmul and its weight update;
- every intermediate lives in a buffer allocated once (one set for full batches, views of it for
  the partial last batch), and every op writes with `out=` or in place: no allocation per step;
- softmax-minus-one-hot is one scatter into the probabilities; the lab's exact `1e-8` factor is
  one multiply;
- each weight update is one `addmm_` (`W ← W − lr·k·gᵀa`), preceded under L2 by one `mul_`
  for the decay `(1 − lr·λ)`: measured on the CPU, `addmm_` with beta ≠ 1 costs twice the pair;
  each bias update is one `addmv_`;
- losses and predictions are written per sample on the device and only read back when the
  caller asks (`epoch_totals`), so a CUDA step never waits for the host;
- on a CUDA device the full-batch step is captured once as a CUDA graph and replayed, one launch
  per step (`tuner_tui.engine.cuda_graphs`; the partial last batch, and a step that cannot be captured, run
  eagerly). `step_mode` says which step runs: "plan" (eager), "graph", or "cursor" (the graph's
  step run eagerly, which is how the tests check it on the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tuner_tui.engine.backend_base import Backend
from tuner_tui.engine.batching import PIXEL_SCALE, batch_bounds
from tuner_tui.engine.cuda_graphs import StepCursor, StepReplayer, graphs_wanted
from tuner_tui.engine.nodes import LAB4_LOG_EPSILON

_relu_backward = torch.ops.aten.threshold_backward.grad_input


@dataclass
class _StepBuffers:
    """Preallocated tensors for one batch size."""

    images_u8: torch.Tensor  # (B, D) gather target when the order is shuffled
    inputs: torch.Tensor  # (B, D) float batch, unscaled pixels
    activations: list[torch.Tensor]  # per layer (B, out): pre-activation, relu'd in place
    grads: list[torch.Tensor]  # per layer (B, out): d objective / d pre-activation (unscaled)
    grads_t: list[torch.Tensor]  # their transposes, as views made once
    label_probs: torch.Tensor  # (B, 1)
    label_probs_eps: torch.Tensor  # (B, 1)
    ratio: torch.Tensor  # (B, 1)
    ones: torch.Tensor  # (B,)
    minus_ones: torch.Tensor  # (B, 1)

    def head(self, rows: int) -> _StepBuffers:
        """Views of the first `rows` rows (for the partial last batch)."""
        return _StepBuffers(
            self.images_u8[:rows], self.inputs[:rows],
            [a[:rows] for a in self.activations], [g[:rows] for g in self.grads],
            [g[:rows].t() for g in self.grads],
            self.label_probs[:rows], self.label_probs_eps[:rows], self.ratio[:rows],
            self.ones[:rows], self.minus_ones[:rows],
        )


@dataclass(frozen=True)
class _StepPlan:
    """Views one step reads and writes, made once per order so a step does no slicing."""

    source: torch.Tensor  # uint8 image rows (file order) or their indices (shuffled order)
    labels: torch.Tensor  # (b, 1) int64
    predictions: torch.Tensor  # (b,) slice of the epoch's predictions
    log_likelihoods: torch.Tensor  # (b, 1) slice of the epoch's log-likelihoods
    buffers: _StepBuffers
    loss_scale: float  # d(loss)/d(logits) = loss_scale · (softmax − onehot)


@dataclass
class _CursorState:
    """What the cursor step reads and writes besides the step buffers (fixed addresses for a graph)."""

    cursor: StepCursor
    replayer: StepReplayer
    order: torch.Tensor | None  # this epoch's order, copied in at each epoch's start (standard)
    rows: torch.Tensor  # (B,) the batch's sample indices
    labels: torch.Tensor  # (B, 1)
    predictions: torch.Tensor  # (B,)
    log_likelihoods: torch.Tensor  # (B, 1)


class FusedMLPBackend(Backend):
    """The native engine: one fused, allocation-free SGD step per batch."""

    def setup(self) -> None:
        self.decay = 1.0 - self.lr * self.reg
        self._epsilon = torch.tensor(LAB4_LOG_EPSILON, dtype=self.dtype, device=self.device)
        self._full = self._allocate(self.batch_size)
        remainder = self.samples % self.batch_size
        self._partial = self._full.head(remainder) if remainder else self._full
        self._weight_t = [w.t() for w in self.params.weights]
        self._plans: list[_StepPlan] = []
        self.step_mode = "graph" if graphs_wanted(self.device) else "plan"
        self._cursor_state: _CursorState | None = None

    def _allocate(self, rows: int) -> _StepBuffers:
        def empty(*shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
            return torch.empty(*shape, dtype=dtype or self.dtype, device=self.device)

        outs = [w.shape[0] for w in self.params.weights]
        grads = [empty(rows, n) for n in outs]
        return _StepBuffers(
            images_u8=empty(rows, self.data.features, dtype=torch.uint8),
            inputs=empty(rows, self.data.features),
            activations=[empty(rows, n) for n in outs],
            grads=grads,
            grads_t=[g.t() for g in grads],
            label_probs=empty(rows, 1),
            label_probs_eps=empty(rows, 1),
            ratio=empty(rows, 1),
            ones=torch.ones(rows, dtype=self.dtype, device=self.device),
            minus_ones=torch.full((rows, 1), -1.0, dtype=self.dtype, device=self.device),
        )

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        if self.order is not None or not self._plans:
            self._plans = [self._plan(step) for step in range(self.steps_per_epoch)]
        if self._cursor_state is not None and self._cursor_state.order is not None and self.order is not None:
            self._cursor_state.order.copy_(self.order)

    def _plan(self, step: int) -> _StepPlan:
        start, stop = batch_bounds(step, self.batch_size, self.samples)
        rows = stop - start
        source = self.data.train_images if self.order is None else self.order
        loss_scale = 1.0 / self.data.classes if self.conventions == "lab4" else 1.0 / rows
        return _StepPlan(
            source=source[start:stop],
            labels=self.labels_in_order.view(-1, 1)[start:stop],
            predictions=self.predictions[start:stop],
            log_likelihoods=self.log_likelihoods[start:stop],
            buffers=self._full if rows == self.batch_size else self._partial,
            loss_scale=loss_scale,
        )

    def train_step(self, step: int) -> None:
        start, stop = batch_bounds(step, self.batch_size, self.samples)
        if self.step_mode != "plan" and stop - start == self.batch_size:
            state = self._cursor_state or self._make_cursor_state()
            if self.step_mode == "cursor":
                state.cursor.move_to(start)
                self._cursor_step()
                return
            if state.replayer.run(start):
                return
            self.step_mode = "plan"  # the step could not be captured: `graph_status` says why
        plan = self._plans[step]
        buf = plan.buffers
        if self.order is None:
            buf.inputs.copy_(plan.source)
        else:
            torch.index_select(self.data.train_images, 0, plan.source, out=buf.images_u8)
            buf.inputs.copy_(buf.images_u8)
        self._score_and_update(buf, plan.labels, plan.predictions, plan.log_likelihoods, plan.loss_scale)

    @property
    def graph_status(self) -> str:
        """How full-batch steps run: "plan" (eager), "cursor", or the CUDA graph's status."""
        if self._cursor_state is None or self.step_mode == "cursor":
            return self.step_mode
        return self._cursor_state.replayer.status

    def _make_cursor_state(self) -> _CursorState:
        b = self.batch_size
        cursor = StepCursor(b, self.device)
        order = None if self.order is None else self.order.clone()
        self._cursor_state = _CursorState(
            cursor, StepReplayer(self._cursor_step, cursor, self.params.tensors), order,
            rows=torch.empty(b, dtype=torch.int64, device=self.device),
            labels=torch.empty(b, 1, dtype=torch.int64, device=self.device),
            predictions=torch.empty(b, dtype=torch.int64, device=self.device),
            log_likelihoods=torch.empty(b, 1, dtype=self.dtype, device=self.device),
        )
        return self._cursor_state

    def _cursor_step(self) -> None:
        """The full-batch step that reads its batch's positions from the cursor and advances it,
        so that one captured call trains every batch (see `tuner_tui.engine.cuda_graphs`)."""
        state, buf = self._cursor_state, self._full
        assert state is not None
        positions = state.cursor.current()
        rows = positions if state.order is None else torch.index_select(state.order, 0, positions, out=state.rows)
        torch.index_select(self.data.train_images, 0, rows, out=buf.images_u8)
        buf.inputs.copy_(buf.images_u8)
        torch.index_select(self.data.train_labels, 0, rows, out=state.labels.view(-1))
        loss_scale = 1.0 / self.data.classes if self.conventions == "lab4" else 1.0 / self.batch_size
        self._score_and_update(buf, state.labels, state.predictions, state.log_likelihoods, loss_scale)
        self.predictions.index_copy_(0, positions, state.predictions)
        self.log_likelihoods.index_copy_(0, positions, state.log_likelihoods)
        state.cursor.advance()

    def _score_and_update(
        self, buf: _StepBuffers, labels: torch.Tensor, predictions: torch.Tensor, log_likelihoods: torch.Tensor,
        loss_scale: float,
    ) -> None:
        """Forward, this batch's records (into `predictions`, `log_likelihoods`), backward, update."""
        logits = self._forward(buf)
        torch.argmax(logits, 1, out=predictions)
        probs = buf.grads[-1]
        if self.conventions == "lab4":
            torch._softmax(logits, 1, False, out=probs)
            torch.gather(probs, 1, labels, out=buf.label_probs)
            torch.add(buf.label_probs, self._epsilon, out=buf.label_probs_eps)
            torch.log(buf.label_probs_eps, out=log_likelihoods)
            # Exact d/do of -log(p_y + eps): (p - onehot) · p_y / (p_y + eps).
            torch.div(buf.label_probs, buf.label_probs_eps, out=buf.ratio)
            probs.scatter_add_(1, labels, buf.minus_ones)
            probs.mul_(buf.ratio)
        else:
            torch._log_softmax(logits, 1, False, out=probs)
            torch.gather(probs, 1, labels, out=log_likelihoods)
            probs.exp_()
            probs.scatter_add_(1, labels, buf.minus_ones)
        self._backward_and_update(buf, loss_scale)

    def _forward(self, buf: _StepBuffers) -> torch.Tensor:
        previous = buf.inputs
        last = len(buf.activations) - 1
        for index, (out, w_t, b) in enumerate(zip(buf.activations, self._weight_t, self.params.biases, strict=True)):
            torch.addmm(b, previous, w_t, alpha=PIXEL_SCALE if index == 0 else 1.0, out=out)
            if index < last:
                out.relu_()
            previous = out
        return previous

    def _backward_and_update(self, buf: _StepBuffers, loss_scale: float) -> None:
        step_scale = -self.lr * loss_scale
        weights, biases = self.params.weights, self.params.biases
        for index in range(len(weights) - 1, -1, -1):
            grad_t = buf.grads_t[index]
            below = buf.activations[index - 1] if index > 0 else buf.inputs
            if index > 0:
                lower_grad = buf.grads[index - 1]
                torch.mm(buf.grads[index], weights[index], out=lower_grad)
                _relu_backward(lower_grad, below, 0, grad_input=lower_grad)
            input_scale = PIXEL_SCALE if index == 0 else 1.0
            if self.decay != 1.0:
                weights[index].mul_(self.decay)
            weights[index].addmm_(grad_t, below, alpha=step_scale * input_scale)
            biases[index].addmv_(grad_t, buf.ones, alpha=step_scale)
