"""A scripted sweep for the sweep screen's tests: a tiny spec, and a study written straight into an
Optuna storage (no training), each trial with its run in the results store, on a fixed clock.

    spec_path = write_tiny_spec(user_specs_dir())
    location = write_scripted_sweep(store_path, spec_path)   # 5 trials: 3 completed, 1 pruned, 1 running
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from tests.fake_runner import completed_run_events
from tests.support import write_spec
from tuner_tui.engine.events import EpochEnd, Finished, RunStatus, Started
from tuner_tui.runs.records import RunLabels, StartColumns
from tuner_tui.runs.store import ResultsStore
from tuner_tui.sweeps.locations import default_storage_url
from tuner_tui.sweeps.spec import load_spec
from tuner_tui.sweeps.study import HOLDER_ATTR, RUN_UID_ATTR, open_study

STORED_AT = 1_767_268_800.0  # 2026-01-01 12:00 UTC
SCRIPTED_NAME = "scripted"
# (state, lr, batch size, objective at epoch 1, final objective)
SCRIPT: tuple[tuple[TrialState, float, int, float, float | None], ...] = (
    (TrialState.COMPLETE, 0.0123, 20, 71.5, 78.25),
    (TrialState.PRUNED, 0.4, 50, 12.0, None),
    (TrialState.COMPLETE, 0.002, 50, 60.0, 70.5),
    (TrialState.COMPLETE, 0.05, 20, 75.0, 81.0),
    (TrialState.RUNNING, 0.03, 20, 74.0, None),
)
DISTRIBUTIONS = {
    "lr": FloatDistribution(0.001, 0.5, log=True),
    "batch_size": CategoricalDistribution([20, 50]),
}


def write_tiny_spec(directory: Path, name: str = "tiny", *, trials: int = 6, pruner: str = "median") -> Path:
    """The tiny spec (`tests.support.tiny_spec`: 784→16→10 on CPU, 2 epochs, validation 0.2) as
    `directory/name.toml`, titled "{name}: a tiny search for tests"."""
    return write_spec(directory, name, title=f"{name}: a tiny search for tests", pruner=pruner, trials=trials)


def run_uid(number: int) -> str:
    return f"scripted-trial-{number}"


def holder(number: int) -> dict[str, object]:
    """The trial's holder: one of two workers on another host, whose lease outlives the tests."""
    return {"worker": f"worker {number % 2}", "host": "scripted-host", "pid": 1000 + number % 2,
            "lease_expires_at": STORED_AT + 10 * 365 * 86_400}


def write_scripted_sweep(store_path: Path, spec_path: Path, name: str = SCRIPTED_NAME) -> str:
    """The scripted study in the SQLite storage beside the store, registered there, each trial's run
    stored (the running one as running); returns the storage URL."""
    spec = load_spec(str(spec_path))
    url = default_storage_url(store_path)
    study = open_study(spec, name, url, budget=spec.search.trials, create=True).study
    minutes = iter(range(100))
    with ResultsStore(store_path, clock=lambda: STORED_AT + 60 * next(minutes)) as store:
        store.register_sweep(name, url)
        for number, (state, lr, batch_size, first, final) in enumerate(SCRIPT):
            config = spec.trial_config({"lr": lr, "batch_size": batch_size})
            _store_run(store, config, RunLabels(sweep=name, trial=number), run_uid(number), state)
            study.add_trial(create_trial(
                state=state, value=final, params={"lr": lr, "batch_size": batch_size}, distributions=DISTRIBUTIONS,
                intermediate_values={spec.search.reports_per_epoch: first}, system_attrs={RUN_UID_ATTR: run_uid(number),
                                                              HOLDER_ATTR: holder(number)},
            ))
    return url


def _store_run(store: ResultsStore, config, labels: RunLabels, uid: str, state: TrialState) -> None:
    events = completed_run_events(config, epochs=2)
    started = next(e for e in events if isinstance(e, Started))
    finished = next(e for e in events if isinstance(e, Finished))
    run_id = store.start_run(config, StartColumns.of(started), labels=labels, uid=uid)
    if state is TrialState.RUNNING:
        store.record_epoch(run_id, next(e for e in events if isinstance(e, EpochEnd)))
        return
    if state is TrialState.PRUNED:
        finished = dataclasses.replace(finished, status=RunStatus.PRUNED, message="pruned after epoch 1",
                                       epochs=finished.epochs[:1])
    store.finish_run(run_id, finished)
