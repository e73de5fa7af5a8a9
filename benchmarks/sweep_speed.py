"""Sweep speed: `fmnist_search` for a fixed wall time, one way of running trials against another.

    benchmarks/sweep_speed.py [--seconds S] [--modes solo,workers,packed] [--reports 1,4] [--seeds 0,1,2]
        [--before DIR] [--sections fixed,hundred,seed,seed-before] [--hundred N] [--seed-trials N] [--spec NAME]

Every sweep is `python -m tuner_tui sweep SPEC --no-ui --store TMP/runs.sqlite3 ...` from a fresh
store and study (the study file beside the store), on the real Fashion-MNIST (`--data-root`, passed
as `TUNER_TUI_DATA`), in a child whose `tuner_tui` is this checkout's or, with `--before DIR`, that
of an older checkout (a `git worktree` folder, run with this interpreter and `PYTHONPATH=DIR`).

Sections:
- `fixed`: each mode runs for S seconds of wall time (stopped with SIGTERM, as a user's Ctrl-C or
  scancel would; the trials cut short are not counted): finished trials per minute, the best
  validation accuracy reached, that trial's test accuracy and when it was reached, and the
  per-trial overhead. The current code runs once per `--reports` value (`[search]
  reports_per_epoch`, written into a copy of the spec); the before code runs its spec as it is.
  With `--seeds`, every variant runs once per seed (`[search] seed` in the copy) and a summary
  gives each variant's mean over the seeds and, per seed, its best validation accuracy against
  the before code's (else the first variant's): one sweep's best is one draw of the search.
- `hundred`: 100 trials (`--hundred`) with a worker per core, to the end: the wall time.
- `seed`: the current code twice with `--workers 1` and the same seed, `--seed-trials` trials
  each: whether the studies asked the same parameters and got the same values.
- `seed-before` (with `--before`): the same for the before code against the current code at one
  report an epoch (which is what the before code did).

Per-trial overhead, from the results store: for each finished run (completed or pruned), its wall
time (`finished_at - started_at`) less its `train_time_s` (the epochs' step loops), plus the gap
from its end to the start of the next run in the same worker process (`pid`); runs with no next
run are left out. Medians and 90th percentiles. Packed modes have no such gap (runs overlap).

Modes: `solo` is one worker (torch's default threads); `workers` is `--workers auto` (one
single-threaded worker per core); `packed` adds `--pack auto` (trials that share a batch size train
as one pack in each worker). The machine is shared: ratios are against the before code (or the
first row) measured in the same invocation, and the load average is printed at start and end.
No timing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
FINISHED = ("completed", "pruned")

MODES = {
    "solo": ["--workers", "1"],
    "workers": ["--workers", "auto"],
    "packed": ["--workers", "auto", "--pack", "auto"],
}


@dataclass(frozen=True)
class Code:
    """A checkout whose `tuner_tui` a sweep runs."""

    label: str
    root: Path

    def env(self, data_root: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.root), "PYTHONSAFEPATH": "1", "TUNER_TUI_DATA": data_root}


@dataclass(frozen=True)
class Variant:
    """One way of running the sweep: which code, which mode, and the spec's reports an epoch."""

    code: Code
    mode: str
    reports: int | None  # None: the spec as it is
    seed: int | None = None  # None: the spec's

    @property
    def kind(self) -> str:
        """The variant without its seed."""
        return f"{self.code.label} {self.mode}" + ("" if self.reports is None else f" r{self.reports}")

    @property
    def name(self) -> str:
        return self.kind + ("" if self.seed is None else f" s{self.seed}")


@dataclass
class Overhead:
    inside: list[float] = field(default_factory=list)  # a run's wall time less its training time
    gap: list[float] = field(default_factory=list)  # its end to the next run's start, same worker
    total: list[float] = field(default_factory=list)  # the two together
    train: list[float] = field(default_factory=list)  # training time of the same runs


@dataclass
class Result:
    variant: Variant
    seconds: float
    finished: int
    best_value: float | None
    best_test_accuracy: float | None
    best_reached_s: float | None
    overhead: Overhead
    params: list[dict[str, object]]  # the trials' parameters, by trial number
    values: list[float | None]

    @property
    def per_minute(self) -> float:
        return 60.0 * self.finished / self.seconds


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def spec_source(spec: str, root: Path) -> Path:
    path = Path(spec)
    return path if path.suffix == ".toml" else root / "presets" / "sweeps" / f"{spec}.toml"


def spec_copy(source: Path, folder: Path, reports: int | None, seed: int | None) -> Path:
    """The spec under its own name in `folder`, with `[search] reports_per_epoch` and `seed` set when given."""
    text = source.read_text()
    for key, value in (("reports_per_epoch", reports), ("seed", seed)):
        if value is not None:
            text = re.sub(rf"(?m)^{key}\s*=.*\n", "", text)
            text = re.sub(r"(?m)^\[search\]\s*\n", f"[search]\n{key} = {value}\n", text, count=1)
    target = folder / source.name
    target.write_text(text)
    return target


def run_sweep(
    variant: Variant, spec: str, data_root: str, *, seconds: float | None, trials: int, extra: list[str],
) -> Result:
    """Run one sweep from a fresh store: for `seconds` (then SIGTERM), or to the end of `trials`."""
    with tempfile.TemporaryDirectory(prefix="sweep-speed-") as name:
        folder = Path(name)
        spec_path = spec_copy(spec_source(spec, variant.code.root), folder, variant.reports, variant.seed)
        store = folder / "runs.sqlite3"
        command = [sys.executable, "-P", "-m", "tuner_tui", "sweep", str(spec_path), "--no-ui", "--store", str(store),
                   "--trials", str(trials), *MODES[variant.mode], *extra]
        started = time.time()
        process = subprocess.Popen(command, env=variant.code.env(data_root), cwd=folder, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        try:
            _, errors = process.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=300)
        finally:
            if process.poll() is None:  # this benchmark is stopping: leave no sweep behind
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
        elapsed = time.time() - started
        if seconds is None and process.returncode != 0:
            raise SystemExit(f"{variant.name}: exit {process.returncode}\n{errors[-2000:]}")
        return _read_result(variant, store, started, elapsed)


def _read_result(variant: Variant, store: Path, started: float, elapsed: float) -> Result:
    import optuna  # only here: the children import their own

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{store.with_name(store.stem + '.optuna.sqlite3')}"
    (study_name,) = optuna.get_all_study_names(storage)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    finished = sum(t.state in states for t in trials)
    complete = [t for t in trials if t.state is optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None

    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    rows = conn.execute(
        "SELECT trial, status, pid, started_at, finished_at, train_time_s, test_accuracy FROM runs ORDER BY started_at"
    ).fetchall()
    conn.close()
    best_row = next((r for r in rows if best is not None and r["trial"] == best.number), None)
    reached = best_row["finished_at"] - started if best_row is not None and best_row["finished_at"] else None
    return Result(
        variant, elapsed, finished, best.value if best else None,
        best_row["test_accuracy"] if best_row is not None else None, reached,
        Overhead() if variant.mode == "packed" else per_trial_overhead(rows),
        [dict(t.params) for t in trials], [t.value for t in trials],
    )


def per_trial_overhead(rows: list[sqlite3.Row]) -> Overhead:
    """Each finished run's wall time less its training time, plus the gap to the worker's next run."""
    by_worker: dict[int, list[sqlite3.Row]] = defaultdict(list)
    for row in rows:
        by_worker[row["pid"]].append(row)
    overhead = Overhead()
    for runs in by_worker.values():
        runs.sort(key=lambda r: r["started_at"])
        for run, following in itertools.pairwise(runs):
            if run["status"] not in FINISHED or run["finished_at"] is None or run["train_time_s"] is None:
                continue
            inside = run["finished_at"] - run["started_at"] - run["train_time_s"]
            gap = following["started_at"] - run["finished_at"]
            overhead.inside.append(inside)
            overhead.gap.append(gap)
            overhead.total.append(inside + gap)
            overhead.train.append(run["train_time_s"])
    return overhead


def median_p90(values: list[float]) -> str:
    if not values:
        return "–"
    p90 = statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]
    return f"{statistics.median(values):.3f} / {p90:.3f}"


def print_fixed(results: list[Result], seconds: float) -> None:
    print(f"\nfixed wall time: {seconds:.0f} s per variant; ratios against the before code in the same mode "
          "(else the first row)")
    print(f"{'variant':<18} {'trials':>6} {'per min':>8} {'ratio':>6} {'best val':>9} {'its test':>9} "
          f"{'reached':>8} {'overhead s med/p90':>19} {'in run':>14} {'gap':>14} {'share':>6}")
    for r in results:
        base = baseline(r, results)
        ratio = r.per_minute / base.per_minute if base.per_minute else float("nan")
        best = f"{r.best_value:.2f} %" if r.best_value is not None else "–"
        test = f"{r.best_test_accuracy:.2f} %" if r.best_test_accuracy is not None else "–"
        reached = f"{r.best_reached_s:.0f} s" if r.best_reached_s is not None else "–"
        o = r.overhead
        spent = sum(o.total) + sum(o.train)
        share = f"{100 * sum(o.total) / spent:.0f} %" if spent else "–"
        print(f"{r.variant.name:<18} {r.finished:>6} {r.per_minute:>8.2f} {ratio:>6.2f} {best:>9} {test:>9} "
              f"{reached:>8} {median_p90(o.total):>19} {median_p90(o.inside):>14} {median_p90(o.gap):>14} {share:>6}")
    print("(overhead: per finished run with a next run in its worker, seconds; in run = wall - train_time_s; "
          "gap = to the next run's start; share = overhead / (overhead + training))")


def baseline(result: Result, results: list[Result]) -> Result:
    """The before code's result in the same mode and seed, else the first result."""
    return next((b for b in results if b.variant.mode == result.variant.mode and b.variant.seed == result.variant.seed
                 and b.variant.code.label == "before"), results[0])


def print_seeds(results: list[Result]) -> None:
    """Each variant over its seeds: mean trials a minute, mean best validation accuracy, and the
    best's difference from the baseline's per seed."""
    print("\nover the seeds: means, and each seed's best val against the before code in the same mode "
          "(else the first row) in percentage points")
    print(f"{'variant':<18} {'seeds':>5} {'per min':>8} {'ratio':>6} {'best val':>9} {'min':>7} {'max':>7} "
          f"{'diff pp each seed':>26} {'mean':>6}")
    kinds = dict.fromkeys(r.variant.kind for r in results)
    for kind in kinds:
        mine = [r for r in results if r.variant.kind == kind and r.best_value is not None]
        if not mine:
            continue
        bases = [baseline(r, results) for r in mine]
        ratio = statistics.mean(r.per_minute for r in mine) / statistics.mean(b.per_minute for b in bases)
        best = [r.best_value for r in mine]
        diffs = [r.best_value - b.best_value for r, b in zip(mine, bases, strict=True) if b.best_value is not None]
        each = " ".join(f"{d:+.2f}" for d in diffs)
        mean = f"{statistics.mean(diffs):+.2f}" if diffs else "–"
        print(f"{kind:<18} {len(mine):>5} {statistics.mean(r.per_minute for r in mine):>8.2f} {ratio:>6.2f} "
              f"{statistics.mean(best):>7.2f} % {min(best):>7.2f} {max(best):>7.2f} {each:>26} {mean:>6}")


def print_hundred(results: list[Result], trials: int) -> None:
    print(f"\n{trials} trials to the end, a worker per core; ratio against the first row")
    print(f"{'code':<10} {'wall s':>7} {'ratio':>6} {'finished':>8} {'best val':>9} {'overhead s med/p90':>19}")
    for r in results:
        ratio = r.seconds / results[0].seconds
        best = f"{r.best_value:.2f} %" if r.best_value is not None else "–"
        print(f"{r.variant.code.label:<10} {r.seconds:>7.1f} {ratio:>6.2f} {r.finished:>8} {best:>9} "
              f"{median_p90(r.overhead.total):>19}")


def same_trials(a: Result, b: Result) -> str:
    """How many of the first trials two studies asked alike (parameters; and values)."""
    n = min(len(a.params), len(b.params))
    same = next((i for i in range(n) if a.params[i] != b.params[i]), n)
    values = next((i for i in range(n) if a.values[i] != b.values[i]), n)
    return f"first {same} of {n} trials ask the same parameters; first {values} have the same value"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="wall time per variant of `fixed`")
    parser.add_argument("--modes", default="solo,workers", help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--reports", default="1,4", help="the current code's [search] reports_per_epoch values")
    parser.add_argument("--seeds", default="", help="comma-separated [search] seeds for `fixed` (default: the spec's)")
    parser.add_argument("--before", type=Path, help="an older checkout to measure against (a git worktree)")
    parser.add_argument("--sections", default="fixed,hundred,seed,seed-before", help="comma-separated")
    parser.add_argument("--hundred", type=int, default=100, help="trials of the `hundred` section")
    parser.add_argument("--seed-trials", type=int, default=16, help="trials of each `seed` run")
    parser.add_argument("--spec", default="fmnist_search")
    parser.add_argument("--data-root", default=os.environ.get("TUNER_TUI_DATA", DEFAULT_DATA))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so a running sweep is stopped too
    extra = [item for pair in (("--set", o) for o in args.overrides) for item in pair]
    current = Code("current", ROOT)
    before = Code("before", args.before.resolve()) if args.before else None
    reports = [int(r) for r in args.reports.split(",") if r]
    sections = set(args.sections.split(","))
    print(f"{args.spec}, {os.cpu_count()} CPUs, load average at start {load()}")
    print(f"current: {current.root}" + (f"; before: {before.root}" if before else ""))

    def sweep(variant: Variant, seconds: float | None, trials: int) -> Result:
        result = run_sweep(variant, args.spec, args.data_root, seconds=seconds, trials=trials, extra=extra)
        print(f"  {variant.name}: {result.finished} trials in {result.seconds:.1f} s (load {load()})", flush=True)
        return result

    if "fixed" in sections:
        fixed = []
        seeds = [int(s) for s in args.seeds.split(",") if s] or [None]
        for mode, seed in itertools.product(args.modes.split(","), seeds):
            variants = [Variant(before, mode, None, seed)] if before else []
            variants += [Variant(current, mode, r, seed) for r in reports] or [Variant(current, mode, None, seed)]
            fixed += [sweep(v, args.seconds, 100_000) for v in variants]
        print_fixed(fixed, args.seconds)
        if seeds != [None]:
            print_seeds(fixed)
    if "hundred" in sections:
        codes = ([before] if before else []) + [current]
        print_hundred([sweep(Variant(code, "workers", None), None, args.hundred) for code in codes], args.hundred)
    if "seed" in sections:
        first = sweep(Variant(current, "solo", None), None, args.seed_trials)
        second = sweep(Variant(current, "solo", None), None, args.seed_trials)
        print(f"\nsame seed, current code, --workers 1, twice: {same_trials(first, second)}")
    if "seed-before" in sections and before:
        old = sweep(Variant(before, "solo", None), None, args.seed_trials)
        one = sweep(Variant(current, "solo", 1), None, args.seed_trials)
        print(f"\nsame seed, --workers 1, before against current at reports_per_epoch = 1: {same_trials(old, one)}")
    print(f"\nload average at end {load()}")


if __name__ == "__main__":
    main()
