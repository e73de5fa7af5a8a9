"""When a sweep is done before its budget: no better best in `patience` finished trials, or a best
that reached the `--target`. Every worker decides from the study alone, so they all stop alike."""

from __future__ import annotations

from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState


def search_done(
    trials: Sequence[FrozenTrial], direction: str, *, patience: int | None, target: float | None
) -> str | None:
    """Why the search should ask no more trials (one line), or None. `trials` are one objective's;
    a trial counts once finished (completed or pruned), in the order of their numbers."""
    if patience is None and target is None:
        return None
    sign = 1.0 if direction == "maximize" else -1.0
    best: float | None = None
    since_better = 0
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        value = trial.value if trial.state is TrialState.COMPLETE else None
        if value is not None and (best is None or sign * value > sign * best):
            best, since_better = value, 0
        else:
            since_better += 1
    if target is not None and best is not None and sign * best >= sign * target:
        return f"target: the best {best:.6g} reached the target {target:.6g}"
    if patience is not None and best is not None and since_better >= patience:
        return f"patience: no better trial in the last {since_better} finished (patience {patience})"
    return None
