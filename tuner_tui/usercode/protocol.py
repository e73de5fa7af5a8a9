"""The messages between tuner-tui and the child process that runs a user's code, pickled on pipes.

    parent → child:  UserJob, then Verdict after each report, Halt at any time
    child → parent:  the run's events (`tuner_tui.usercode.events`), Rejected, Ask (an Optuna
                     objective's suggestion, answered by an Answer)

Each report waits for its Verdict, so a sweep's pruner decides before the code trains on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuner_tui.usercode.config import UserRunConfig


@dataclass(frozen=True)
class UserJob:
    """What the child runs: a model file's function on `config`, or a plain Optuna objective."""

    config: UserRunConfig
    environ: Mapping[str, str]
    cwd: str
    threads: int | None = None  # torch's CPU threads (None: torch's default)
    objective: str | None = None  # `file.py:function` of an Optuna objective (then `config.model` is that file)
    trial_number: int | None = None


@dataclass(frozen=True)
class Verdict:
    """The answer to a report: go on, or stop (`pruned`, `cancelled`); `prune` is what a plain Optuna
    objective's `trial.should_prune()` returns."""

    stop: str | None = None
    prune: bool = False


@dataclass(frozen=True)
class Halt:
    """Stop at the next report (`reason`: cancelled)."""

    reason: str = "cancelled"


@dataclass(frozen=True)
class Rejected:
    """The code could not be started (its module or function): bad input, one line; `trace` is the
    user's own traceback when their module raised while it was imported."""

    reason: str
    trace: str = ""


@dataclass(frozen=True)
class Ask:
    """An Optuna objective asks its trial for a value: `method` (suggest_float, …) with its arguments."""

    method: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class Answer:
    value: Any = None
    error: str | None = None  # the suggestion was refused (a bad range): raised as ValueError in the child
