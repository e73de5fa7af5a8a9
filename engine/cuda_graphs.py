"""Replaying a training step as one CUDA graph: one launch per step instead of ~20 kernel launches.

A small step on a GPU is bound by launch overhead, not arithmetic. A CUDA graph records the step's
kernels once and replays them with one call, but it replays them on the same memory: a captured
step cannot take "batch `step`" as an argument. So a backend that can be graphed has a second form
of its step, the *cursor step*: it reads which samples to train on from a `StepCursor` on the
device (the batch's first position, advanced by the step itself), gathers its rows and labels
there, and scatters its per-sample records back to those positions. Captured once, that step trains
batch after batch with nothing but `replay()` from the host.

`StepReplayer` captures lazily, on the first full batch: it warms the step up on a side stream,
captures one call (torch.cuda.graph), then puts the parameters and the cursor back, so the warm-up
changes nothing. Where capture is impossible (no CUDA, an op that cannot be captured, a driver that
refuses) it says why in `status` and the backend carries on with its eager step. The cursor step
runs eagerly on the CPU too, which is how tests check it against the plain step.

Set TUNER_TUI_CUDA_GRAPHS=0 to train without graphs (to compare, or to rule them out).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

CUDA_GRAPHS_ENV = "TUNER_TUI_CUDA_GRAPHS"
WARMUP_STEPS = 3  # the CUDA docs' advice: a few eager runs on a side stream before capturing


def graphs_wanted(device: torch.device) -> bool:
    """Whether steps on `device` should be captured: a CUDA device, unless switched off."""
    return device.type == "cuda" and os.environ.get(CUDA_GRAPHS_ENV, "1") != "0"


class StepCursor:
    """The positions (within the epoch's order) of the batch a cursor step trains on, on the device."""

    def __init__(self, batch_size: int, device: torch.device) -> None:
        self.batch_size = batch_size
        self.start = torch.zeros((), dtype=torch.int64, device=device)
        self.offsets = torch.arange(batch_size, dtype=torch.int64, device=device)
        self.positions = torch.empty(batch_size, dtype=torch.int64, device=device)

    def current(self) -> torch.Tensor:
        """This batch's positions (written in place, so a graph can read them)."""
        return torch.add(self.start, self.offsets, out=self.positions)

    def advance(self) -> None:
        """On to the next batch (the step's last op)."""
        self.start.add_(self.batch_size)

    def move_to(self, position: int) -> None:
        self.start.fill_(position)


def capture_step(step: Callable[[], None], warmup: int = WARMUP_STEPS) -> torch.cuda.CUDAGraph:
    """Run `step` `warmup` times on a side stream, then capture one call of it (may raise)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph


class StepReplayer:
    """A cursor step, captured on first use and replayed for every full batch after.

    `state` returns the tensors the step updates (the parameters), which are put back after the
    warm-up. `status` reads "not captured yet", "captured", or "eager: <why>".
    """

    def __init__(self, step: Callable[[], None], cursor: StepCursor, state: Callable[[], list[torch.Tensor]]) -> None:
        self.step = step
        self.cursor = cursor
        self.state = state
        self.graph: torch.cuda.CUDAGraph | None = None
        self.status = "not captured yet"
        self._next_position: int | None = None

    @property
    def failed(self) -> bool:
        return self.status.startswith("eager")

    def run(self, position: int) -> bool:
        """Train the batch at `position` by replaying the graph; False (nothing done) when the step
        could not be captured, so the caller runs its eager step."""
        if self.failed:
            return False
        if position != self._next_position:
            self.cursor.move_to(position)
        if self.graph is None:
            self.graph = self._capture(position)
            if self.graph is None:
                return False
        self.graph.replay()
        self._next_position = position + self.cursor.batch_size
        return True

    def _capture(self, position: int) -> torch.cuda.CUDAGraph | None:
        saved = [t.detach().clone() for t in self.state()]
        device = self.cursor.start.device
        with torch.cuda.device(device):  # the side stream and the capture on the step's own device
            try:
                graph: torch.cuda.CUDAGraph | None = capture_step(self.step)
                self.status = "captured"
            except Exception as error:  # any refusal means: train eagerly, and say why
                graph = None
                first = (str(error).strip().splitlines() or [""])[0]
                self.status = f"eager: capture failed ({type(error).__name__}: {first})"
            with torch.no_grad():
                for tensor, value in zip(self.state(), saved, strict=True):
                    tensor.copy_(value)
            self.cursor.move_to(position)
            torch.cuda.synchronize(device)
        return graph
