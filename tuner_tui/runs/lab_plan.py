"""The lab's plan: its experiments cut into units that worker processes claim, each run once.

The experiments (the shipped `fmnist_exp*` and `cifar_exp*` presets) are cut into units: runs that
can share a pack (same dataset, batch size, conventions and depth) are packed up to `--pack` at a
time, the others run alone. Worker processes (`--workers`, one torch thread each) take units from a
plan written to a folder, each claiming a unit by creating its claim file (an atomic create, so no
unit runs twice), until none is left. Every run's id in the store is chosen in the plan, so the
parent finds each experiment's record when the workers are done.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import Event
from tuner_tui.formatting import format_seconds, plural
from tuner_tui.runs.presets import Preset, list_presets
from tuner_tui.runs.records import RunLabels, new_run_uid

if TYPE_CHECKING:
    from tuner_tui.runs.session import RunWriter

LAB_SETS = {"fmnist": ("fmnist_exp",), "cifar10": ("cifar_exp",), "all": ("fmnist_exp", "cifar_exp")}
PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class Experiment:
    """One experiment of the lab: its preset's name, its config (after `--set`), its run's uid."""

    preset: str
    config: RunConfig
    uid: str


def lab_presets(which: str) -> list[Preset]:
    """The shipped experiments of `which` (fmnist | cifar10 | all), in the lab's order."""
    prefixes = LAB_SETS[which]
    return [p for p in list_presets() if p.shipped and p.name.startswith(prefixes)]


def plan_units(
    experiments: Sequence[Experiment], pack: Callable[[int], int], workers: int = 1
) -> list[list[Experiment]]:
    """Experiments grouped by what a pack shares, cut into units of at most `pack(batch size)` (and
    into at least one unit per worker where a group has runs enough for it), the biggest first."""
    from tuner_tui.engine.pack_runner import PackKey

    groups: dict[PackKey, list[Experiment]] = {}
    for experiment in experiments:
        groups.setdefault(PackKey.of(experiment.config), []).append(experiment)
    units: list[list[Experiment]] = []
    for key, group in groups.items():
        largest = max(1, pack(key.batch_size))
        count = max(-(-len(group) // largest), min(workers, len(group) // 2)) if largest > 1 else len(group)
        units += [group[i::count] for i in range(count)]
    return sorted(units, key=lambda unit: -sum(_cost(e.config) for e in unit))


def _cost(config: RunConfig) -> float:
    """A rough size of a run, to start the longest units first: steps × width, plus per-step overhead."""
    from tuner_tui.engine.dataset_specs import DATASET_SPECS

    spec = DATASET_SPECS[config.dataset]
    steps = config.epochs * -(-spec.train_size // config.batch_size)
    return steps * (1.0 + config.batch_size * spec.features * sum(config.hidden) / 1e6)


def write_plan(folder: Path, units: Sequence[Sequence[Experiment]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PLAN_FILE
    path.write_text(json.dumps([
        [{"preset": e.preset, "config": e.config.to_dict(), "uid": e.uid} for e in unit] for unit in units
    ]))
    return path


def read_plan(path: Path) -> list[list[Experiment]]:
    units = json.loads(path.read_text())
    return [[Experiment(e["preset"], RunConfig.from_mapping(e["config"]), e["uid"]) for e in unit] for unit in units]


def claimed_units(plan_path: Path) -> Iterator[list[Experiment]]:
    """The units of the plan this process claims, one at a time (each unit is claimed once)."""
    claims = plan_path.parent / "claims"
    claims.mkdir(exist_ok=True)
    for index, unit in enumerate(read_plan(plan_path)):
        try:
            os.close(os.open(claims / str(index), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        yield unit


def run_unit(
    unit: Sequence[Experiment],
    writer: RunWriter,
    on_event: Callable[[str, Event], None],
    cancel: threading.Event,
    *,
    force: bool = False,
) -> None:
    """Train one unit (a pack, or one run alone), recording each run under its preset and uid."""
    if len(unit) == 1:
        from tuner_tui.engine.runner import prepare_run
        from tuner_tui.runs.session import execute_and_record

        [experiment] = unit
        execute_and_record(
            prepare_run(experiment.config, force=force), writer, lambda event: on_event(experiment.preset, event),
            cancel=cancel, labels=RunLabels(preset=experiment.preset), uid=experiment.uid,
        )
        return
    from tuner_tui.runs.pack_session import PackEntry, run_pack

    entries = [PackEntry(e.config, RunLabels(preset=e.preset), e.uid) for e in unit]
    run_pack(entries, writer, lambda tagged: on_event(unit[tagged.run].preset, tagged.event), cancel=cancel,
             force=force)


def experiments_of(which: str, values: dict[str, str]) -> list[Experiment]:
    """The lab's experiments with the `--set` values, each with the uid its run will be stored under."""
    return [
        Experiment(preset.name, RunConfig.from_mapping(values, base=preset.config), new_run_uid())
        for preset in lab_presets(which)
    ]


@dataclass(frozen=True)
class Timing:
    """How long the lab took, against the estimated time of its runs one after another."""

    wall_s: float
    solo_estimate_s: float
    workers: int
    largest_pack: int

    def line(self, runs: int) -> str:
        ratio = self.wall_s / self.solo_estimate_s if self.solo_estimate_s else float("nan")
        return (
            f"{runs} runs in {format_seconds(self.wall_s)} of wall time ({plural(self.workers, 'worker')}, packs of "
            f"up to {self.largest_pack}); one after another, alone: {format_seconds(self.solo_estimate_s)} "
            f"estimated (each run calibrated alone before the start), so {ratio:.2f}× (an estimate; "
            "benchmarks/pack_speed.py measures the real ratio)"
        )


def solo_estimate(experiments: Sequence[Experiment], *, force: bool) -> float:
    """Seconds the experiments would take one after another, each alone on its device (calibrated
    once per shape; the data is loaded once). Bad input in any of them raises here."""
    from tuner_tui.engine.runner import estimate_solo_time, prepare_run
    from tuner_tui.runs.session import CachedLoader

    loader = CachedLoader()
    seconds: dict[tuple[object, ...], float] = {}
    total = 0.0
    for experiment in experiments:
        config = experiment.config
        shape = (config.dataset, config.data_root, config.hidden, config.batch_size, config.engine,
                 config.conventions, config.device)
        if shape not in seconds:
            prepared = prepare_run(dataclasses.replace(config, epochs=1), load=loader, force=force)
            seconds[shape] = estimate_solo_time(prepared).total_seconds
        total += seconds[shape] * config.epochs
    return total
