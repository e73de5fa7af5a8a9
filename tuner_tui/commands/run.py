"""`tuner-tui --preset NAME --no-ui`: run one config headless; its progress on stderr, its result on
stdout (the lab's columns, or one JSON object with `--json`), its exit code from how it ended."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from tuner_tui.commands.common import EXIT_OK, EXIT_RUN_FAILED, BadInput, model_named, open_store, resolve_config
from tuner_tui.reports.progress import HeadlessReporter
from tuner_tui.reports.run_tables import plain, run_table
from tuner_tui.runs.records import RunLabels


def run_headless(args: argparse.Namespace) -> int:
    """`tuner-tui --no-ui`: run the config, record it, print its result; the CLI's exit code."""
    from tuner_tui.engine.capacity import WontFitError
    from tuner_tui.engine.config import ConfigError
    from tuner_tui.engine.datasets import DatasetError
    from tuner_tui.engine.events import RunStatus
    from tuner_tui.engine.runner import prepare_run
    from tuner_tui.runs.session import execute_and_record
    from tuner_tui.runs.stop_signals import StopSignals

    if args.preset:
        from tuner_tui.commands.user_run import run_user_headless

        model = model_named(args.preset)
        if model is not None:
            return run_user_headless(args, model)
    config, label = resolve_config(args.preset, args.overrides, data_root=args.data_root, device=args.device)
    with StopSignals() as stop:
        try:
            prepared = prepare_run(config, force=args.force)
        except WontFitError as error:
            raise BadInput(f"{error}; use --force to try anyway") from None
        except (ConfigError, DatasetError) as error:
            raise BadInput(str(error)) from None
        if stop.received is not None:  # stopped during start-up: nothing ran, nothing is stored
            print("tuner-tui: interrupted before the run started; nothing was stored", file=sys.stderr)
            return 128 + stop.received
        for note in prepared.dataset.notes:
            Console(stderr=True).print(plain(f"tuner-tui: warning: {note}"), soft_wrap=True)
        with open_store(args.store, create=True) as store:
            reporter = HeadlessReporter(Console(stderr=True))
            try:
                recorded = execute_and_record(
                    prepared, store, reporter, cancel=stop.cancel, labels=RunLabels(preset=label)
                )
            finally:
                reporter.stop()
            record = store.get_run(recorded.run_id) if recorded.run_id is not None else recorded.unsaved
    assert record is not None
    if args.json:
        print(json.dumps(record.to_json()))
    else:
        Console().print(run_table(record))
    if recorded.store_error is not None:
        Console(stderr=True).print(
            plain(f"tuner-tui: error: the run was not stored: {recorded.store_error}"), soft_wrap=True
        )
        return EXIT_RUN_FAILED
    signalled = stop.exit_code()
    if signalled is not None:
        return signalled
    return EXIT_OK if recorded.finished.status == RunStatus.COMPLETED else EXIT_RUN_FAILED
