"""The reading commands: `tuner-tui runs`, `tuner-tui presets` and `tuner-tui report`. They never
write the store (what cluster workers journaled is imported first, where the store can be written)."""

from __future__ import annotations

import argparse
import json
import sys

from tuner_tui.commands.common import EXIT_OK, open_store, plain_console, warn_unreadable
from tuner_tui.engine.events import RunStatus
from tuner_tui.reports.run_tables import models_table, plain, presets_table, runs_table


def list_runs(args: argparse.Namespace) -> int:
    """`tuner-tui runs [--json] [--limit N]`: the stored runs, newest first."""
    with open_store(args.store, create=False) as store:
        records = store.list_runs(limit=args.limit)
        unreadable = store.list_unreadable()
    if args.json:
        for record in records:
            print(json.dumps(record.to_json()))
        warn_unreadable(unreadable)
    else:
        plain_console().print(runs_table(records, unreadable))
    return EXIT_OK


def list_presets(args: argparse.Namespace) -> int:
    """`tuner-tui presets`: shipped and user presets and sweep specs, and why any file was skipped."""
    from tuner_tui.reports.sweeps import specs_table
    from tuner_tui.runs.presets import list_models, preset_errors
    from tuner_tui.runs.presets import list_presets as presets
    from tuner_tui.sweeps.spec import list_specs

    console = plain_console()
    console.print(presets_table(presets()))
    models = list_models()
    if models:
        console.print(models_table(models))
    specs, spec_errors = list_specs()
    console.print(specs_table(specs))
    problems = [str(error) for error in preset_errors()] + [p for error in spec_errors for p in error.problems]
    for problem in problems:
        console.print(plain(f"skipped: {problem}"), soft_wrap=True)
    return EXIT_OK


def report(args: argparse.Namespace) -> int:
    """`tuner-tui report [--format markdown|csv]`: the lab report's tables from the completed runs."""
    from tuner_tui.runs.lab_table import lab_report

    with open_store(args.store, create=False) as store:
        records = [r for r in reversed(store.list_runs()) if r.status is RunStatus.COMPLETED]
        unreadable = store.list_unreadable()
    sys.stdout.write(lab_report(records, args.format, unreadable))
    if args.format == "csv":  # the CSV stays one table; where its missing runs are goes apart
        warn_unreadable(unreadable)
    return EXIT_OK
