"""Sweep specs: a base config, a search space per field, and how to search, in one TOML file.

    # fmnist_search: what the file searches, in a line
    base = "fmnist_exp5"              # a preset to start from (optional)
    [config]                          # fields over the base, as in a preset (optional)
    seed = 0
    [space]                           # one entry per searched field
    lr = { log_uniform = [1e-3, 0.3] }
    hidden = { choice = [64, 128, 256, 512] }
    batch_size = { choice = [10, 20, 32, 64, 128] }
    reg = { choice = [0.0, 1e-4, 1e-3] }
    [search]
    objective = "val_accuracy"        # maximize; or "val_loss" (mean cross-entropy, minimize)
    validation = 0.1                  # share of the training set held out for the objective
    sampler = "tpe"                   # tpe | random | grid | gp | cmaes
    pruner = "asha"                   # asha | median | hyperband | none; rungs at epoch ends
    epochs = 5                        # the most any trial trains
    trials = 50                       # the study's total budget of finished trials
    seed = 0                          # the sampler's seed
    patience = 20                     # stop asking trials after 20 finished ones without a better best (optional)
    # several objectives instead of one (any recorded metric; pruning is then off):
    # objectives = { val_accuracy = "maximize", train_time_s = "minimize" }

A space entry is `{ choice = [...] }`, `{ uniform = [lo, hi] }`, `{ log_uniform = [lo, hi] }`,
`{ int = [lo, hi] }` or `{ log_int = [lo, hi] }`, with an optional `step` for uniform and int.
Every problem is reported, one line each, naming the file and the key (`SpecError.problems`).
Shipped specs live in `presets/sweeps/`; user specs in the user config folder's `sweeps/`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from tuner_tui.engine.config import ConfigError, RunConfig, parse_field
from tuner_tui.engine.dataset_specs import DATASET_SPECS
from tuner_tui.runs.presets import (
    SHIPPED_PRESETS_DIR,
    PresetError,
    is_path_argument,
    load_preset,
    load_run_target,
    read_toml,
    user_config_dir,
)
from tuner_tui.usercode.config import UserRunConfig
from tuner_tui.usercode.model_file import ModelFile

Objective = Literal["val_accuracy", "val_loss"]
SamplerName = Literal["tpe", "random", "grid", "gp", "cmaes"]
PrunerName = Literal["asha", "median", "hyperband", "none"]
DistributionKind = Literal["choice", "uniform", "log_uniform", "int", "log_int"]
OBJECTIVES: tuple[Objective, ...] = get_args(Objective)
SAMPLERS: tuple[SamplerName, ...] = get_args(SamplerName)
PRUNERS: tuple[PrunerName, ...] = get_args(PrunerName)
KINDS: tuple[DistributionKind, ...] = get_args(DistributionKind)
SEARCHABLE = ("hidden", "lr", "batch_size", "reg", "seed", "conventions")
SEARCH_KEYS = (
    "objective", "direction", "validation", "sampler", "pruner", "epochs", "trials", "seed", "reports_per_epoch",
    "patience", "objectives",
)
# Checks of a trial's validation rows an epoch (the pruner hears of each): chosen by measurement
# (benchmarks/README.md, "Sweep speed").
DEFAULT_REPORTS_PER_EPOCH = 4
# What a built-in run records that several objectives may name, and each one's natural direction.
RECORDED_METRICS: dict[str, str] = {
    "val_accuracy": "maximize", "val_loss": "minimize", "train_accuracy": "maximize", "train_loss": "minimize",
    "train_time_s": "minimize", "total_time_s": "minimize", "peak_memory_bytes": "minimize", "params": "minimize",
}
DIRECTIONS = ("maximize", "minimize")
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)  # the samplers that cannot search several objectives
MAX_REPORTS_PER_EPOCH = 100
TOP_KEYS = ("base", "config", "space", "search")
MAX_TRIALS = 100_000
MAX_GRID_POINTS = MAX_TRIALS  # a grid is tried point by point, within a study's budget
MAX_SEARCH_EPOCHS = 1000
RESERVED_NAMES = ("show", "export")  # `tuner-tui sweep show NAME` reads a sweep, `export` copies it
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


class SpecError(ValueError):
    """A spec that cannot be used; `problems` holds one line per problem, `str()` all of them."""

    def __init__(self, source: str | Path, problems: Sequence[str]) -> None:
        self.source = str(source)
        self.problems = tuple(f"{self.source}: {problem}" for problem in problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Distribution:
    """Where one field's values come from."""

    kind: DistributionKind
    values: tuple[Any, ...]  # the choices, or (low, high)
    step: float | int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {self.kind: list(self.values)}
        if self.step is not None:
            out["step"] = self.step
        return out

    def grid_size(self) -> float | None:
        """How many values `grid()` has (counted, not listed; inf when beyond counting), or None
        when the distribution is not finite."""
        if self.kind == "choice":
            return len(self.values)
        if self.kind == "int":
            low, high = self.values
            return (high - low) // int(self.step or 1) + 1
        if self.kind == "uniform" and self.step is not None:
            low, high = self.values
            count = (high - low) / self.step
            return math.floor(count + 1e-9) + 1 if math.isfinite(count) else math.inf
        return None

    def grid(self) -> list[Any] | None:
        """Every value, when the distribution is finite (choices, int ranges, stepped ranges)."""
        if self.kind == "choice":
            return list(self.values)
        size = self.grid_size()
        if size is None:
            return None
        low, high = self.values
        step = self.step or 1
        if self.kind == "int":
            return list(range(low, high + 1, int(step)))
        return [low + i * step for i in range(int(size))]


@dataclass(frozen=True)
class SearchSettings:
    """How the study searches. A built-in sweep's objective is val_accuracy (maximized) or val_loss
    (minimized); a sweep of user code's is any metric its function reports (by default the model's
    headline), in the direction its model file gives (or `direction`)."""

    objective: str = "val_accuracy"
    validation: float = 0.1
    sampler: SamplerName = "tpe"
    pruner: PrunerName = "asha"
    epochs: int = 5
    trials: int = 50
    seed: int = 0
    direction: Literal["maximize", "minimize"] = "maximize"
    reports_per_epoch: int = DEFAULT_REPORTS_PER_EPOCH  # checks of the validation rows an epoch, for the pruner
    patience: int | None = None  # stop asking after this many finished trials without a better best
    objectives: Mapping[str, str] = dataclasses.field(default_factory=dict)  # several: metric → direction

    @property
    def directions(self) -> list[Literal["maximize", "minimize"]]:
        """Every objective's direction, in order (one, without `objectives`)."""
        if not self.objectives:
            return [self.direction]
        return ["maximize" if d == "maximize" else "minimize" for d in self.objectives.values()]

    @property
    def metric_names(self) -> list[str]:
        """Every objective's name, in order."""
        return list(self.objectives) if self.objectives else [self.objective]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def identity(self) -> dict[str, Any]:
        """What of the search makes two sweeps the same study (not the budget; settings added later
        count only when given, so a study started before them resumes)."""
        settings = dataclasses.asdict(self)
        del settings["trials"]
        for key, unset in (("patience", None), ("objectives", {})):
            if settings[key] == unset:
                del settings[key]
        return settings


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: the base config every trial starts from, the space, the search."""

    name: str
    source: str
    base: RunConfig | UserRunConfig
    space: Mapping[str, Distribution]
    search: SearchSettings
    base_preset: str | None = None
    shipped: bool = False
    model: ModelFile | None = None  # a sweep of user code: its model file (then `base` is a UserRunConfig)
    objective_target: str | None = None  # a plain Optuna objective's `FILE.py:function` (define-by-run)

    def fingerprint(self) -> str:
        """What makes two runs of a sweep the same study (the budget and the name do not count)."""
        identity: dict[str, Any] = {
            "base": self.base.to_dict(),
            "space": {name: d.to_json() for name, d in sorted(self.space.items())},
            "search": self.search.identity(),
        }
        if self.objective_target is not None:
            identity["objective"] = self.objective_target
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    def trial_config(self, params: Mapping[str, Any]) -> RunConfig | UserRunConfig:
        """The base config with a trial's parameter values (already validated by the space)."""
        if isinstance(self.base, UserRunConfig):
            assert self.model is not None
            values = self.model.values(params, self.base.fields)
            return dataclasses.replace(self.base, values=tuple(values.items()))
        return RunConfig.from_mapping(params, base=self.base)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "base_preset": self.base_preset,
            "base": self.base.to_dict(),
            "space": {name: d.to_json() for name, d in self.space.items()},
            "search": dataclasses.asdict(self.search),
            "model": str(self.model.path) if self.model is not None else None,
            "objective_target": self.objective_target,
        }


def shipped_specs_dir() -> Path:
    return SHIPPED_PRESETS_DIR / "sweeps"


def user_specs_dir() -> Path:
    return user_config_dir() / "sweeps"


def spec_files() -> dict[str, tuple[Path, bool]]:
    """Every spec file by name, with whether it is shipped; a shipped name hides a user file."""
    found = {p.stem: (p, False) for p in _toml_files(user_specs_dir())}
    found.update({p.stem: (p, True) for p in _toml_files(shipped_specs_dir())})
    return found


def list_specs() -> tuple[list[SweepSpec], list[SpecError]]:
    """Every readable spec, and the errors of the ones that are not."""
    specs, errors = [], []
    for name, (path, shipped) in sorted(spec_files().items()):
        try:
            specs.append(read_spec(path, shipped=shipped, name=name))
        except SpecError as error:
            errors.append(error)
    return specs, errors


def load_spec(name_or_path: str, *, overrides: Mapping[str, Any] | None = None) -> SweepSpec:
    """A spec by name (shipped or user) or by path; `overrides` are `--set` values over its base."""
    if is_path_argument(name_or_path):
        path = Path(name_or_path).expanduser()
        return read_spec(path, shipped=False, overrides=overrides)
    files = spec_files()
    if name_or_path not in files:
        close = difflib.get_close_matches(name_or_path, files)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known specs: {', '.join(sorted(files))}"
        raise SpecError("sweep", [f"unknown spec {name_or_path!r}{hint}"])
    path, shipped = files[name_or_path]
    return read_spec(path, shipped=shipped, overrides=overrides)


def read_spec(
    path: Path, *, shipped: bool = False, name: str | None = None, overrides: Mapping[str, Any] | None = None
) -> SweepSpec:
    """Read and validate a spec file; SpecError with every problem found."""
    try:
        data = read_toml(path)
    except PresetError as error:
        raise SpecError(path, [error.reason]) from None
    return parse_spec(data, source=str(path), name=name or path.stem, shipped=shipped, overrides=overrides)


def parse_spec(
    data: Mapping[str, Any],
    *,
    source: str,
    name: str,
    shipped: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> SweepSpec:
    """Validate a spec's table; SpecError lists every problem, one line each."""
    problems: list[str] = []
    name_problem = sweep_name_problem(name)
    if name_problem:
        problems.append(name_problem)
    for key in sorted(set(data) - set(TOP_KEYS)):
        problems.append(f"{key}: unknown key; allowed keys are {', '.join(TOP_KEYS)}")
    model = _model_base(data.get("base"), problems)
    search = _parse_search(data.get("search", {}), problems, model)
    overrides = overrides or {}
    if model is not None:
        from tuner_tui.sweeps.model_specs import parse_model_spec

        return parse_model_spec(data, model, search, overrides, problems, source=source, name=name, shipped=shipped)
    if "epochs" in overrides:  # `--set epochs=N` sets the most any trial trains
        try:
            search = dataclasses.replace(search, epochs=parse_field("epochs", overrides["epochs"]))
        except ConfigError as error:
            problems.append(f"--set epochs: {error.reason}")
    base, base_preset = _parse_base(data, search, overrides, problems)
    space = _parse_space(data.get("space"), base, problems)
    if base is not None and search.sampler == "grid":
        sizes = {field: distribution.grid_size() for field, distribution in space.items()}
        for field, size in sizes.items():
            if size is None:
                problems.append(f"space.{field}: the grid sampler needs choices, an int range or a step")
        points = math.prod(size for size in sizes.values() if size is not None)
        if points > MAX_GRID_POINTS:
            problems.append(
                f"space: the grid has {points:.3g} points, more than {MAX_GRID_POINTS:,} a grid sweep may have; "
                "use fewer values, a larger step, or another sampler"
            )
    if problems or base is None:
        raise SpecError(source, problems)
    return SweepSpec(name, source, base, space, search, base_preset, shipped)


def sweep_name_problem(name: str) -> str | None:
    """Why `name` cannot name a sweep (it names a folder and a SLURM job), or None."""
    if _NAME_PATTERN.fullmatch(name) and name not in RESERVED_NAMES:
        return None
    return f"name {name!r}: a sweep name is 1 to 64 letters, digits, _ or -, and not 'show' or 'export'"


def _model_base(raw: Any, problems: list[str]) -> ModelFile | None:
    """The model file a spec's `base` names, if it names one (a built-in preset otherwise)."""
    if not isinstance(raw, str):
        return None
    try:
        target = load_run_target(raw)
    except PresetError:
        return None  # reported with the built-in base
    return target if isinstance(target, ModelFile) else None


def _parse_search(raw: Any, problems: list[str], model: ModelFile | None = None) -> SearchSettings:
    if not isinstance(raw, Mapping):
        problems.append("search: must be a table ([search])")
        return SearchSettings()
    for key in sorted(set(raw) - set(SEARCH_KEYS)):
        problems.append(f"search.{key}: unknown key; allowed keys are {', '.join(SEARCH_KEYS)}")
    values: dict[str, Any] = {}
    if model is not None:
        values.update(_model_objective(raw, model, problems))
    choices: dict[str, tuple[str, ...]] = {"sampler": SAMPLERS, "pruner": PRUNERS}
    if model is None:
        choices["objective"] = OBJECTIVES
        if "direction" in raw:
            problems.append("search.direction: a built-in sweep's objective has its own direction")
        if raw.get("objective") == "val_loss":
            values["direction"] = "minimize"
    for key, allowed in choices.items():
        if key in raw:
            if raw[key] in allowed:
                values[key] = raw[key]
            else:
                problems.append(f"search.{key}: must be one of {' | '.join(allowed)}, got {raw[key]!r}")
    bounds = {"epochs": (1, MAX_SEARCH_EPOCHS), "trials": (1, MAX_TRIALS), "seed": (0, 2**32 - 1),
              "reports_per_epoch": (1, MAX_REPORTS_PER_EPOCH), "patience": (1, MAX_TRIALS)}
    for key, (low, high) in bounds.items():
        if key in raw:
            value = raw[key]
            if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
                values[key] = value
            else:
                problems.append(f"search.{key}: must be a whole number in [{low}, {high}], got {value!r}")
    if "validation" in raw:
        value = raw["validation"]
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 0.5:
            values["validation"] = float(value)
        else:
            problems.append(f"search.validation: must be a share in (0, 0.5] of the training set, got {value!r}")
    if "objectives" in raw:
        values.update(_objectives(raw, model, values, problems))
    return SearchSettings(**values)


def _objectives(
    raw: Mapping[str, Any], model: ModelFile | None, values: dict[str, Any], problems: list[str]
) -> dict[str, Any]:
    """`objectives = { metric = "maximize" | "minimize", ... }`: several objectives (two or more), each
    a recorded metric (a model's reported metric for a sweep of user code); pruning is then off."""
    table = raw["objectives"]
    allowed = sorted(model.metrics) if model is not None else sorted(RECORDED_METRICS)
    if not isinstance(table, Mapping) or len(table) < 2:
        problems.append("search.objectives: must name two or more metrics, e.g. "
                        '{ val_accuracy = "maximize", train_time_s = "minimize" }')
        return {}
    if "objective" in raw or "direction" in raw:
        problems.append("search.objectives: give either objective (one) or objectives (several), not both")
    for metric, direction in table.items():
        known = str(metric).isidentifier() if model is not None else metric in RECORDED_METRICS
        if not known:
            problems.append(f"search.objectives.{metric}: not a recorded metric; one of {', '.join(allowed)}")
        if direction not in DIRECTIONS:
            problems.append(f"search.objectives.{metric}: must be maximize or minimize, got {direction!r}")
    if raw.get("pruner", "none") != "none":
        problems.append("search.pruner: pruning is off with several objectives (Optuna cannot prune them); "
                        "leave it out or give none")
    if values.get("sampler") in SINGLE_OBJECTIVE_SAMPLERS:
        problems.append(f"search.sampler: {values['sampler']} searches one objective; with several use tpe, "
                        "random, grid or gp")
    if "patience" in raw:
        problems.append("search.patience: needs one objective (several have no single best)")
    first, direction = next(iter(table.items()))
    return {"objectives": {str(k): str(v) for k, v in table.items()}, "objective": str(first),
            "direction": direction if direction in DIRECTIONS else "maximize", "pruner": "none"}


def _model_objective(raw: Mapping[str, Any], model: ModelFile, problems: list[str]) -> dict[str, Any]:
    """A sweep of user code's objective (any metric its code reports; the headline by default) and
    its direction (the model file's for its metrics, else `direction`)."""
    headline, direction = model.headline
    objective = raw.get("objective", headline)
    if not isinstance(objective, str) or not objective.isidentifier():
        problems.append(f"search.objective: must be the name of a metric the code reports, got {objective!r}")
        return {}
    given = raw.get("direction")
    if given is not None and given not in ("maximize", "minimize"):
        problems.append(f"search.direction: must be maximize or minimize, got {given!r}")
        return {}
    chosen = given or model.metrics.get(objective)
    if chosen is None:
        problems.append(f"search.objective: {objective} is not in the model's [metrics]; give search.direction")
        return {}
    return {"objective": objective, "direction": chosen if objective != headline or given else direction}


def _parse_base(
    data: Mapping[str, Any], search: SearchSettings, overrides: Mapping[str, Any], problems: list[str]
) -> tuple[RunConfig | None, str | None]:
    base_preset = data.get("base")
    config = RunConfig()
    if base_preset is not None:
        if not isinstance(base_preset, str):
            problems.append(f"base: must be a preset's name, got {base_preset!r}")
            return None, None
        try:
            config = load_preset(base_preset).config
        except PresetError as error:
            problems.append(f"base: {error}")
            return None, None
    fields = data.get("config", {})
    if not isinstance(fields, Mapping):
        problems.append("config: must be a table ([config])")
        return None, base_preset
    try:
        config = RunConfig.from_mapping(fields, base=config)
    except ConfigError as error:
        problems.append(f"config.{error.field}: {error.reason}")
        return None, base_preset
    try:
        config = RunConfig.from_mapping(overrides, base=config)
    except ConfigError as error:
        problems.append(f"--set {error.field}: {error.reason}")
        return None, base_preset
    try:
        config = dataclasses.replace(config, epochs=search.epochs, validation=search.validation)
    except ConfigError as error:
        problems.append(f"search.{error.field}: {error.reason}")
        return None, base_preset
    return config, base_preset


def _parse_space(raw: Any, base: RunConfig | None, problems: list[str]) -> dict[str, Distribution]:
    if not isinstance(raw, Mapping) or not raw:
        problems.append("space: must be a table with at least one field to search ([space])")
        return {}
    space: dict[str, Distribution] = {}
    for field, entry in raw.items():
        where = f"space.{field}"
        if field not in SEARCHABLE:
            problems.append(f"{where}: cannot be searched; searchable fields are {', '.join(SEARCHABLE)}")
            continue
        distribution = parse_distribution(where, entry, problems)
        if distribution is None:
            continue
        if _check_values(where, field, distribution, base, problems):
            space[field] = distribution
    return space


def parse_distribution(where: str, entry: Any, problems: list[str]) -> Distribution | None:
    kinds = " | ".join(KINDS)
    if not isinstance(entry, Mapping):
        problems.append(f"{where}: must be a table such as {{ choice = [...] }} ({kinds})")
        return None
    named = [k for k in entry if k in KINDS]
    extra = sorted(set(entry) - set(KINDS) - {"step"})
    if len(named) != 1 or extra:
        problems.append(f"{where}: must name exactly one of {kinds} (and optionally step)")
        return None
    kind = named[0]
    values = entry[kind]
    if not isinstance(values, list) or not values:
        problems.append(f"{where}.{kind}: must be a non-empty list")
        return None
    step = entry.get("step")
    if kind == "choice":
        if step is not None:
            problems.append(f"{where}.step: only uniform and int ranges take a step")
            return None
        return Distribution("choice", tuple(values))
    if len(values) != 2 or not all(_is_number(v) for v in values) or not values[0] < values[1]:
        problems.append(f"{where}.{kind}: must be [low, high] with low < high, got {values!r}")
        return None
    low, high = values
    if kind in ("int", "log_int") and not all(isinstance(v, int) for v in values):
        problems.append(f"{where}.{kind}: bounds must be whole numbers, got {values!r}")
        return None
    if kind in ("log_uniform", "log_int") and low <= 0:
        problems.append(f"{where}.{kind}: a log range must start above 0, got {low!r}")
        return None
    if step is not None and (kind not in ("uniform", "int") or not _is_number(step) or step <= 0):
        problems.append(f"{where}.step: a positive step for uniform or int ranges, got {step!r}")
        return None
    if kind in ("int", "log_int"):
        return Distribution(kind, (int(low), int(high)), int(step) if step is not None else None)
    return Distribution(kind, (float(low), float(high)), float(step) if step is not None else None)


def _check_values(
    where: str, field: str, distribution: Distribution, base: RunConfig | None, problems: list[str]
) -> bool:
    """Every value the distribution can give must make a valid config (its bounds, for ranges)."""
    if field == "hidden" and distribution.kind in ("uniform", "log_uniform"):
        problems.append(f"{where}: layer sizes are whole numbers: use choice, int or log_int")
        return False
    samples = list(distribution.values)
    ok = True
    for value in samples:
        try:
            parsed = parse_field(field, value)
            if base is not None:
                config = RunConfig.from_mapping({field: parsed}, base=base)
                if field == "batch_size":
                    spec = DATASET_SPECS[config.dataset]
                    train_rows = spec.train_size - round(spec.train_size * base.validation)
                    if config.batch_size > train_rows:
                        raise ConfigError(field, f"must be at most {train_rows} (training rows left), got {value}")
        except ConfigError as error:
            problems.append(f"{where}: {error.reason}")
            ok = False
    return ok


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _toml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.glob("*.toml") if path.is_file())
