"""`tuner-tui lab [fmnist|cifar10|all] --no-ui`: the lab's experiments run together (packs and
worker processes sharing a plan, `tuner_tui.runs.lab_plan`), each stored as its own run under its
preset; then the lab's tables and the wall time against the runs one after another."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from tuner_tui.commands.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_RUN_FAILED,
    BadInput,
    open_store,
    parse_overrides,
    with_location,
)
from tuner_tui.engine.config import ConfigError
from tuner_tui.engine.events import RunStatus
from tuner_tui.reports.progress import LabReporter
from tuner_tui.runs.child_commands import lab_worker_argv
from tuner_tui.runs.lab_plan import (
    Timing,
    claimed_units,
    experiments_of,
    plan_units,
    run_unit,
    solo_estimate,
    write_plan,
)
from tuner_tui.runs.lab_table import lab_report
from tuner_tui.runs.parallel import resolve_pack, resolve_workers, run_local_workers
from tuner_tui.runs.records import RunRecord
from tuner_tui.runs.stop_signals import StopSignals


def lab_command(args: argparse.Namespace) -> int:
    """`tuner-tui lab [fmnist|cifar10|all]`: run the experiments, print the lab's tables."""
    from tuner_tui.engine.datasets import (
        DatasetError,  # torch: only once training is near (the app lists presets from here)
    )

    if args.plan:
        return _work(args)
    try:
        values = with_location(parse_overrides(args.overrides), data_root=args.data_root, device=args.device)
        experiments = experiments_of(args.which, values)
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
        argv = lab_worker_argv(args.which, plan, store=args.store, force=args.force)
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


def _report(
    args: argparse.Namespace, records: Sequence[RunRecord], timing: Timing, signalled: int | None,
    codes: Sequence[int],
) -> int:
    if args.json:
        for record in records:
            print(json.dumps(record.to_json()))
    else:
        sys.stdout.write(lab_report([r for r in records if r.status is RunStatus.COMPLETED], "markdown"))
        print("\n" + timing.line(len(records)))
    if signalled is not None:
        return signalled
    if any(code == EXIT_BAD_INPUT for code in codes):
        return EXIT_BAD_INPUT
    return EXIT_OK if records and all(r.status is RunStatus.COMPLETED for r in records) else EXIT_RUN_FAILED
