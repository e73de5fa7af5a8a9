"""The studies in any Optuna storage, as `tuner-tui watch` lists them to pick one: read-only."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from tuner_tui.sweeps.storages import open_storage, storage_problem


@dataclass(frozen=True)
class StudyListing:
    """One study of a storage: its name, directions, trials by state, best value and last change."""

    name: str
    directions: tuple[str, ...]
    states: dict[str, int]  # complete, pruned, fail, running, waiting → count (only those present)
    best: float | None  # the best completed value (the first objective's, with several)
    last_change: float | None  # the latest start or finish of a trial, seconds since the epoch

    @property
    def trials(self) -> int:
        return sum(self.states.values())


def list_studies(storage_url: str) -> list[StudyListing]:
    """Every study in the storage at `storage_url`, by name; StudyError (one line) when it cannot be read."""
    storage = open_storage(storage_url, read_only=True)
    try:
        return sorted((_listing(storage, name) for name in optuna.study.get_all_study_names(storage)),
                      key=lambda listing: listing.name)
    except Exception as error:  # any storage failure is one line for the user
        raise storage_problem(storage_url, error) from None


def _listing(storage: optuna.storages.BaseStorage, name: str) -> StudyListing:
    study = optuna.load_study(study_name=name, storage=storage)
    directions = tuple(d.name.lower() for d in study.directions)
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for trial in trials:
        states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
    done = [t.values[0] for t in trials if t.state is TrialState.COMPLETE and t.values]
    best = (max(done) if directions[0] == "maximize" else min(done)) if done else None
    moments = [moment.timestamp() for t in trials for moment in (t.datetime_start, t.datetime_complete) if moment]
    return StudyListing(name, directions, states, best, max(moments, default=None))
