"""`tuner-tui lab`: the lab's experiments run together, each stored as its own run under its preset.

The experiments (the shipped `fmnist_exp*` and `cifar_exp*` presets) are cut into units: runs that
can share a pack (same dataset, batch size, conventions and depth) are packed up to `--pack` at a
time, the others run alone. Worker processes (`--workers`, one torch thread each) take units from a
plan written to a folder, each claiming a unit by creating its claim file (an atomic create, so no
unit runs twice), until none is left. Every run's id in the store is chosen in the plan, so the
parent finds each experiment's record when the workers are done and prints the lab's tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from tuner_tui.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUN_FAILED, BadInput, open_store, parse_overrides
from tuner_tui.engine.config import ConfigError, RunConfig
from tuner_tui.engine.events import EpochEnd, Event, Finished
from tuner_tui.formatting import epoch_line, format_seconds, plural, printable
from tuner_tui.runs.lab_table import lab_report
from tuner_tui.runs.parallel import resolve_pack, resolve_workers, run_local_workers
from tuner_tui.runs.presets import Preset, list_presets
from tuner_tui.runs.stop_signals import StopSignals
from tuner_tui.runs.store import RunLabels, RunRecord, new_run_uid

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
    recorder: Any,
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
            prepare_run(experiment.config, force=force), recorder, lambda event: on_event(experiment.preset, event),
            cancel=cancel, labels=RunLabels(preset=experiment.preset), uid=experiment.uid,
        )
        return
    from tuner_tui.runs.pack_session import PackEntry, run_pack

    entries = [PackEntry(e.config, RunLabels(preset=e.preset), e.uid) for e in unit]
    run_pack(entries, recorder, lambda tagged: on_event(unit[tagged.run].preset, tagged.event), cancel=cancel,
             force=force)


def experiments_of(
    which: str, overrides: dict[str, str], *, data_root: str | None, device: str | None
) -> list[Experiment]:
    """The lab's experiments with the `--set` values, each with the uid its run will be stored under."""
    values = dict(overrides)
    if data_root is not None:
        values["data_root"] = data_root
    if device is not None:
        values["device"] = device
    return [
        Experiment(preset.name, RunConfig.from_mapping(values, base=preset.config), new_run_uid())
        for preset in lab_presets(which)
    ]


class LabReporter:
    """One line per epoch and per outcome on stderr, each named by its experiment."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, preset: str, event: Event) -> None:
        if isinstance(event, EpochEnd):
            self._print(f"{preset}: {epoch_line(event)}")
        elif isinstance(event, Finished):
            self._print(f"{preset}: {event.status.value}: {event.message}")

    def _print(self, text: str) -> None:
        self.console.print(Text(printable(text)), soft_wrap=True)


def lab_command(args: argparse.Namespace) -> int:
    """`tuner-tui lab [fmnist|cifar10|all]`: run the experiments, print the lab's tables."""
    from tuner_tui.engine.datasets import (
        DatasetError,  # torch: only once training is near (the app lists presets from here)
    )

    if args.plan:
        return _work(args)
    try:
        experiments = experiments_of(
            args.which, parse_overrides(args.overrides), data_root=args.data_root, device=args.device
        )
        device = experiments[0].config.device
        solo_seconds = solo_estimate(experiments, force=args.force)  # bad input surfaces here
    except (ConfigError, DatasetError) as error:
        raise BadInput(str(error)) from None
    pack = resolve_pack(args.pack, device)
    workers = resolve_workers(args.workers, device)
    units = plan_units(experiments, pack, workers)
    workers = min(workers, len(units))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tuner-tui-lab-") as folder, StopSignals() as stop:
        plan = write_plan(Path(folder), units)
        open_store(args.store, create=True).close()
        argv = [sys.executable, "-P", "-m", "tuner_tui", "lab", args.which, "--no-ui", "--plan", str(plan)]
        argv += ["--store", str(args.store)] if args.store else []
        argv += ["--force"] if args.force else []
        codes = run_local_workers(argv, workers, stop.cancel)
    wall = time.monotonic() - started
    with open_store(args.store, create=False) as store:
        records = [record for e in experiments if (record := store.find_run(e.uid)) is not None]
    timing = Timing(wall, solo_seconds, workers, max(len(unit) for unit in units))
    return _report(args, records, timing, stop.exit_code(), codes)


def _work(args: argparse.Namespace) -> int:
    """A lab worker: claim units of the plan and train them until none is left."""
    from tuner_tui.engine.datasets import DatasetError

    reporter = LabReporter(Console(stderr=True))
    with StopSignals() as stop, open_store(args.store, create=True) as store:
        for unit in claimed_units(Path(args.plan)):
            if stop.cancel.is_set():
                break
            try:
                run_unit(unit, store, reporter, stop.cancel, force=args.force)
            except (ConfigError, DatasetError) as error:
                raise BadInput(f"{', '.join(e.preset for e in unit)}: {error}") from None
    return stop.exit_code() or EXIT_OK


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


def _report(
    args: argparse.Namespace, records: Sequence[RunRecord], timing: Timing, signalled: int | None,
    codes: Sequence[int],
) -> int:
    if args.json:
        for record in records:
            print(json.dumps(record.to_json()))
    else:
        sys.stdout.write(lab_report([r for r in records if r.status == "completed"], "markdown"))
        print("\n" + timing.line(len(records)))
    if signalled is not None:
        return signalled
    if any(code == EXIT_BAD_INPUT for code in codes):
        return EXIT_BAD_INPUT
    return EXIT_OK if records and all(r.status == "completed" for r in records) else EXIT_RUN_FAILED
