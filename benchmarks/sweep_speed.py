"""Sweep speed: `fmnist_search` for a fixed wall time, one way of running trials against another.

    benchmarks/sweep_speed.py [--seconds S] [--modes solo,workers,packed] [--spec fmnist_search]

Each mode runs the same spec from a fresh store and study for S seconds of wall time (the sweep is
stopped with SIGTERM at the end, as a user's Ctrl-C or scancel would; the trials cut short are not
counted), on the real Fashion-MNIST, and prints: finished trials per minute, the best validation
accuracy reached, that trial's test accuracy, and when it was reached. Ratios are against the first
mode, measured in the same invocation (the machine is shared; only side-by-side ratios carry over).

Modes: `solo` is one worker (torch's default threads); `workers` is `--workers auto` (one
single-threaded worker per core); `packed` adds `--pack auto` (trials that share a batch size train
as one pack in each worker).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MODES = {
    "solo": ["--workers", "1"],
    "workers": ["--workers", "auto"],
    "packed": ["--workers", "auto", "--pack", "auto"],
}


@dataclass
class Result:
    mode: str
    seconds: float
    finished: int
    best_value: float | None
    best_test_accuracy: float | None
    best_reached_s: float | None

    @property
    def per_minute(self) -> float:
        return 60.0 * self.finished / self.seconds


def run_mode(mode: str, spec: str, seconds: float, extra: list[str]) -> Result:
    with tempfile.TemporaryDirectory(prefix=f"sweep-{mode}-") as folder:
        store = Path(folder) / "runs.sqlite3"
        env = {**os.environ, "TUNER_TUI_STORE": str(store)}
        command = [sys.executable, "-m", "tuner_tui", "sweep", spec, "--no-ui", "--trials", "100000", *MODES[mode],
                   *extra]
        started = time.time()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=300)
        elapsed = time.time() - started
        shown = subprocess.run(
            [sys.executable, "-m", "tuner_tui", "sweep", "show", spec, "--json"], env=env, capture_output=True,
            text=True, check=True,
        )
        summary = json.loads(shown.stdout)
        runs = subprocess.run(
            [sys.executable, "-m", "tuner_tui", "runs", "--json"], env=env, capture_output=True, text=True, check=True,
        )
        by_trial = {run["trial"]: run for run in map(json.loads, runs.stdout.splitlines()) if run["sweep"] == spec}
    best = summary["best"]
    best_run = by_trial.get(best["trial"]) if best else None
    reached = best_run["finished_at"] - started if best_run and best_run["finished_at"] else None
    return Result(
        mode, elapsed, summary["trials"], best["value"] if best else None,
        best_run["metrics"]["test_accuracy"] if best_run else None, reached,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="wall time per mode")
    parser.add_argument("--modes", default="solo,workers", help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--spec", default="fmnist_search")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    extra = [item for pair in (("--set", o) for o in args.overrides) for item in pair]
    results = [run_mode(mode, args.spec, args.seconds, extra) for mode in args.modes.split(",")]
    base = results[0]
    print(f"{args.spec}, {args.seconds:.0f} s of wall time per mode, {os.cpu_count()} CPUs")
    print(f"{'mode':<9} {'trials':>6} {'per min':>8} {'ratio':>6} {'best val':>9} {'its test':>9} {'reached at':>11}")
    for r in results:
        ratio = r.per_minute / base.per_minute if base.per_minute else float("nan")
        best = f"{r.best_value:.2f} %" if r.best_value is not None else "–"
        test = f"{r.best_test_accuracy:.2f} %" if r.best_test_accuracy is not None else "–"
        reached = f"{r.best_reached_s:.0f} s" if r.best_reached_s is not None else "–"
        print(f"{r.mode:<9} {r.finished:>6} {r.per_minute:>8.2f} {ratio:>6.2f} {best:>9} {test:>9} {reached:>11}")


if __name__ == "__main__":
    main()
