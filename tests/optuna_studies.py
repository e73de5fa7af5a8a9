"""Studies made by plain Optuna code, as its users write them (not through tuner-tui), in any storage.

`single_objective(url)` and `two_objectives(url)` build the same seeded studies in an SQLite file
(`sqlite:///PATH`), a journal file (`journal:PATH`) or PostgreSQL (`postgresql://...`);
`postgres_schema(url)` gives a test a schema of its own in a PostgreSQL database, dropped after,
and `optuna_rows(url)` dumps the rows of its tables. A writer process adds trials with
`python -m tests.optuna_studies URL NAME COUNT`.
"""

from __future__ import annotations

import math
import sys
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import Trial, TrialState

SINGLE = "plain_single"
MULTI = "plain_multi"
SEED = 7
STEPS = 4  # intermediate values a finished trial reports
METRIC_NAMES = ("accuracy", "seconds")
DIRECTIONS: tuple[Literal["minimize", "maximize"], ...] = ("maximize", "minimize")
# The single-objective study's trials, in order: the last one is left running.
SINGLE_PLAN = ("complete",) * 4 + ("pruned", "complete", "complete", "fail", "complete", "complete", "pruned",
                                   "running")
MULTI_PLAN = ("complete",) * 8 + ("fail",)
PARAMS = ("x", "lr", "momentum", "layers", "units", "batch", "activation", "width", "bias", "decay")
LOG_PARAMS = ("lr", "batch")
STUDY_ATTRS = {"owner": "plain optuna", "dataset": {"name": "toy", "rows": 100}}
LOCK_TIMEOUT = "30s"  # dropping a test's schema waits at most this long for a lock

optuna.logging.set_verbosity(optuna.logging.WARNING)


def plain_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage at `url` as a plain Optuna user opens it for writing (psycopg 3 for PostgreSQL)."""
    if url.startswith("journal:"):
        path = url.removeprefix("journal:")
        return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    return optuna.storages.RDBStorage(_with_psycopg(url))


def suggest_all(trial: Trial) -> dict[str, Any]:
    """One parameter of every kind of distribution Optuna has."""
    return {
        "x": trial.suggest_float("x", -2.0, 2.0),
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "momentum": trial.suggest_float("momentum", 0.0, 0.9, step=0.1),
        "layers": trial.suggest_int("layers", 1, 4),
        "units": trial.suggest_int("units", 16, 128, step=16),
        "batch": trial.suggest_int("batch", 8, 256, log=True),
        "activation": trial.suggest_categorical("activation", ["relu", "tanh"]),
        "width": trial.suggest_categorical("width", [32, 64, 128]),
        "bias": trial.suggest_categorical("bias", [True, False]),
        "decay": trial.suggest_categorical("decay", [None, 0.01, "auto"]),
    }


def loss(params: dict[str, Any]) -> float:
    """A deterministic objective of the parameters (lower is better)."""
    return ((params["x"] - 0.5) ** 2 + abs(math.log10(params["lr"]) + 2) + 0.1 * params["layers"]
            + params["units"] / 1000 + (0.2 if params["activation"] == "tanh" else 0.0))


def single_objective(url: str, name: str = SINGLE) -> None:
    """A minimized study: completed, pruned and failed trials and one left running (SINGLE_PLAN),
    intermediate values, user attributes on the study and its trials."""
    study = optuna.create_study(study_name=name, storage=plain_storage(url), direction="minimize",
                                sampler=optuna.samplers.RandomSampler(seed=SEED))
    for key, attr in STUDY_ATTRS.items():
        study.set_user_attr(key, attr)
    for state in SINGLE_PLAN:
        trial = study.ask()
        value = loss(suggest_all(trial))
        trial.set_user_attr("note", f"trial {trial.number}")
        trial.set_user_attr("tags", ["plain", state])
        steps = {"complete": STEPS, "pruned": 2, "fail": 1, "running": 1}[state]
        for step in range(steps):
            trial.report(value * (1 + (STEPS - step) / STEPS), step)
        if state == "complete":
            study.tell(trial, value)
        elif state != "running":
            study.tell(trial, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL)
    _close(study)


def two_objectives(url: str, name: str = MULTI) -> None:
    """A study of two named objectives (accuracy maximized, seconds minimized) and a failed trial."""
    study = optuna.create_study(study_name=name, storage=plain_storage(url), directions=list(DIRECTIONS),
                                sampler=optuna.samplers.RandomSampler(seed=SEED))
    with warnings.catch_warnings():  # experimental in Optuna, and stable since 3.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(METRIC_NAMES))
    for state in MULTI_PLAN:
        trial = study.ask()
        params = suggest_all(trial)
        if state == "fail":
            study.tell(trial, state=TrialState.FAIL)
            continue
        study.tell(trial, [1.0 / (1.0 + loss(params)), params["layers"] * params["units"] / 100])
    _close(study)


def add_trials(url: str, name: str, count: int) -> None:
    """Complete `count` more trials of an existing study, as another process writing it would."""
    study = optuna.load_study(study_name=name, storage=plain_storage(url),
                              sampler=optuna.samplers.RandomSampler(seed=SEED + count))
    for _ in range(count):
        trial = study.ask()
        study.tell(trial, loss(suggest_all(trial)))
    _close(study)


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A new schema in the PostgreSQL database at `url`, as a URL whose connections use it; dropped after."""
    import sqlalchemy

    schema = f"plain_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(_with_psycopg(url))
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            connection.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def optuna_rows(url: str) -> dict[str, list[str]]:
    """Every row of every table in the PostgreSQL schema `url` uses, as sorted text, by table."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(_with_psycopg(url))
    try:
        with engine.connect() as connection:
            tables = sqlalchemy.inspect(connection).get_table_names()
            return {table: sorted(repr(tuple(row)) for row in connection.execute(
                sqlalchemy.text(f'SELECT * FROM "{table}"'))) for table in tables}
    finally:
        engine.dispose()


def _with_psycopg(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def _close(study: optuna.Study) -> None:
    """Let go of an RDB storage's connections (a test's schema is dropped after)."""
    storage = study._storage
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if engine is not None:
        engine.dispose()


if __name__ == "__main__":  # a writer process: python -m tests.optuna_studies URL NAME COUNT
    add_trials(sys.argv[1], sys.argv[2], int(sys.argv[3]))
