"""`tuner-tui`: parse the command line and hand it to a command (`tuner_tui.commands`) or the app.

Only this module decides between the app and a headless command; the commands below it never
import the app. Exit codes are in `tuner_tui.commands.common`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from tuner_tui.commands.common import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    BadInput,
    model_named,
    open_store,
    parse_overrides,
    resolve_config,
    with_location,
)

if TYPE_CHECKING:
    from tuner_tui.app.slots import LabLaunch
    from tuner_tui.runs.child_commands import SweepLaunch

MAX_LIMIT = 2**31 - 1


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


def _whole_number(text: str, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number in [1, {high}], got {text}") from None
    if not 1 <= value <= high:
        raise argparse.ArgumentTypeError(f"must be a whole number in [1, {high}], got {text}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, MAX_LIMIT)


def _trials(text: str) -> int:
    """`--trials`: within the limit a spec's own `trials` has."""
    from tuner_tui.sweeps.spec import MAX_TRIALS

    return _whole_number(text, MAX_TRIALS)


def _finite_number(text: str) -> float:
    """`--target`: any finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
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
    sweep = command("sweep", "run a sweep (Optuna search with pruning), or `sweep show NAME`, `sweep export NAME`")
    sweep.add_argument("target", nargs="*", metavar="SPEC",
                       help="a spec's name or TOML path; or: show NAME; or: export NAME --sqlite PATH")
    sweep.add_argument("--objective", metavar="FILE.py:FUNCTION",
                       help="a plain Optuna objective to sweep instead of a spec (needs --name)")
    sweep.add_argument("--direction", choices=("maximize", "minimize"), help="with --objective: which way is better")
    sweep.add_argument("--pruner", choices=("asha", "median", "hyperband", "none"), help="with --objective")
    sweep.add_argument("--sampler", choices=("tpe", "random", "gp", "cmaes"), help="with --objective")
    sweep.add_argument("--name", help="the sweep's name (default: the spec's)")
    sweep.add_argument("--trials", type=_trials, metavar="N", help="the study's total budget of finished trials")
    sweep.add_argument("--timeout", type=_positive_int, metavar="S", help="ask no new trial after S seconds")
    sweep.add_argument("--target", dest="stop_target", type=_finite_number, metavar="VALUE",
                       help="ask no new trial once the best objective reaches VALUE (kept with the study)")
    sweep.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a field of the spec's base config; repeatable",
    )
    sweep.add_argument("--no-ui", action="store_true", help="run headless and exit")
    sweep.add_argument("--json", action="store_true", help="print one JSON object at the end (or for show)")
    sweep.add_argument("--sqlite", metavar="PATH", help="with export: the SQLite file to copy the study into")
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
    watch = command("watch", "read any Optuna study in the terminal (SQLite, journal or PostgreSQL), read-only")
    watch.add_argument("storage_arg", metavar="STORAGE",
                       help="sqlite:///PATH, journal:PATH (or a journal file's path) or postgresql://...")
    watch.add_argument("--study", metavar="NAME", help="the study to open (default: pick from a list)")
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
    show = bool(args.target) and args.target[0] == "show"
    if args.sqlite and not (args.target and args.target[0] == "export"):
        raise BadInput("--sqlite goes with `sweep export NAME`")
    if args.objective is not None and args.target:
        raise BadInput(f"sweep: --objective replaces the spec; got {' '.join(args.target)} too")
    if args.objective is None and not args.target:
        raise BadInput("sweep: expected a spec (or --objective FILE.py:FUNCTION), or: show NAME")
    search_given = [flag for flag, value in (("--direction", args.direction), ("--pruner", args.pruner),
                                             ("--sampler", args.sampler)) if value]
    if search_given and args.objective is None:
        raise BadInput(f"{search_given[0]} goes with --objective (a spec has its own [search])")
    if args.json and not args.no_ui and not show:
        raise BadInput("--json goes with --no-ui")


def _run(args: argparse.Namespace) -> int:
    if args.no_ui:
        from tuner_tui.commands.run import run_headless

        return run_headless(args)
    return run_app(args)


def run_app(args: argparse.Namespace, *, sweep: SweepLaunch | None = None, lab: LabLaunch | None = None) -> int:
    """Open the app with the run options' config (a command's own `--set` values are not a run's);
    with `sweep`, on the sweeps screen with that sweep started; with `lab`, on the presets screen."""
    from tuner_tui.app.app import TunerApp
    from tuner_tui.runs.presets import load_preset

    overrides = [] if args.command else args.overrides
    model = model_named(args.preset) if args.preset else None
    if model is not None:
        from tuner_tui.commands.user_run import model_run_config

        model_config = model_run_config(model, args, overrides)
        with open_store(args.store, create=True) as store:
            app = TunerApp(store=store, model=model, model_config=model_config, storage=args.storage)
            app.run()
        return app.return_code or EXIT_OK
    config, _ = resolve_config(args.preset, overrides, data_root=args.data_root, device=args.device)
    preset = load_preset(args.preset) if args.preset else None  # read fine just above
    store = open_store(args.store, create=True)
    app = TunerApp(
        store=store, config=config, preset_name=preset.name if preset else None,
        preset_config=preset.config if preset else None, sweep=sweep, storage=args.storage, lab=lab,
    )
    app.run()
    store.close()
    return app.return_code or EXIT_OK


def _list_runs(args: argparse.Namespace) -> int:
    from tuner_tui.commands.listing import list_runs

    return list_runs(args)


def _list_presets(args: argparse.Namespace) -> int:
    from tuner_tui.commands.listing import list_presets

    return list_presets(args)


def _report(args: argparse.Namespace) -> int:
    from tuner_tui.commands.listing import report

    return report(args)


def _sweep(args: argparse.Namespace) -> int:
    """`sweep show`, `--slurm` and `--no-ui` are commands; otherwise the app opens on the sweep."""
    from tuner_tui.commands.sweep import sweep_command, sweep_launch

    if (args.target and args.target[0] in ("show", "export")) or args.slurm or args.no_ui:
        return sweep_command(args)
    return run_app(args, sweep=sweep_launch(args))


def _lab(args: argparse.Namespace) -> int:
    """`lab --no-ui` is a command; otherwise the app opens with the lab's presets marked."""
    if args.no_ui:
        from tuner_tui.commands.lab import lab_command

        return lab_command(args)
    from tuner_tui.app.slots import LabLaunch
    from tuner_tui.engine.config import ConfigError, RunConfig
    from tuner_tui.runs.lab_plan import lab_presets

    values = with_location(parse_overrides(args.overrides), data_root=args.data_root, device=args.device)
    presets = lab_presets(args.which)
    try:
        for preset in presets:
            RunConfig.from_mapping(values, base=preset.config)
    except ConfigError as error:
        raise BadInput(str(error)) from None
    workers = args.workers if args.workers != "auto" else None
    marked = tuple(preset.name for preset in presets)
    overrides = tuple(f"{key}={value}" for key, value in values.items())
    return run_app(args, lab=LabLaunch(marked, overrides, workers, args.force))


def _sweeps(args: argparse.Namespace) -> int:
    from tuner_tui.commands.sweep import sweeps_command

    return sweeps_command(args)


def _watch(args: argparse.Namespace) -> int:
    """`watch STORAGE`: checked below the CLI, then the watch app opens (the CLI decides on the app)."""
    from tuner_tui.app.watch_app import WatchApp
    from tuner_tui.commands.watch import watch_target

    url, study = watch_target(args)
    app = WatchApp(url, study)
    app.run()
    return app.return_code or EXIT_OK


def _never_fail_to_encode() -> None:
    """A terminal or pipe that cannot encode a character (`PYTHONIOENCODING=ascii`, a C locale)
    shows it escaped, instead of the command dying with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and (getattr(stream, "encoding", "") or "").lower().replace("-", "") != "utf8":
            reconfigure(errors="backslashreplace")


COMMANDS: dict[str | None, Callable[[argparse.Namespace], int]] = {
    None: _run,
    "runs": _list_runs,
    "presets": _list_presets,
    "report": _report,
    "sweep": _sweep,
    "sweeps": _sweeps,
    "lab": _lab,
    "watch": _watch,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tuner-tui` console script and `python -m tuner_tui`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _never_fail_to_encode()
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


if __name__ == "__main__":  # `python -m tuner_tui.cli`, the same as `python -m tuner_tui`
    sys.exit(main())
