"""What every training backend shares: the epoch's order, its per-sample records and evaluation.

A backend runs SGD steps in place on an `MLPParams` over `DeviceData`. During an epoch it writes,
for every sample, the log-likelihood of its label (the lab's `log(p_y + 1e-8)` under lab4) and the
predicted class, both computed before the sample's update; `epoch_totals` reads them back. That is
the only host sync a step loop needs, and the caller decides how often it happens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from tuner_tui.engine.batching import PIXEL_SCALE, DeviceData, batch_bounds, epoch_order, steps_per_epoch
from tuner_tui.engine.config import Conventions
from tuner_tui.engine.memory_model import EVAL_CHUNK_ROWS
from tuner_tui.engine.params import MLPParams


@dataclass(frozen=True)
class EpochTotals:
    """Sums over the samples of an epoch seen so far."""

    loss_sum: float  # sum of per-sample cross-entropy terms
    correct: int
    samples: int
    steps: int


class Backend(ABC):
    """Runs the steps of one run; subclasses implement `setup` and `train_step`."""

    def __init__(
        self,
        params: MLPParams,
        data: DeviceData,
        *,
        lr: float,
        reg: float,
        batch_size: int,
        conventions: Conventions,
        seed: int = 0,
    ) -> None:
        self.params = params
        self.data = data
        self.lr = lr
        self.reg = reg
        self.batch_size = batch_size
        self.conventions = conventions
        self.seed = seed
        self.samples = data.train_size
        self.steps_per_epoch = steps_per_epoch(self.samples, batch_size)
        device, dtype = params.weights[0].device, params.weights[0].dtype
        self.device, self.dtype = device, dtype
        self.log_likelihoods = torch.zeros(self.samples, 1, dtype=dtype, device=device)
        self.predictions = torch.zeros(self.samples, dtype=torch.int64, device=device)
        self.order: torch.Tensor | None = None
        self.labels_in_order = data.train_labels
        self.setup()

    @abstractmethod
    def setup(self) -> None:
        """Allocate what the steps need (called once, at the end of `__init__`)."""

    def start_epoch(self, epoch: int) -> None:
        """Fix this epoch's sample order (file order under lab4, a seeded permutation otherwise)."""
        self.order = epoch_order(
            self.samples, conventions=self.conventions, seed=self.seed, epoch=epoch,
            device=self.device,
        )
        labels = self.data.train_labels
        self.labels_in_order = labels if self.order is None else labels[self.order]

    def batch_indices(self, step: int) -> tuple[int, int, torch.Tensor | None]:
        """`(start, stop, sample indices or None when the batch is the slice [start, stop))`."""
        start, stop = batch_bounds(step, self.batch_size, self.samples)
        return start, stop, None if self.order is None else self.order[start:stop]

    def batch_images(self, step: int) -> torch.Tensor:
        """The uint8 images of batch `step`, in this epoch's order."""
        start, stop, index = self.batch_indices(step)
        images = self.data.train_images
        return images[start:stop] if index is None else images[index]

    @abstractmethod
    def train_step(self, step: int) -> None:
        """Score batch `step` of the current epoch, then update the parameters on it."""

    def epoch_totals(self, steps_done: int) -> EpochTotals:
        """Loss and correct predictions over the first `steps_done` batches (syncs the device)."""
        stop = batch_bounds(steps_done - 1, self.batch_size, self.samples)[1] if steps_done else 0
        loss_sum = -float(self.log_likelihoods[:stop].sum())
        correct = int((self.predictions[:stop] == self.labels_in_order[:stop]).sum())
        return EpochTotals(loss_sum, correct, stop, steps_done)

    def first_nonfinite_step(self, steps_done: int) -> int | None:
        """The 1-based step of this epoch whose loss first went non-finite, if any did."""
        stop = batch_bounds(steps_done - 1, self.batch_size, self.samples)[1] if steps_done else 0
        bad = (~torch.isfinite(self.log_likelihoods[:stop, 0])).nonzero()
        return None if bad.numel() == 0 else int(bad[0, 0]) // self.batch_size + 1

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The network's output for uint8 images (a forward pass, nothing recorded)."""
        activation = images.to(self.dtype)
        last = len(self.params.weights) - 1
        for index, (w, b) in enumerate(zip(self.params.weights, self.params.biases, strict=True)):
            scale = PIXEL_SCALE if index == 0 else 1.0
            activation = torch.addmm(b, activation, w.t(), alpha=scale)
            if index < last:
                activation.relu_()
        return activation

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Percent of `images` classified as `labels`, in chunks to bound memory."""
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for start in range(0, images.shape[0], EVAL_CHUNK_ROWS):
            chunk = self.logits(images[start : start + EVAL_CHUNK_ROWS])
            correct += (chunk.argmax(dim=1) == labels[start : start + EVAL_CHUNK_ROWS]).sum()
        return 100.0 * int(correct) / max(1, images.shape[0])

    def test_accuracy(self) -> float:
        return self.accuracy(self.data.test_images, self.data.test_labels)

    @torch.no_grad()
    def validation_metrics(self) -> tuple[float, float] | None:
        """(mean cross-entropy, accuracy in percent) on the held-out rows; None without any."""
        images, labels = self.data.val_images, self.data.val_labels
        if images is None or labels is None or images.shape[0] == 0:
            return None
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for start in range(0, images.shape[0], EVAL_CHUNK_ROWS):
            chunk_labels = labels[start : start + EVAL_CHUNK_ROWS]
            logits = self.logits(images[start : start + EVAL_CHUNK_ROWS])
            log_p = torch.log_softmax(logits, dim=1)
            loss_sum -= log_p.gather(1, chunk_labels.view(-1, 1)).sum().to(torch.float64)
            correct += (logits.argmax(dim=1) == chunk_labels).sum()
        count = images.shape[0]
        return float(loss_sum) / count, 100.0 * int(correct) / count
