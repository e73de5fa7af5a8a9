"""What a run of user code reports, in order: `UserStarted`, then `MetricsReported` and `UserLogged`
interleaved, then exactly one `UserFinished`. Plain frozen dataclasses: they cross a pipe pickled,
and the store, the CLI and the app read them as they read a built-in run's events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuner_tui.engine.events import RunStatus
from tuner_tui.usercode.config import UserRunConfig


@dataclass(frozen=True)
class CodeOrigin:
    """Where a run's code came from, to reproduce it: the function's file and its hash, the git commit
    and whether the tree was dirty (when the file is in a git repository), and the versions used."""

    function: str  # `mlp.py:train` as the model file names it
    file: str | None  # the .py file, when the function was named by file
    sha256: str | None
    git_commit: str | None = None
    git_dirty: bool | None = None
    python: str = ""
    torch: str | None = None
    tuner_tui: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class UserStarted:
    config: UserRunConfig
    device_name: str
    origin: CodeOrigin
    title: str
    headline: str  # the metric that matters
    direction: str  # maximize | minimize


@dataclass(frozen=True)
class MetricsReported:
    """One `run.report(epoch, **metrics)`; `seconds` since the previous report (or the start)."""

    epoch: int
    metrics: Mapping[str, float]
    seconds: float
    epochs: int | None = None  # the run's epochs, when known (progress)


@dataclass(frozen=True)
class UserLogged:
    """A line of the run's log: `run.log(text)`, what the code printed, or its traceback."""

    text: str


@dataclass(frozen=True)
class UserFinished:
    status: RunStatus
    message: str
    metrics: Mapping[str, float]  # the last value of each reported metric, with the returned ones over them
    reports: tuple[MetricsReported, ...] = ()
    train_time_s: float = 0.0
    total_time_s: float = 0.0
    log: str = ""  # the run's log (a failed run's traceback among it)
    returned: Mapping[str, float] = field(default_factory=dict)


UserEvent = UserStarted | MetricsReported | UserLogged | UserFinished
