"""`tuner-tui`: open the app, or run headless (`--no-ui`), list runs and presets, print the report.

Exit codes: 0 completed; 1 diverged or failed; 2 bad input (one line on stderr, store untouched);
130 interrupted by Ctrl-C (the run is stored as cancelled).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence

from rich.console import Console

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
SUBCOMMANDS = ("runs", "presets", "report")


class BadInput(Exception):
    """A user error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise BadInput(message)


def _run_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tuner-tui", description="Tune small networks from a terminal.")
    parser.add_argument("--preset", metavar="NAME", help="a preset's name or a path to a preset TOML file")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key (dataset, hidden, lr, batch_size, epochs, reg, seed, "
        "conventions, engine, device); repeatable",
    )
    parser.add_argument("--data-root", metavar="DIR", help="where datasets are looked for (env TUNER_TUI_DATA)")
    parser.add_argument("--store", metavar="PATH", help="results store file (env TUNER_TUI_STORE)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--no-ui", action="store_true", help="run headless and exit")
    parser.add_argument("--json", action="store_true", help="with --no-ui: print one JSON object at the end")
    return parser


def _list_parser(command: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=f"tuner-tui {command}")
    if command != "presets":
        parser.add_argument("--store", metavar="PATH", help="results store file (env TUNER_TUI_STORE)")
    if command == "runs":
        parser.add_argument("--json", action="store_true", help="one JSON object per line")
        parser.add_argument("--limit", type=int, metavar="N", help="newest N runs")
    if command == "report":
        parser.add_argument("--format", choices=("markdown", "csv"), default="markdown")
    return parser


def resolve_config(preset: str | None, overrides: Sequence[str], *, data_root: str | None, device: str | None):
    """The run's config and the label it is stored under: a preset (or the defaults), then
    `--set` values, then the flags."""
    from engine.config import ConfigError, RunConfig
    from tuner_tui.presets import PresetError, load_preset, preset_label

    try:
        loaded = load_preset(preset) if preset else None
        base = loaded.config if loaded else RunConfig()
        values: dict[str, str] = {}
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise BadInput(f"--set {item!r}: expected KEY=VALUE")
            values[key.strip()] = value
        if data_root is not None:
            values["data_root"] = data_root
        if device is not None:
            values["device"] = device
        config = RunConfig.from_mapping(values, base=base)
        return config, preset_label(loaded.name if loaded else None, base if loaded else None, config)
    except (ConfigError, PresetError) as error:
        raise BadInput(str(error)) from None


def _open_store(path: str | None):
    from tuner_tui.store import ResultsStore, StoreError

    try:
        return ResultsStore(path)
    except StoreError as error:
        raise BadInput(str(error)) from None


def _run_headless(args: argparse.Namespace) -> int:
    from engine.config import ConfigError
    from engine.datasets import DatasetError
    from engine.events import RunStatus
    from engine.runner import prepare_run
    from tuner_tui.headless import HeadlessReporter, run_table
    from tuner_tui.session import execute_and_record

    config, label = resolve_config(args.preset, args.overrides, data_root=args.data_root, device=args.device)
    try:
        prepared = prepare_run(config)
    except (ConfigError, DatasetError) as error:
        raise BadInput(str(error)) from None
    store = _open_store(args.store)
    stderr = Console(stderr=True)
    reporter = HeadlessReporter(stderr)
    cancel = threading.Event()
    interrupted = threading.Event()

    def on_interrupt(signum, frame) -> None:
        interrupted.set()
        cancel.set()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        recorded = execute_and_record(prepared, store, reporter, cancel=cancel, preset=label)
    finally:
        reporter.stop()
        signal.signal(signal.SIGINT, previous)
    record = store.get_run(recorded.run_id)
    store.close()
    if args.json:
        print(json.dumps(record.to_json()))
    else:
        Console().print(run_table(record))
    if interrupted.is_set():
        return EXIT_INTERRUPTED
    return EXIT_OK if recorded.finished.status == RunStatus.COMPLETED else EXIT_RUN_FAILED


def _run_app(args: argparse.Namespace) -> int:
    from tuner_tui.app import TunerApp

    config, label = resolve_config(args.preset, args.overrides, data_root=args.data_root, device=args.device)
    store = _open_store(args.store)
    unedited = label if label and not label.endswith("(edited)") else None
    app = TunerApp(store=store, config=config, preset_name=unedited)
    app.run()
    store.close()
    return app.return_code or EXIT_OK


def _list_runs(args: argparse.Namespace) -> int:
    from tuner_tui.headless import runs_table

    if args.limit is not None and args.limit < 1:
        raise BadInput(f"--limit: must be a whole number ≥ 1, got {args.limit}")
    with _open_store(args.store) as store:
        records = store.list_runs(limit=args.limit)
    if args.json:
        for record in records:
            print(json.dumps(record.to_json()))
    else:
        Console().print(runs_table(records))
    return EXIT_OK


def _list_presets(args: argparse.Namespace) -> int:
    from rich import box
    from rich.table import Table

    from tuner_tui.presets import list_presets

    table = Table(title="presets", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("name", no_wrap=True)
    table.add_column("layers", no_wrap=True)
    for title in ("lr", "batch", "epochs", "λ"):
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("conv.", no_wrap=True)
    table.add_column("source", overflow="fold")
    for preset in list_presets():
        c = preset.config
        table.add_row(
            preset.name, c.layers_label, f"{c.lr:g}", str(c.batch_size), str(c.epochs), f"{c.reg:g}",
            c.conventions, "shipped" if preset.shipped else str(preset.path),
        )
    Console().print(table)
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from tuner_tui.lab_table import lab_report

    with _open_store(args.store) as store:
        records = [r for r in reversed(store.list_runs()) if r.status == "completed"]
    sys.stdout.write(lab_report(records, args.format))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tuner-tui` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            command = argv[0]
            args = _list_parser(command).parse_args(argv[1:])
            return {"runs": _list_runs, "presets": _list_presets, "report": _report}[command](args)
        args = _run_parser().parse_args(argv)
        if args.json and not args.no_ui:
            raise BadInput("--json goes with --no-ui")
        return _run_headless(args) if args.no_ui else _run_app(args)
    except BadInput as error:
        print(f"tuner-tui: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
