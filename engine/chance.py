"""Chance-level accuracy, and the patient rule that stops a run only once it is hopeless.

Lab4 CIFAR runs at batch 128 can sit at chance (10 %) for a few epochs with a large loss and then
recover; others never do. So a run is stopped only after `patience` consecutive epochs at chance,
and a run that ends at chance is flagged rather than silently called a success.
"""

from __future__ import annotations

from collections.abc import Sequence

CHANCE_MARGIN_PP = 2.0  # within this many percentage points of 100/classes counts as chance


def chance_accuracy(classes: int) -> float:
    """The accuracy in percent of a constant or random guess."""
    return 100.0 / classes


def at_chance(accuracy: float | None, classes: int) -> bool:
    """Whether an accuracy (percent) is no better than guessing, within CHANCE_MARGIN_PP."""
    return accuracy is not None and accuracy - chance_accuracy(classes) <= CHANCE_MARGIN_PP


def hopeless(train_accuracies: Sequence[float], classes: int, patience: int) -> bool:
    """True when each of the last `patience` epochs trained at chance level (patience 0: never).

    A pure function of the epoch history, so the rule is tested on recorded curves.
    """
    if patience < 1 or len(train_accuracies) < patience:
        return False
    return all(at_chance(accuracy, classes) for accuracy in train_accuracies[-patience:])
