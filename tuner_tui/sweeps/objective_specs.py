"""Sweeps of a plain Optuna objective: `tuner-tui sweep --objective FILE.py:objective --name NAME`.

The objective is define-by-run (its `trial.suggest_*` calls are the space), so its spec has no
space and no base: only the file, the direction and how to search. Each trial runs the function
in the user-code child process (`tuner_tui.usercode.objective`), recorded as a run like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from tuner_tui.sweeps.spec import (
    MAX_TRIALS,
    PRUNERS,
    SAMPLERS,
    SearchSettings,
    SpecError,
    SweepSpec,
    sweep_name_problem,
)
from tuner_tui.usercode.config import UserRunConfig
from tuner_tui.usercode.model_file import ModelFileError
from tuner_tui.usercode.objective import OBJECTIVE_METRIC, objective_model

DEFAULT_TRIALS = 50


def objective_spec(
    target: str, *, name: str | None, direction: Literal["maximize", "minimize"] = "maximize",
    pruner: str = "asha", sampler: str = "tpe", trials: int | None = None,
) -> SweepSpec:
    """The spec of a sweep of Optuna objective `target` (`FILE.py:function`); SpecError, one line
    per problem, naming `--objective`, `--name` or the option at fault."""
    problems: list[str] = []
    if name is None:
        problems.append("--name: a sweep of an objective needs a name (--name NAME)")
    elif (problem := sweep_name_problem(name)) is not None:
        problems.append(f"--{problem}")
    if pruner not in PRUNERS:
        problems.append(f"--pruner: must be one of {' | '.join(PRUNERS)}, got {pruner!r}")
    if sampler not in SAMPLERS or sampler == "grid":
        allowed = " | ".join(s for s in SAMPLERS if s != "grid")
        problems.append(f"--sampler: must be one of {allowed} (a define-by-run space has no grid), got {sampler!r}")
    try:
        model = objective_model(target, direction)
    except ModelFileError as error:
        problems.append(error.reason)
        model = None
    if problems or model is None or name is None:
        raise SpecError("sweep", problems)
    file, function = target.rsplit(":", 1)
    resolved = f"{Path(file).expanduser().resolve()}:{function}"
    search = SearchSettings(
        objective=OBJECTIVE_METRIC, direction=direction, validation=0.1, sampler=sampler,  # type: ignore[arg-type]
        pruner=pruner, trials=min(trials or DEFAULT_TRIALS, MAX_TRIALS), reports_per_epoch=1,  # type: ignore[arg-type]
    )
    base = UserRunConfig(str(model.path), ())
    return SweepSpec(name, resolved, base, {}, search, None, False, model, objective_target=resolved)
