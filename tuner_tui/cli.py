"""`tuner-tui`: open the app, or run headless (`--no-ui`), list runs and presets, print the report.

Exit codes: 0 completed; 1 diverged or failed; 2 bad input (one line on stderr, store untouched);
128 + the signal's number when stopped by a signal (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; the run
is stored as cancelled).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from rich.console import Console

if TYPE_CHECKING:
    from tuner_tui.app.slots import LabLaunch
    from tuner_tui.app.sweep_process import SweepLaunch
    from tuner_tui.engine.config import RunConfig
    from tuner_tui.runs.store import ResultsStore, UnreadableRun

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
MAX_LIMIT = 2**31 - 1


class BadInput(Exception):
    """A user error: printed as one line per problem, exit code 2."""

    def __init__(self, *problems: str) -> None:
        super().__init__(*problems)
        self.problems = problems

    def __str__(self) -> str:
        return "; ".join(self.problems)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        raise BadInput(message)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tuner-tui")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _add_global_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    """Options that mean the same to every command; accepted before or after the command."""
    group = parser.add_argument_group("global options")
    group.add_argument("--store", metavar="PATH", default=default, help="results store file (env TUNER_TUI_STORE)")
    group.add_argument(
        "--data-root", metavar="DIR", default=default, help="where datasets are looked for (env TUNER_TUI_DATA)"
    )
    group.add_argument("--device", default=default, help="auto | cpu | cuda | cuda:N")
    group.add_argument(
        "--storage", metavar="URL", default=default,
        help="Optuna storage of sweeps: journal:PATH, sqlite:///PATH or postgresql://... "
        "(default: an SQLite file beside the results store)",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", metavar="NAME", help="a preset's name or a path to a preset TOML file")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key (dataset, hidden, lr, batch_size, epochs, reg, seed, "
        "conventions, engine, device); repeatable",
    )
    parser.add_argument("--no-ui", action="store_true", help="run headless and exit")
    parser.add_argument("--json", action="store_true", help="with --no-ui: print one JSON object at the end")
    parser.add_argument("--force", action="store_true", help="start even when the memory estimate does not fit")


def _auto_or_count(text: str) -> int | str:
    return text if text == "auto" else _positive_int(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number in [1, {MAX_LIMIT}], got {text}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be a whole number in [1, {MAX_LIMIT}], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: run options at the top, one subparser per command."""
    parser = _Parser(
        prog="tuner-tui",
        description="Tune small networks from a terminal. Without a command: open the app (or run headless "
        "with --no-ui).",
    )
    parser.add_argument("--version", action="version", version=f"tuner-tui {_version()}")
    _add_run_options(parser)
    _add_global_options(parser, default=None)
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _add_global_options(sub, default=argparse.SUPPRESS)
        return sub

    runs = command("runs", "list stored runs")
    runs.add_argument("--json", action="store_true", help="one JSON object per line")
    runs.add_argument("--limit", type=_positive_int, metavar="N", help="newest N runs")
    command("presets", "list shipped and user presets and sweep specs")
    sweep = command("sweep", "run a sweep (Optuna search with pruning), or `sweep show NAME`")
    sweep.add_argument("target", nargs="+", metavar="SPEC", help="a spec's name or TOML path; or: show NAME")
    sweep.add_argument("--name", help="the sweep's name (default: the spec's)")
    sweep.add_argument("--trials", type=_positive_int, metavar="N", help="the study's total budget of finished trials")
    sweep.add_argument("--timeout", type=_positive_int, metavar="S", help="ask no new trial after S seconds")
    sweep.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a field of the spec's base config; repeatable",
    )
    sweep.add_argument("--no-ui", action="store_true", help="run headless and exit")
    sweep.add_argument("--json", action="store_true", help="print one JSON object at the end (or for show)")
    sweep.add_argument(
        "--workers", type=_auto_or_count, default="auto", metavar="N|auto",
        help="worker processes sharing the study (auto: one per CPU core on a CPU, one on a GPU)",
    )
    sweep.add_argument(
        "--pack", type=_auto_or_count, default="auto", metavar="K|auto",
        help="trials trained together as one pack in each worker (auto: one at a time on a CPU, packs on a GPU)",
    )
    cluster = sweep.add_argument_group("on a SLURM cluster")
    cluster.add_argument("--slurm", action="store_true", help="submit the sweep as a SLURM job array and return")
    cluster.add_argument("--array", type=_positive_int, metavar="N", help="array tasks (workers) to submit")
    cluster.add_argument("--partition", metavar="P")
    cluster.add_argument("--gres", metavar="GRES", help="e.g. gpu:1")
    cluster.add_argument("--time", metavar="T", help="each task's time limit, e.g. 2:00:00")
    cluster.add_argument("--sbatch-arg", dest="sbatch_args", action="append", default=[], metavar="ARG",
                         help="one more sbatch option, e.g. --sbatch-arg=--requeue; repeatable")
    cluster.add_argument("--dry-run", action="store_true", help="print what would be submitted, submit nothing")
    sweep.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # an array task
    sweep.add_argument("--journal-dir", help=argparse.SUPPRESS)  # where a worker journals its runs
    lab = command("lab", "run the lab's experiments together (packs and workers) and print its tables")
    lab.add_argument("which", nargs="?", choices=("fmnist", "cifar10", "all"), default="all")
    lab.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a field of every experiment (e.g. epochs=1); repeatable")
    lab.add_argument("--no-ui", action="store_true", help="run headless (the app: mark presets in it and press F5)")
    lab.add_argument("--json", action="store_true", help="one JSON object per experiment, as a run's --json")
    lab.add_argument("--workers", type=_auto_or_count, default="auto", metavar="N|auto",
                     help="worker processes (auto: one per CPU core on a CPU, one on a GPU)")
    lab.add_argument("--pack", type=_auto_or_count, default="auto", metavar="K|auto",
                     help="experiments trained together as one pack (auto: the measured best for the device)")
    lab.add_argument("--force", action="store_true", help="start even when a memory estimate does not fit")
    lab.add_argument("--plan", help=argparse.SUPPRESS)  # a lab worker's plan
    sweeps = command("sweeps", "list sweeps: name, spec, trials done/budget, best value, state")
    sweeps.add_argument("--json", action="store_true", help="one JSON object per line")
    report = command("report", "the lab report's tables from stored runs")
    report.add_argument(
        "--format", choices=("markdown", "csv"), default="markdown",
        help="markdown: the lab's two tables; csv: one table of raw numbers",
    )
    return parser


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """Parse `argv`; BadInput (one line) for anything argparse refuses or run options given to a command."""
    args = build_parser().parse_args(argv)
    if args.command is not None:
        run_only: list[tuple[str, object]] = [("--preset", args.preset)]
        if args.command not in ("sweep", "lab"):  # these have their own --set, --no-ui and --force
            run_only += [("--set", args.overrides), ("--no-ui", args.no_ui), ("--force", args.force)]
        given = [flag for flag, value in run_only if value]
        if given:
            raise BadInput(f"{given[0]} goes with a run, not with the {args.command} command")
    elif args.json and not args.no_ui:
        raise BadInput("--json goes with --no-ui")
    if args.command == "sweep":
        _check_sweep_options(args)
    return args


def _check_sweep_options(args: argparse.Namespace) -> None:
    cluster_given = [flag for flag, value in (
        ("--array", args.array), ("--partition", args.partition), ("--gres", args.gres), ("--time", args.time),
        ("--sbatch-arg", args.sbatch_args), ("--dry-run", args.dry_run),
    ) if value]
    if args.slurm:
        if args.array is None:
            raise BadInput("--slurm needs --array N (how many array tasks to submit)")
        if args.worker or args.no_ui or args.json:
            raise BadInput("--slurm submits and returns: it takes neither --no-ui nor --json")
    elif cluster_given:
        raise BadInput(f"{cluster_given[0]} goes with --slurm")
    if args.worker and not args.no_ui:
        raise BadInput("--worker is for a sweep's worker processes (with --no-ui)")
    if args.json and not args.no_ui and args.target[0] != "show":
        raise BadInput("--json goes with --no-ui")


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """`--set KEY=VALUE` items as a mapping (the values are parsed by the config's own rules)."""
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise BadInput(f"--set {item}: expected KEY=VALUE")
        values[key.strip()] = value
    return values


def resolve_config(
    preset: str | None, overrides: Sequence[str], *, data_root: str | None, device: str | None
) -> tuple[RunConfig, str | None]:
    """The run's config and the label it is stored under: a preset (or the defaults), then
    `--set` values, then the flags."""
    from tuner_tui.engine.config import ConfigError, RunConfig
    from tuner_tui.runs.presets import PresetError, load_preset, preset_label

    try:
        loaded = load_preset(preset) if preset else None
        base = loaded.config if loaded else RunConfig()
        values = parse_overrides(overrides)
        if data_root is not None:
            values["data_root"] = data_root
        if device is not None:
            values["device"] = device
        config = RunConfig.from_mapping(values, base=base)
        return config, preset_label(loaded.name if loaded else None, base if loaded else None, config)
    except (ConfigError, PresetError) as error:
        raise BadInput(str(error)) from None


def open_store(path: str | None, *, create: bool) -> ResultsStore:
    """The results store for writing (`create`: made if absent) or reading (must exist; what cluster
    workers journaled since the last read is imported first, where the store can be written)."""
    from tuner_tui.runs.store import ResultsStore, StoreError, import_pending_journals

    try:
        if create:
            return ResultsStore(path)
        import_pending_journals(path)
        return ResultsStore.open_existing(path)
    except StoreError as error:
        raise BadInput(str(error)) from None


def _run(args: argparse.Namespace) -> int:
    if args.no_ui:
        from tuner_tui.headless import run_headless

        return run_headless(args)
    return run_app(args)


def run_app(args: argparse.Namespace, *, sweep: SweepLaunch | None = None, lab: LabLaunch | None = None) -> int:
    """Open the app with the run options' config (a command's own `--set` values are not a run's);
    with `sweep`, on the sweeps screen with that sweep started; with `lab`, on the presets screen."""
    from tuner_tui.app.app import TunerApp

    overrides = [] if args.command else args.overrides
    config, label = resolve_config(args.preset, overrides, data_root=args.data_root, device=args.device)
    store = open_store(args.store, create=True)
    unedited = label if label and not label.endswith("(edited)") else None
    app = TunerApp(store=store, config=config, preset_name=unedited, sweep=sweep, storage=args.storage, lab=lab)
    app.run()
    store.close()
    return app.return_code or EXIT_OK


def plain_console() -> Console:
    """stdout: as wide as the terminal, or as wide as the text when piped (never cut at 80)."""
    console = Console()
    return console if console.is_terminal else Console(width=100_000)


def _list_runs(args: argparse.Namespace) -> int:
    from tuner_tui.headless import runs_table

    with open_store(args.store, create=False) as store:
        records = store.list_runs(limit=args.limit)
        unreadable = store.list_unreadable()
    if args.json:
        for record in records:
            print(json.dumps(record.to_json()))
        _warn_unreadable(unreadable)
    else:
        plain_console().print(runs_table(records, unreadable))
    return EXIT_OK


def _warn_unreadable(unreadable: Sequence[UnreadableRun]) -> None:
    """A `tuner-tui: warning:` line on stderr per stored run this version cannot read."""
    from tuner_tui.runs.lab_table import unreadable_note

    for run in unreadable:
        print(f"tuner-tui: warning: {unreadable_note(run)}", file=sys.stderr)


def _list_presets(args: argparse.Namespace) -> int:
    from tuner_tui.headless import presets_table
    from tuner_tui.runs.presets import list_presets, preset_errors
    from tuner_tui.sweeps.commands import specs_table

    console = plain_console()
    console.print(presets_table(list_presets()))
    specs, spec_problems = specs_table()
    console.print(specs)
    for problem in [str(error) for error in preset_errors()] + spec_problems:
        console.print(f"skipped: {problem}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from tuner_tui.runs.lab_table import lab_report

    with open_store(args.store, create=False) as store:
        records = [r for r in reversed(store.list_runs()) if r.status == "completed"]
        unreadable = store.list_unreadable()
    sys.stdout.write(lab_report(records, args.format, unreadable))
    if args.format == "csv":  # the CSV stays one table; where its missing runs are goes apart
        _warn_unreadable(unreadable)
    return EXIT_OK


def _sweep(args: argparse.Namespace) -> int:
    from tuner_tui.sweeps.commands import sweep_command

    return sweep_command(args)


def _lab(args: argparse.Namespace) -> int:
    from tuner_tui.runs.lab import lab_command, lab_presets

    if args.no_ui:
        return lab_command(args)
    from tuner_tui.app.slots import LabLaunch  # without --no-ui: the app, the lab's presets marked
    from tuner_tui.engine.config import ConfigError, RunConfig

    where = [f"{key}={value}" for key, value in (("data_root", args.data_root), ("device", args.device)) if value]
    overrides = [*args.overrides, *where]
    presets = lab_presets(args.which)
    try:
        for preset in presets:
            RunConfig.from_mapping(parse_overrides(overrides), base=preset.config)
    except ConfigError as error:
        raise BadInput(str(error)) from None
    workers = args.workers if args.workers != "auto" else None
    marked = tuple(preset.name for preset in presets)
    return run_app(args, lab=LabLaunch(marked, tuple(overrides), workers, args.force))


def _sweeps(args: argparse.Namespace) -> int:
    from tuner_tui.sweeps.commands import sweeps_command

    return sweeps_command(args)


COMMANDS: dict[str | None, Callable[[argparse.Namespace], int]] = {
    None: _run,
    "runs": _list_runs,
    "presets": _list_presets,
    "report": _report,
    "sweep": _sweep,
    "sweeps": _sweeps,
    "lab": _lab,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tuner-tui` console script and `python -m tuner_tui`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_arguments(argv)
        return COMMANDS[args.command](args)
    except BadInput as error:
        from tuner_tui.formatting import printable

        for problem in error.problems:
            print(f"tuner-tui: error: {printable(problem)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # Ctrl-C before a run installed its own handler: nothing was stored
        print("tuner-tui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # `python -m tuner_tui.cli`: run the package's copy, so its classes are the ones raised
    from tuner_tui.cli import main as package_main

    sys.exit(package_main())
