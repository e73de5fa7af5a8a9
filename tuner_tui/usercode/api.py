"""The API a training function of yours uses, and all it needs of tuner-tui:

    from tuner_tui import Run, Stop

    def train(config: dict, run: Run) -> dict | None:
        data = run.load_dataset("fmnist")
        for epoch in range(1, config["epochs"] + 1):
            ...                                            # your own training
            run.report(epoch, val_accuracy=acc, loss=loss)  # recorded, streamed, judged by a sweep's pruner
        return {"test_accuracy": test_acc}                # optional: stored as the run's final metrics

`run.report` raises `Stop` when the run must end (pruned by a sweep, Stop in the app, Ctrl-C,
SIGTERM or SIGHUP), so your `finally` and `with` blocks run; the run is then stored `pruned` or
`cancelled` with the epochs it reported. Catching `Stop` does not keep a run alive: one that has not
ended a grace period after it was told is stopped for it.

Nothing here imports torch: `load_dataset` does, when it is called.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


class Stop(Exception):
    """Raised by `Run.report` when the run must end; `reason` is `pruned` or `cancelled`."""

    def __init__(self, reason: str = "cancelled") -> None:
        super().__init__(f"the run was {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Dataset:
    """A built-in dataset as tensors on the CPU: images float32 in [0, 1], flattened (channel-major
    for colour images), labels int64. `val_*` are the training rows held out when the run has a
    validation share (a sweep's), else empty; they are never in `train_*`."""

    name: str
    classes: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str  # where it was read from


class Run(Protocol):
    """What a training function is given besides its config."""

    @property
    def config(self) -> Mapping[str, object]:
        """Every field of the model file, after `--set` and a sweep's sample (the function's first argument)."""

    @property
    def device(self) -> str:
        """Where to train: what `--device` resolved to (`cpu`, `cuda:0`, ...)."""

    @property
    def data_root(self) -> str | None:
        """The data root datasets are looked for in (`--data-root`, `$TUNER_TUI_DATA`), if one was given."""

    def report(self, epoch: int, **metrics: float) -> None:
        """Record epoch `epoch`'s metrics (any names, numbers): committed at once, streamed to the live
        view, and judged by a sweep's pruner. Raises `Stop` when the run must end."""

    def log(self, text: str) -> None:
        """A line in the run's log (the app's log; stderr when headless)."""

    def load_dataset(self, name: str) -> Dataset:
        """One of tuner-tui's datasets (fmnist, mnist, cifar10, cifar100), read as built-in runs read it."""
