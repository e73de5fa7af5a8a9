"""Sweep specs whose base is a model file: a search over the fields of the user's own training code.

    base = "lab4_student"                     # a model file (by name or path)
    [config]                                  # field values over the model's defaults (optional)
    seed = 1
    [space]                                   # the model's fields, each with a distribution its type allows
    lr = { log_uniform = [0.001, 0.3] }
    hidden = { choice = [64, 128, 256] }
    [search]
    objective = "val_accuracy"                # default: the model's headline metric, in its direction
    validation = 0.1                          # held out of `run.load_dataset`'s training rows
    epochs = 5                                # sets the model's `epochs` field, if it has one; the pruner's horizon

Numbers take uniform / log_uniform (floats) or int / log_int (whole numbers) or a choice; text
and true/false fields take a choice. Every value the space can give is checked against the field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from tuner_tui.engine.config import ConfigError
from tuner_tui.sweeps.spec import (
    MAX_GRID_POINTS,
    MAX_SEARCH_EPOCHS,
    Distribution,
    SearchSettings,
    SpecError,
    SweepSpec,
    parse_distribution,
)
from tuner_tui.usercode.config import user_config
from tuner_tui.usercode.model_file import Field, ModelFile, ModelFileError

WHERE_KEYS = ("device", "data_root")  # --device and --data-root, merged into a spec's --set values
KINDS_BY_TYPE = {
    "float": ("uniform", "log_uniform", "choice"),
    "int": ("int", "log_int", "choice"),
    "str": ("choice",),
    "bool": ("choice",),
}


def parse_model_spec(
    data: Mapping[str, Any], model: ModelFile, search: SearchSettings, overrides: Mapping[str, Any],
    problems: list[str], *, source: str, name: str, shipped: bool,
) -> SweepSpec:
    """A spec over `model`'s fields; SpecError with every problem, one line each. The code reports
    when it likes: each report is one step of the pruner (`reports_per_epoch` is the built-in's)."""
    raw_search = data.get("search", {})
    if isinstance(raw_search, Mapping) and "reports_per_epoch" in raw_search:
        problems.append("search.reports_per_epoch: the built-in network's; your code reports when it likes")
    search = dataclasses.replace(search, reports_per_epoch=1)
    if "epochs" in overrides:
        epochs = overrides["epochs"]
        parsed = int(epochs) if isinstance(epochs, int | str) and str(epochs).strip().isdigit() else None
        if parsed is None or not 1 <= parsed <= MAX_SEARCH_EPOCHS:
            problems.append(f"--set epochs: must be a whole number in [1, {MAX_SEARCH_EPOCHS}], got {epochs!r}")
        else:
            search = dataclasses.replace(search, epochs=parsed)
    fields = data.get("config", {})
    if not isinstance(fields, Mapping):
        problems.append("config: must be a table ([config])")
        fields = {}
    values: dict[str, Any] = model.defaults()
    sets: dict[str, Any] = {key: value for key, value in overrides.items() if key not in WHERE_KEYS}
    for prefix, raw in (("config.", dict(fields)), ("--set ", sets)):
        for key, value in raw.items():
            try:
                values = model.values({key: value}, values)
            except ModelFileError as error:
                problems.append(f"{prefix}{error.reason}")
    if "epochs" in model.fields and model.fields["epochs"].kind == "int":
        try:
            values = model.values({"epochs": search.epochs}, values)
        except ModelFileError as error:
            problems.append(f"search.epochs: {error.reason}")
    space = _model_space(data.get("space"), model, problems)
    if search.sampler == "grid":
        sizes = [distribution.grid_size() for distribution in space.values()]
        if any(size is None for size in sizes):
            problems.append("space: the grid sampler needs choices, an int range or a step for every field")
        elif math.prod(size or 0 for size in sizes) > MAX_GRID_POINTS:
            problems.append(f"space: the grid has more than {MAX_GRID_POINTS:,} points")
    where = {key: value for key, value in overrides.items() if key in WHERE_KEYS}
    base = None
    try:
        base = user_config(model, {}, base=values, where={**where, "validation": search.validation})
    except (ConfigError, ModelFileError) as error:
        problems.append(str(error))
    if problems or base is None:
        raise SpecError(source, problems)
    return SweepSpec(name, source, base, space, search, str(data.get("base")), shipped, model)


def _model_space(raw: Any, model: ModelFile, problems: list[str]) -> dict[str, Distribution]:
    if not isinstance(raw, Mapping) or not raw:
        problems.append("space: must be a table with at least one of the model's fields to search ([space])")
        return {}
    space: dict[str, Distribution] = {}
    for name, entry in raw.items():
        where = f"space.{name}"
        field = model.fields.get(name)
        if field is None:
            problems.append(f"{where}: not a field of {model.path.name}; its fields are {', '.join(model.fields)}")
            continue
        distribution = parse_distribution(where, entry, problems)
        if distribution is None:
            continue
        allowed = ("choice",) if field.choices else KINDS_BY_TYPE[field.kind]
        if distribution.kind not in allowed:
            what = "a field with choices" if field.choices else f"a {field.kind} field"
            problems.append(f"{where}: {what} takes {' | '.join(allowed)}, not {distribution.kind}")
            continue
        if _values_fit(where, field, distribution, problems):
            space[name] = distribution
    return space


def _values_fit(where: str, field: Field, distribution: Distribution, problems: list[str]) -> bool:
    """Every choice, and both bounds of a range, must be a value the field allows."""
    ok = True
    for value in distribution.values:
        try:
            field.parse(value)
        except ValueError as error:
            problems.append(f"{where}: {error}")
            ok = False
    return ok
