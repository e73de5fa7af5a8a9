"""The sweep commands: `tuner-tui sweep SPEC`, `tuner-tui sweep show NAME`, `tuner-tui sweeps`."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuner_tui.cli import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_RUN_FAILED,
    BadInput,
    open_store,
    parse_overrides,
    plain_console,
)
from tuner_tui.engine.config import ConfigError
from tuner_tui.engine.datasets import DatasetError
from tuner_tui.engine.events import RunStatus
from tuner_tui.formatting import format_seconds, plural
from tuner_tui.runs.journal import JournalError, JournalRecorder, journal_path
from tuner_tui.runs.parallel import resolve_sweep_pack, resolve_workers, run_local_workers, worker_index
from tuner_tui.runs.session import RunRecorder
from tuner_tui.runs.stop_signals import StopSignals
from tuner_tui.runs.store import default_store_path
from tuner_tui.sweeps.cluster import (
    ArrayRequest,
    ClusterError,
    batch_script,
    copy_spec,
    describe_submission,
    journal_storage_url,
    submit,
    sweep_folder,
    worker_name,
)
from tuner_tui.sweeps.scheduler import SweepEvent, TrialEnded, TrialStarted, WorkerInfo, run_sweep
from tuner_tui.sweeps.spec import SpecError, SweepSpec, list_specs, load_spec
from tuner_tui.sweeps.study import (
    StudyError,
    SweepStudy,
    default_storage_url,
    list_study_names,
    load_study,
    open_study,
)
from tuner_tui.sweeps.summary import SweepSummary, TrialRow, importances, load_summary
from tuner_tui.sweeps.workers import WorkerArgs


def store_path(args: argparse.Namespace) -> Path:
    return Path(args.store).expanduser() if args.store else default_store_path()


def storage_url(args: argparse.Namespace, name: str | None = None) -> str:
    """`--storage`; else where the results store says sweep `name` lives; else the SQLite study
    file beside the results store."""
    if getattr(args, "storage", None):
        return str(args.storage)
    if name is not None:
        registered = registered_sweeps(args)
        if name in registered:
            return registered[name][0]
    return default_storage_url(store_path(args))


def registered_sweeps(args: argparse.Namespace) -> dict[str, tuple[str, Path | None]]:
    if not store_path(args).is_file():
        return {}
    with open_store(args.store, create=False) as store:
        return store.registered_sweeps()


def sweep_command(args: argparse.Namespace) -> int:
    """`tuner-tui sweep SPEC ...` or `tuner-tui sweep show NAME`."""
    target = list(args.target)
    if target[0] == "show":
        if len(target) != 2:
            raise BadInput("sweep show: expected one sweep name: tuner-tui sweep show NAME")
        return show_command(target[1], args)
    if len(target) != 1:
        raise BadInput(f"sweep: expected one spec, got {' '.join(target)}")
    if args.slurm:
        return submit_array(target[0], args)
    if not args.no_ui:
        return open_app_on_sweep(target[0], args)
    return run_headless_sweep(target[0], args)


def open_app_on_sweep(spec_name: str, args: argparse.Namespace) -> int:
    """`sweep SPEC` without `--no-ui`: the app's sweeps screen, the sweep started there as it would be
    headless (a bad spec is refused before the app opens)."""
    from tuner_tui.app.sweep_process import SweepLaunch
    from tuner_tui.cli import run_app

    _load_spec(args, spec_name)
    options = [("--timeout", args.timeout), ("--workers", args.workers), ("--pack", args.pack)]
    launch = SweepLaunch(
        spec_name, name=args.name, trials=args.trials, overrides=tuple(args.overrides), data_root=args.data_root,
        device=args.device, storage=args.storage,
        options=tuple(item for flag, value in options if value not in (None, "auto") for item in (flag, str(value))),
    )
    return run_app(args, sweep=launch)


def _load_spec(args: argparse.Namespace, spec_name: str) -> SweepSpec:
    overrides = parse_overrides(args.overrides)
    if args.data_root is not None:
        overrides["data_root"] = args.data_root
    if args.device is not None:
        overrides["device"] = args.device
    try:
        return load_spec(spec_name, overrides=overrides)
    except SpecError as error:
        raise BadInput(*error.problems) from None


def _open(spec: SweepSpec, name: str, url: str, budget: int | None, worker_index: int = 0) -> SweepStudy:
    try:
        return open_study(spec, name, url, budget=budget, create=True, worker_index=worker_index)
    except StudyError as error:
        raise BadInput(str(error)) from None


def run_headless_sweep(spec_name: str, args: argparse.Namespace) -> int:
    spec = _load_spec(args, spec_name)
    name = args.name or spec.name
    url = storage_url(args, name)
    sweep = _open(spec, name, url, args.trials, worker_index() + 1 if args.worker else 0)
    workers = 1 if args.worker else resolve_workers(args.workers, spec.base.device)
    workers = min(workers, max(1, sweep.budget - sweep.finished_count()))
    if workers > 1:
        return _run_workers(args, sweep, workers)
    deadline = time.time() + args.timeout if args.timeout else None
    reporter = SweepReporter(Console(stderr=True), sweep.budget)
    with StopSignals() as stop, _recorder(args, name, url) as (recorder, worker):
        if not args.worker:
            reporter.header(sweep.name, sweep.finished_count())
        try:
            outcome = run_sweep(
                sweep, recorder, reporter, cancel=stop.cancel, deadline=deadline, worker=worker,
                stop_reason=stop.describe, pack=resolve_sweep_pack(args.pack, spec.base.device),
            )
        except (ConfigError, DatasetError) as error:
            raise BadInput(str(error)) from None
    for problem in outcome.store_errors[:1]:
        Console(stderr=True).print(Text(f"tuner-tui: error: a trial's run was not stored: {problem}"))
    if args.worker:
        return stop.exit_code() or (EXIT_RUN_FAILED if outcome.store_errors else EXIT_OK)
    return _finish(args, sweep, reporter, outcome.stopped_by, stop.exit_code(), bool(outcome.store_errors))


def _run_workers(args: argparse.Namespace, sweep: SweepStudy, count: int) -> int:
    """Several single-threaded worker processes share the study; this one waits and reports."""
    worker = WorkerArgs(
        spec_source=Path(sweep.spec.source), name=sweep.name, storage=sweep.storage_url, trials=sweep.budget,
        overrides=tuple(args.overrides), data_root=args.data_root, device=args.device,
        store=str(store_path(args)), timeout=args.timeout, pack=args.pack,
    )
    reporter = SweepReporter(Console(stderr=True), sweep.budget)
    reporter.header(sweep.name, sweep.finished_count())
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
def _recorder(args: argparse.Namespace, name: str, url: str) -> Iterator[tuple[RunRecorder, WorkerInfo]]:
    """Where this process records its trials' runs: the results store, or (a cluster worker) its
    own journal in the sweep's shared folder."""
    worker_label, array_task = worker_name()
    if args.journal_dir:
        try:
            journal = JournalRecorder(journal_path(Path(args.journal_dir), worker_label))
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
    """`--slurm`: create the study, write the batch script, `sbatch` it, say how to watch."""
    spec = _load_spec(args, spec_name)
    name = args.name or spec.name
    folder = sweep_folder(store_path(args), name)
    url = args.storage or journal_storage_url(folder)
    budget = args.trials or spec.search.trials
    request = ArrayRequest(
        spec_source=folder / "spec.toml", name=name, array=args.array, trials=budget, storage=url, folder=folder,
        overrides=tuple(args.overrides), data_root=args.data_root, device=args.device, partition=args.partition,
        gres=args.gres, time=args.time, sbatch_args=tuple(args.sbatch_args), pack=args.pack,
    )
    if args.dry_run:
        print(f"# would submit with: sbatch --parsable {folder / 'array.sbatch'}")
        print(batch_script(request), end="")
        return EXIT_OK
    _open(spec, name, url, budget)  # the spec and storage are checked here, before anything is submitted
    copy_spec(Path(spec.source), folder)
    try:
        job_id = submit(request)
    except ClusterError as error:
        raise BadInput(str(error)) from None
    with open_store(args.store, create=True) as store:
        store.register_sweep(name, url, request.journal_dir)
    global_args = ["--store", str(store_path(args))] if args.store else []
    print(describe_submission(job_id, request, global_args))
    return EXIT_OK


def sweep_json(summary: SweepSummary, *, store_path: str | None) -> dict[str, Any]:
    """`{"sweep", "trials", "completed", "pruned", "failed", "best": {...}}` for `--json`."""
    best = summary.best()
    best_json = None
    if best is not None:
        best_json = {
            "run_id": _run_id(best, store_path), "trial": best.number, "params": dict(best.params),
            "value": best.value,
        }
    return {
        "sweep": summary.name,
        "trials": summary.finished,
        "completed": summary.count(RunStatus.COMPLETED),
        "pruned": summary.count(RunStatus.PRUNED, RunStatus.DIVERGED),
        "failed": summary.count(RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED),
        "best": best_json,
    }


def _run_id(trial: TrialRow, store_path: str | None) -> int | None:
    if trial.run_uid is None:
        return None
    with open_store(store_path, create=False) as store:
        run = store.find_run(trial.run_uid)
    return run.id if run is not None else None


class SweepReporter:
    """One line per trial on stderr: its parameters when it starts, its outcome when it ends."""

    def __init__(self, console: Console, budget: int) -> None:
        self.console = console
        self.budget = budget
        self.started = time.monotonic()

    def __call__(self, event: SweepEvent) -> None:
        if isinstance(event, TrialStarted):
            again = f" (again, for trial {event.requeued_from})" if event.requeued_from is not None else ""
            self._print(f"trial {event.number}{again}: {params_text(event.params)}")
        elif isinstance(event, TrialEnded):
            value = f" · value {event.value:.4g}" if event.value is not None else ""
            self._print(f"trial {event.number}: {event.status.value} after {plural(event.epochs, 'epoch')}{value}")

    def header(self, name: str, finished: int) -> None:
        self._print(f"sweep {name}: {finished} of {self.budget} trials finished before this run")

    def footer(self, summary: SweepSummary, stopped_by: str) -> None:
        best = summary.best()
        best_text = f"best trial {best.number}: {best.value:.4g} ({params_text(best.params)})" if best else "no best"
        self._print(
            f"sweep {summary.name}: {summary.finished} of {summary.budget} trials finished "
            f"({stopped_by}) in {format_seconds(time.monotonic() - self.started)}; {best_text}"
        )

    def _print(self, text: str) -> None:
        self.console.print(Text(text), soft_wrap=True)


def params_text(params: Mapping[str, Any]) -> str:
    return " · ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                      for key, value in params.items())


def show_command(name: str, args: argparse.Namespace) -> int:
    """`tuner-tui sweep show NAME [--json]`: best trial, top 10, importances, workers, faults."""
    try:
        study = load_study(name, storage_url(args, name))
    except StudyError as error:
        raise BadInput(str(error)) from None
    summary = load_summary(study)
    weights = importances(study)
    if args.json:
        out = sweep_json(summary, store_path=args.store)
        out.update(
            state=summary.state, budget=summary.budget, importances=weights, waiting=summary.waiting,
            top=[_trial_json(t) for t in summary.top()],
            workers=[vars(w) for w in summary.workers],
            interrupted=[_trial_json(t) for t in summary.interruptions()],
        )
        print(json.dumps(out))
        return EXIT_OK
    console = plain_console()
    for renderable in show_renderables(summary, weights):
        console.print(renderable)
    return EXIT_OK


def _trial_json(trial: TrialRow) -> dict[str, Any]:
    return {"trial": trial.number, "status": trial.status.value, "params": dict(trial.params),
            "value": trial.value, "epochs": trial.epochs, "worker": trial.worker, "fault": trial.fault,
            "requeued_from": trial.requeued_from}


def show_renderables(summary: SweepSummary, weights: Mapping[str, float] | None) -> list[Any]:
    best = summary.best()
    head = (
        f"sweep {summary.name} ({summary.state}): {summary.finished} of {summary.budget} trials finished · "
        f"{summary.count(RunStatus.COMPLETED)} completed · {summary.count(RunStatus.PRUNED, RunStatus.DIVERGED)} "
        f"pruned · {summary.count(RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED)} failed · "
        f"objective {summary.objective} ({summary.direction})"
        + (f" · {summary.waiting} to be asked again" if summary.waiting else "")
    )
    out: list[Any] = [Text(head)]
    if best is not None:
        shown = f"best: trial {best.number}, {summary.objective} {best.value:.4g} · {params_text(best.params)}"
        out.append(Text(shown))
    top = Table(title="top trials", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    top.add_column("trial", justify="right")
    top.add_column(summary.objective, justify="right")
    names = sorted({key for t in summary.trials for key in t.params})
    for key in names:
        top.add_column(key, justify="right")
    for trial in summary.top():
        top.add_row(str(trial.number), f"{trial.value:.4g}", *(_cell(trial.params.get(key)) for key in names))
    out.append(top)
    if weights:
        table = Table(title="parameter importances (fANOVA)", title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("parameter")
        table.add_column("importance", justify="right")
        for key, weight in weights.items():
            table.add_row(Text(key), f"{weight:.3f}")
        out.append(table)
    if summary.workers:
        table = Table(title="workers", title_justify="left", box=box.SIMPLE_HEAD)
        for title in ("worker", "trials", "current trial", "state"):
            table.add_column(title)
        for worker in summary.workers:
            current = "" if worker.current_trial is None else str(worker.current_trial)
            table.add_row(Text(worker.name), str(worker.trials), current, worker.state)
        out.append(table)
    faults = summary.interruptions()
    if faults:
        table = Table(title="interrupted trials", title_justify="left", box=box.SIMPLE_HEAD)
        for title in ("trial", "status", "fault", "worker", "epochs", "asked again"):
            table.add_column(title)
        again = {t.requeued_from: t.number for t in summary.trials if t.requeued_from is not None}
        for trial in faults:
            table.add_row(
                str(trial.number), trial.status.value, Text(trial.fault or ""), Text(trial.worker or ""),
                str(trial.epochs), f"as trial {again[trial.number]}" if trial.number in again else "",
            )
        out.append(table)
    return out


def _cell(value: Any) -> Text:
    if isinstance(value, float):
        return Text(f"{value:.4g}")
    return Text("" if value is None else str(value))


def sweeps_command(args: argparse.Namespace) -> int:
    """`tuner-tui sweeps`: every sweep in the storage with its spec, progress, best and state."""
    locations = {name: url for name, (url, _) in registered_sweeps(args).items()}
    default = storage_url(args)
    try:
        if args.storage or Path(default.removeprefix("sqlite:///")).is_file():
            locations.update({name: default for name in list_study_names(default) if name not in locations})
        summaries = [load_summary(load_study(name, url)) for name, url in sorted(locations.items())]
    except StudyError as error:
        raise BadInput(str(error)) from None
    if args.json:
        for summary in summaries:
            print(json.dumps({**sweep_json(summary, store_path=None), "state": summary.state,
                              "budget": summary.budget, "spec": summary.spec_name}))
        return EXIT_OK
    table = Table(title="sweeps", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for title in ("name", "spec", "trials", "best", "state"):
        table.add_column(title, justify="right" if title in ("trials", "best") else "left")
    for summary in summaries:
        best = summary.best()
        table.add_row(
            Text(summary.name), Text(summary.spec_name or ""), f"{summary.finished}/{summary.budget}",
            f"{best.value:.4g}" if best is not None and best.value is not None else "–", summary.state,
        )
    plain_console().print(table)
    return EXIT_OK


def specs_table() -> tuple[Table, list[str]]:
    """The shipped and user sweep specs, for `tuner-tui presets`; and the unreadable ones."""
    specs, errors = list_specs()
    table = Table(title="sweep specs", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for title in ("name", "base", "searches", "sampler", "pruner", "epochs", "trials", "source"):
        table.add_column(title, overflow="fold")
    for spec in specs:
        search = spec.search
        table.add_row(
            Text(spec.name), Text(spec.base_preset or spec.base.dataset), Text(", ".join(spec.space)),
            search.sampler, search.pruner, str(search.epochs), str(search.trials),
            Text("shipped" if spec.shipped else spec.source),
        )
    return table, [problem for error in errors for problem in error.problems]
