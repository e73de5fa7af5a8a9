"""Plain Optuna objectives, run unchanged: `def objective(trial) -> float` in a file of the user's.

The objective runs in the user-code child like a training function; its `trial` is a `TrialProxy`
whose suggestions, reports and `should_prune` are answered by the sweep's real Optuna trial in the
parent, so the study is only ever written by tuner-tui's scheduler. `trial.report(value, step)` is
recorded and streamed as a report of metric `value`; the objective's return value is the trial's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner_tui.usercode.model_file import ModelFile, ModelFileError
from tuner_tui.usercode.protocol import Answer, Ask

if TYPE_CHECKING:
    from tuner_tui.usercode.child import ChildRun, _Channel

OBJECTIVE_METRIC = "value"
SUGGESTIONS = (
    "suggest_float", "suggest_int", "suggest_categorical", "suggest_uniform", "suggest_loguniform",
    "suggest_discrete_uniform",
)


def objective_model(target: str, direction: str = "maximize") -> ModelFile:
    """`FILE.py:function` as a model file with no fields (define-by-run) and one metric, `value`."""
    file_part, sep, function = target.rpartition(":")
    if not sep or not file_part.endswith(".py") or not function.isidentifier():
        raise ModelFileError(target, "--objective: must be FILE.py:function, as objective.py:objective")
    path = Path(file_part).expanduser().resolve()
    if not path.is_file():
        raise ModelFileError(target, f"--objective: no file {path}")
    return ModelFile(path=path.with_suffix(".py"), train=f"{path.name}:{function}", title=f"{path.name}:{function}",
                     fields={}, metrics={OBJECTIVE_METRIC: "minimize" if direction == "minimize" else "maximize"})


class TrialProxy:
    """What an objective's `trial` is in the child: Optuna's trial API, answered by the parent."""

    def __init__(self, run: ChildRun, channel: _Channel, number: int) -> None:
        self._run = run
        self._channel = channel
        self.number = number
        self.params: dict[str, Any] = {}
        self.user_attrs: dict[str, Any] = {}

    def _ask(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._channel.send(Ask(method, args, kwargs))
        answer = self._channel.reply()
        if not isinstance(answer, Answer):
            raise RuntimeError("the sweep did not answer the trial's question")
        if answer.error is not None:
            raise ValueError(answer.error)
        return answer.value

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        value = self._ask("suggest_float", name, low, high, step=step, log=log)
        self.params[name] = value
        return float(value)

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        value = self._ask("suggest_int", name, low, high, step=step, log=log)
        self.params[name] = value
        return int(value)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        value = self._ask("suggest_categorical", name, list(choices))
        self.params[name] = value
        return value

    def suggest_uniform(self, name: str, low: float, high: float) -> float:
        return self.suggest_float(name, low, high)

    def suggest_loguniform(self, name: str, low: float, high: float) -> float:
        return self.suggest_float(name, low, high, log=True)

    def suggest_discrete_uniform(self, name: str, low: float, high: float, q: float) -> float:
        return self.suggest_float(name, low, high, step=q)

    def report(self, value: float, step: int) -> None:
        """Record and stream the step's value; the sweep's pruner judges it (see `should_prune`)."""
        self._run.report(int(step), **{OBJECTIVE_METRIC: value})

    def should_prune(self) -> bool:
        """What the study's pruner said of the last report."""
        return self._run.prune_answer

    def set_user_attr(self, key: str, value: Any) -> None:
        self._ask("set_user_attr", key, value)
        self.user_attrs[key] = value
