"""The sweep commands: `tuner-tui sweep SPEC --no-ui` (and `--slurm`), `sweep show NAME`, `sweep export
NAME --sqlite PATH` (in `commands.export`), `sweeps`.

`sweep SPEC` without `--no-ui` opens the app on the sweep: the CLI decides that, with
`sweep_launch` checking the spec first, so a bad spec is refused before the app opens.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from tuner_tui.commands.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_RUN_FAILED,
    BadInput,
    open_store,
    parse_overrides,
    plain_console,
    store_location,
    warn,
    with_location,
)
from tuner_tui.commands.export import export_command
from tuner_tui.engine.config import ConfigError
from tuner_tui.engine.datasets import DatasetError
from tuner_tui.engine.events import RunStatus
from tuner_tui.formatting import printable
from tuner_tui.reports.sweeps import SweepReporter, show_renderables, sweeps_table
from tuner_tui.runs.child_commands import SweepLaunch, WorkerArgs
from tuner_tui.runs.journal import JournalError, JournalWriter, journal_path
from tuner_tui.runs.parallel import resolve_sweep_pack, resolve_workers, run_local_workers, worker_index
from tuner_tui.runs.records import RunRecord
from tuner_tui.runs.session import RunWriter
from tuner_tui.runs.stop_signals import StopSignals
from tuner_tui.sweeps.cluster import (
    ArrayRequest,
    ClusterError,
    batch_script,
    copy_spec,
    describe_submission,
    journal_storage_url,
    request_problems,
    sbatch_command,
    submit,
    sweep_folder,
    worker_name,
)
from tuner_tui.sweeps.locations import Registered, known_sweeps, storage_of
from tuner_tui.sweeps.objective_specs import objective_spec
from tuner_tui.sweeps.scheduler import WorkerInfo, run_sweep
from tuner_tui.sweeps.spec import SpecError, SweepSpec, load_spec, sweep_name_problem
from tuner_tui.sweeps.storages import StudyError, storage_problem
from tuner_tui.sweeps.study import StudyRead, SweepStudy, delete_study, list_study_names, load_study, open_study
from tuner_tui.sweeps.summary import SweepSummary, TrialRow, importances, load_summary


def sweep_command(args: argparse.Namespace) -> int:
    """`tuner-tui sweep SPEC --no-ui`, `sweep SPEC --slurm ...`, `sweep show NAME` or `sweep export NAME`."""
    target = list(args.target)
    if target and target[0] == "show":
        if len(target) != 2:
            raise BadInput("sweep show: expected one sweep name: tuner-tui sweep show NAME")
        return show_command(target[1], args)
    if target and target[0] == "export":
        if len(target) != 2 or not args.sqlite:
            raise BadInput("sweep export: expected one sweep name and a file: sweep export NAME --sqlite PATH")
        return export_command(target[1], storage_url(args, target[1]), Path(args.sqlite))
    spec_name = single_spec(args)
    if args.slurm:
        return submit_array(spec_name, args)
    return run_headless_sweep(spec_name, args)


def single_spec(args: argparse.Namespace) -> str:
    """The spec to sweep (`--objective`'s target when it sweeps an Optuna objective)."""
    if args.objective is not None:
        return str(args.objective)
    if len(args.target) != 1:
        raise BadInput(f"sweep: expected one spec, got {' '.join(args.target)}")
    return str(args.target[0])


def sweep_launch(args: argparse.Namespace) -> SweepLaunch:
    """`sweep SPEC` without `--no-ui`: the sweep the app starts, as it would run headless (a bad spec
    is refused here, before the app opens)."""
    spec_name = single_spec(args)
    sweep_name(args, _load_spec(args, spec_name))
    options = [("--timeout", args.timeout), ("--workers", args.workers), ("--pack", args.pack),
               ("--target", args.stop_target)]
    given = tuple(item for flag, value in options if value not in (None, "auto") for item in (flag, str(value)))
    return SweepLaunch(
        "" if args.objective else spec_name, name=args.name, trials=args.trials, overrides=tuple(args.overrides),
        data_root=args.data_root, device=args.device, storage=args.storage, options=given + search_options(args),
    )


def registered_sweeps(args: argparse.Namespace) -> Registered:
    """The sweeps the results store registered (none when there is no store yet)."""
    if not store_location(args.store).is_file():
        return {}
    with open_store(args.store, create=False) as store:
        return store.registered_sweeps()


def storage_url(args: argparse.Namespace, name: str) -> str:
    return storage_of(name, storage=args.storage, registered=registered_sweeps(args),
                      store_path=store_location(args.store))


def _load_spec(args: argparse.Namespace, spec_name: str) -> SweepSpec:
    overrides = with_location(parse_overrides(args.overrides), data_root=args.data_root, device=args.device)
    try:
        if args.objective is not None:
            if args.overrides:
                raise BadInput("--set goes with a spec; an objective's trials set their own values")
            return objective_spec(args.objective, name=args.name, direction=args.direction or "maximize",
                                  pruner=args.pruner or "asha", sampler=args.sampler or "tpe", trials=args.trials)
        return load_spec(spec_name, overrides=overrides)
    except SpecError as error:
        raise BadInput(*error.problems) from None


def search_options(args: argparse.Namespace) -> tuple[str, ...]:
    """An objective sweep's own options, for the command lines of its workers (none for a spec)."""
    options = [("--objective", args.objective), ("--direction", args.direction), ("--pruner", args.pruner),
               ("--sampler", args.sampler)]
    return tuple(item for flag, value in options if value is not None for item in (flag, str(value)))


def _open(
    spec: SweepSpec, name: str, url: str, budget: int | None, worker_index: int = 0, target: float | None = None
) -> SweepStudy:
    if target is not None and spec.search.multi_objective:
        raise BadInput("--target: needs one objective (several have no single best)")
    try:
        return open_study(spec, name, url, budget=budget, create=True, worker_index=worker_index, target=target)
    except StudyError as error:
        raise BadInput(str(error)) from None


def run_headless_sweep(spec_name: str, args: argparse.Namespace) -> int:
    spec = _load_spec(args, spec_name)
    name = sweep_name(args, spec)
    url = storage_url(args, name)
    sweep = _open(spec, name, url, args.trials, worker_index() + 1 if args.worker else 0, args.stop_target)
    workers = 1 if args.worker else resolve_workers(args.workers, spec.base.device)
    start = sweep.read(time.time())
    workers = min(workers, max(1, start.budget - start.finished()))
    if workers > 1:
        return _run_workers(args, sweep, start, workers)
    deadline = time.time() + args.timeout if args.timeout else None
    reporter = SweepReporter(Console(stderr=True), start.budget)
    with StopSignals() as stop, _writer(args, name, url) as (writer, worker):
        if not args.worker:
            reporter.header(sweep.name, start.finished())
        try:
            outcome = run_sweep(
                sweep, writer, reporter, cancel=stop.cancel, deadline=deadline, worker=worker,
                stop_reason=stop.describe, pack=resolve_sweep_pack(args.pack, spec.base.device),
            )
        except (ConfigError, DatasetError) as error:
            raise BadInput(str(error)) from None
        except Exception as error:  # the study's storage failed mid-sweep (disk full, its folder deleted)
            print(f"tuner-tui: error: {printable(str(storage_problem(url, error)))}; the sweep stopped",
                  file=sys.stderr)
            return stop.exit_code() or EXIT_RUN_FAILED
    for problem in outcome.store_errors[:1]:
        Console(stderr=True).print(Text(f"tuner-tui: error: a trial's run was not stored: {problem}"))
    if args.worker:
        return stop.exit_code() or (EXIT_RUN_FAILED if outcome.store_errors else EXIT_OK)
    return _finish(args, sweep, reporter, outcome.stopped_by, stop.exit_code(), bool(outcome.store_errors))


def _run_workers(args: argparse.Namespace, sweep: SweepStudy, start: StudyRead, count: int) -> int:
    """Several single-threaded worker processes share the study (as read at `start`); this one waits
    and reports."""
    worker = WorkerArgs(
        spec_source=None if args.objective else Path(sweep.spec.source), name=sweep.name,
        storage=sweep.storage_url, trials=start.budget, overrides=tuple(args.overrides), data_root=args.data_root,
        device=args.device, store=str(store_location(args.store)), timeout=args.timeout, pack=args.pack,
        search_options=search_options(args),
    )
    reporter = SweepReporter(Console(stderr=True), start.budget)
    reporter.header(sweep.name, start.finished())
    with open_store(args.store, create=True) as store:
        store.register_sweep(sweep.name, sweep.storage_url)
    with StopSignals() as stop:
        codes = run_local_workers(worker.argv(), count, stop.cancel)
    failed_store = any(code == EXIT_RUN_FAILED for code in codes)
    bad = [code for code in codes if code == EXIT_BAD_INPUT]
    if bad and len(bad) == len(codes):
        return EXIT_BAD_INPUT
    stopped_by = "signal" if stop.exit_code() is not None else "budget"
    return _finish(args, sweep, reporter, stopped_by, stop.exit_code(), failed_store)


def _finish(
    args: argparse.Namespace, sweep: SweepStudy, reporter: SweepReporter, stopped_by: str, signalled: int | None,
    store_failed: bool,
) -> int:
    """The summary line, `--json`, and the exit code of a sweep run from this terminal."""
    summary = load_summary(sweep.study)
    reporter.footer(summary, stopped_by)
    if args.json:
        print(json.dumps(sweep_json(summary, store_path=args.store)))
    if signalled is not None:
        return signalled
    if store_failed:
        return EXIT_RUN_FAILED
    ended = [t for t in summary.trials if t.status is not RunStatus.RUNNING]
    if ended and all(t.status is RunStatus.FAILED for t in ended):
        return EXIT_RUN_FAILED
    return EXIT_OK


@contextmanager
def _writer(args: argparse.Namespace, name: str, url: str) -> Iterator[tuple[RunWriter, WorkerInfo]]:
    """Where this process writes its trials' runs: the results store, or (a cluster worker) its
    own journal in the sweep's shared folder."""
    worker_label, array_task = worker_name()
    if args.journal_dir:
        try:
            journal = JournalWriter(journal_path(Path(args.journal_dir), worker_label))
        except JournalError as error:
            raise BadInput(str(error)) from None
        try:
            yield journal, WorkerInfo(worker_label, array_task)
        finally:
            journal.close()
        return
    with open_store(args.store, create=True) as store:
        if not args.worker:
            store.register_sweep(name, url)
        yield store, WorkerInfo(worker_label, array_task)


def submit_array(spec_name: str, args: argparse.Namespace) -> int:
    """`--slurm`: create the study, write the batch script, `sbatch` it, say how to watch. A
    submission that fails leaves nothing behind: no study, no spec copy, no script."""
    spec = _load_spec(args, spec_name)
    name = sweep_name(args, spec)
    folder = sweep_folder(store_location(args.store), name)
    url = args.storage or journal_storage_url(folder)
    budget = args.trials or spec.search.trials
    request = ArrayRequest(
        spec_source=None if args.objective else folder / "spec.toml", name=name, array=args.array, trials=budget,
        storage=url, folder=folder, overrides=tuple(args.overrides), data_root=args.data_root, device=args.device,
        partition=args.partition, gres=args.gres, time=args.time, sbatch_args=tuple(args.sbatch_args),
        pack=args.pack, search_options=search_options(args),
    )
    problems = request_problems(request)
    if problems:
        raise BadInput(*problems)
    if args.dry_run:
        print(f"# would submit with: sbatch --parsable {folder / 'array.sbatch'}")
        print(batch_script(request), end="")
        return EXIT_OK
    try:
        sbatch_command()
    except ClusterError as error:
        raise BadInput(str(error)) from None
    with _undone_on_failure(folder, url, name):
        # the spec and storage are checked here, before anything is submitted
        _open(spec, name, url, budget, target=args.stop_target)
        if request.spec_source is not None:  # the spec as the workers read it (an objective is its own file)
            copy_spec(Path(spec.source), folder)
        try:
            job_id = submit(request)
        except ClusterError as error:
            raise BadInput(str(error)) from None
    with open_store(args.store, create=True) as store:
        store.register_sweep(name, url, request.journal_dir)
    global_args = ["--store", str(store_location(args.store))] if args.store else []
    print(describe_submission(job_id, request, global_args))
    return EXIT_OK


@contextmanager
def _undone_on_failure(folder: Path, url: str, name: str) -> Iterator[None]:
    """Remove what a failed submission made: the sweep's folder if it made it (else the files it
    added), and the study if it created it."""
    made_folder = not folder.exists()
    existing = set(folder.iterdir()) if not made_folder else set()
    try:
        had_study = name in list_study_names(url)
    except StudyError:
        had_study = False
    try:
        yield
    except BaseException:
        if not had_study:
            delete_study(name, url)
        if made_folder:
            shutil.rmtree(folder, ignore_errors=True)
        elif folder.is_dir():
            for path in set(folder.iterdir()) - existing:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise


def sweep_name(args: argparse.Namespace, spec: SweepSpec) -> str:
    """`--name`, else the spec's; checked as spec names are (it names a folder and a SLURM job)."""
    name = args.name or spec.name
    problem = sweep_name_problem(name)
    if problem is not None:
        raise BadInput(f"--{problem}" if args.name else problem)
    return str(name)


def sweep_json(summary: SweepSummary, *, store_path: str | None) -> dict[str, Any]:
    """`{"sweep", "trials", "completed", "pruned", "failed", "cancelled", "interrupted", "best": {...}}`
    for `--json`; the best trial's run id, test accuracy and metrics come from its run in the store."""
    best = summary.best()
    best_json = None
    if best is not None:
        run = _run_of(best, store_path)
        best_json = {
            "run_id": run.id if run is not None else None, "trial": best.number, "params": dict(best.params),
            "value": best.value, "test_accuracy": _test_accuracy(run),
            "metrics": dict(run.metrics) if run is not None else {},
        }
    return {
        "sweep": summary.name,
        "trials": summary.finished,
        "completed": summary.count(RunStatus.COMPLETED),
        "pruned": summary.count(RunStatus.PRUNED, RunStatus.DIVERGED),
        "failed": summary.count(RunStatus.FAILED),
        "cancelled": summary.count(RunStatus.CANCELLED),
        "interrupted": summary.count(RunStatus.INTERRUPTED),
        "best": best_json,
    }


def _test_accuracy(run: RunRecord | None) -> float | None:
    """A run's test accuracy: the built-in column, else what a user's code reported by that name."""
    if run is None:
        return None
    return run.test_accuracy if run.test_accuracy is not None else run.metrics.get("test_accuracy")


def _run_of(trial: TrialRow, store_path: str | None) -> RunRecord | None:
    """The trial's run in the results store, if it has one there (a plain Optuna trial has none)."""
    if trial.run_uid is None or not store_location(store_path).is_file():
        return None
    with open_store(store_path, create=False) as store:
        return store.find_run(trial.run_uid)


def show_command(name: str, args: argparse.Namespace) -> int:
    """`tuner-tui sweep show NAME [--json]`: best trial, top 10, importances, workers, faults."""
    try:
        study = load_study(name, storage_url(args, name))
    except StudyError as error:
        raise BadInput(str(error)) from None
    summary = load_summary(study)
    weights = importances(study)
    best = summary.best()
    best_run = _run_of(best, args.store) if best is not None else None
    if args.json:
        out = sweep_json(summary, store_path=args.store)
        out.update(
            state=summary.state, budget=summary.budget, importances=weights, waiting=summary.waiting,
            stop_reason=summary.stop_reason,
            top=[_trial_json(t) for t in summary.top()],
            workers=[vars(w) for w in summary.workers],
            faults=[_trial_json(t) for t in summary.interruptions()],
            directions=list(summary.directions), pareto=_pareto_json(summary, args.store),
        )
        print(json.dumps(out))
        return EXIT_OK
    console = plain_console()
    for renderable in show_renderables(summary, weights, best_run):
        console.print(renderable)
    return EXIT_OK


def _pareto_json(summary: SweepSummary, store_path: str | None) -> list[dict[str, Any]]:
    """The Pareto front (the best trial, with one objective), each with its run's id when it has one."""
    front = summary.pareto()
    runs: dict[str, RunRecord | None] = {}
    if any(t.run_uid for t in front) and store_location(store_path).is_file():
        with open_store(store_path, create=False) as store:
            runs = {t.run_uid: store.find_run(t.run_uid) for t in front if t.run_uid}
    return [{"number": t.number, "values": list(t.values or ()), "params": dict(t.params),
             "run_id": getattr(runs.get(t.run_uid or ""), "id", None)} for t in front]


def _trial_json(trial: TrialRow) -> dict[str, Any]:
    return {"trial": trial.number, "status": trial.status.value, "params": dict(trial.params),
            "value": trial.value, "epochs": trial.epochs, "worker": trial.worker, "fault": trial.fault,
            "requeued_from": trial.requeued_from}


def sweeps_command(args: argparse.Namespace) -> int:
    """`tuner-tui sweeps`: every sweep in the storage with its spec, progress, best and state."""
    try:
        locations = known_sweeps(storage=args.storage, registered=registered_sweeps(args),
                                 store_path=store_location(args.store))
    except StudyError as error:
        raise BadInput(str(error)) from None
    summaries = []
    for location in locations:  # a sweep whose study cannot be read is named, and the rest listed
        try:
            summaries.append(load_summary(load_study(location.name, location.storage)))
        except StudyError as error:
            warn([f"sweep {location.name}: {error}"])
    if args.json:
        for summary in summaries:
            print(json.dumps({**sweep_json(summary, store_path=None), "state": summary.state,
                              "budget": summary.budget, "spec": summary.spec_name}))
        return EXIT_OK
    plain_console().print(sweeps_table(summaries))
    return EXIT_OK
