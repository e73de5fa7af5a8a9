"""`tuner-tui --preset model.toml --no-ui`: run your own training function headless.

Its reports and log on stderr, its result on stdout (its metrics, or one JSON object with `--json`),
its exit code from how it ended: 0 completed, 1 failed (one `tuner-tui: error:` line after the
code's own traceback) or pruned, 2 bad input (a model file, a field value, code that cannot be
imported), 128 + the signal's number when stopped by one.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from tuner_tui.commands.common import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    BadInput,
    DeferredStore,
    open_store,
    parse_overrides,
    store_location,
    with_location,
)
from tuner_tui.engine.config import ConfigError
from tuner_tui.engine.events import RunStatus
from tuner_tui.formatting import printable
from tuner_tui.reports.progress import UserRunReporter
from tuner_tui.reports.run_tables import plain, user_run_table
from tuner_tui.runs.records import RunLabels
from tuner_tui.runs.stop_signals import StopSignals
from tuner_tui.usercode.config import UserRunConfig, user_config
from tuner_tui.usercode.model_file import ModelFile, ModelFileError


def model_run_config(model: ModelFile, args: argparse.Namespace, overrides: list[str]) -> UserRunConfig:
    """The model's defaults with `--set` values over them, training where `--device`/`--data-root` say."""
    where = with_location({}, data_root=args.data_root, device=args.device)
    try:
        return user_config(model, parse_overrides(overrides), where=where)
    except (ModelFileError, ConfigError) as error:
        raise BadInput(str(error)) from None


def model_label(model: ModelFile, config: UserRunConfig) -> str:
    """The name the run is stored under: the model file's, marked when a field was changed."""
    return model.name if config.fields == model.defaults() else f"{model.name} (edited)"


def run_user_headless(args: argparse.Namespace, model: ModelFile) -> int:
    """Run the model's function on its config, record it, print its result; the CLI's exit code."""
    from tuner_tui.usercode.runner import UserCodeRejected, run_user_code

    config = model_run_config(model, args, args.overrides)
    reporter = UserRunReporter(Console(stderr=True))
    if store_location(args.store).exists():
        open_store(args.store, create=True).close()  # a file that is not a store is refused before the code runs
    with StopSignals() as stop, DeferredStore(args.store) as store:
        try:
            outcome = run_user_code(
                config, store, reporter, cancel=stop.cancel, labels=RunLabels(preset=model_label(model, config)),
            )
        except UserCodeRejected as rejected:
            reporter.stop()
            if rejected.trace:  # the user's own module raised while it was imported: their traceback
                sys.stderr.write(rejected.trace)
            raise BadInput(rejected.reason) from None
        finally:
            reporter.stop()
        record = store.opened.get_run(outcome.run_id) if outcome.run_id is not None and store.opened else None
    if record is not None:
        if args.json:
            print(json.dumps(record.to_json()))
        else:
            Console().print(user_run_table(record))
    if outcome.store_error is not None:
        Console(stderr=True).print(plain(f"tuner-tui: error: the run was not stored: {outcome.store_error}"))
        return EXIT_RUN_FAILED
    if outcome.finished.status is RunStatus.FAILED:
        print(f"tuner-tui: error: {printable(outcome.finished.message)}", file=sys.stderr)
    signalled = stop.exit_code()
    if signalled is not None:
        return signalled
    return EXIT_OK if outcome.finished.status is RunStatus.COMPLETED else EXIT_RUN_FAILED
