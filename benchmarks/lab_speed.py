"""The lab together against the lab one run after another: wall times and figures, measured.

    benchmarks/lab_speed.py [fmnist|cifar10|all] [--set KEY=VALUE ...] [--lab-args ...]

Runs `tuner-tui lab WHICH --no-ui --json` (the default packs and workers), then every experiment
alone with `tuner-tui --preset NAME --no-ui --json` (the default torch threads), one after another,
each in a fresh store, on the real data. Prints both wall times and their ratio (the lab's own
report prints an estimate of the second; this measures it), and for each experiment the test
accuracy and the lab's loss both ways (float32: a pack's figures equal the solo run's to about
0.1 pp of test accuracy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], env: dict[str, str]) -> tuple[float, list[dict]]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tuner_tui", *args], env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"tuner-tui {' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-500:]}")
    return elapsed, [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="?", default="fmnist", choices=("fmnist", "cifar10", "all"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    options = parser.parse_args()
    sets = [item for value in options.overrides for item in ("--set", value)]
    with tempfile.TemporaryDirectory(prefix="lab-speed-") as folder:
        env = {**os.environ, "TUNER_TUI_STORE": str(Path(folder) / "lab.sqlite3")}
        lab_s, together = run(["lab", options.which, "--no-ui", "--json", *sets], env)
        env["TUNER_TUI_STORE"] = str(Path(folder) / "solo.sqlite3")
        solo_s, alone = 0.0, []
        for record in together:
            seconds, [one] = run(["--preset", record["preset"], "--no-ui", "--json", *sets], env)
            solo_s += seconds
            alone.append(one)
    print(f"lab {options.which}: {len(together)} experiments, {os.cpu_count()} CPUs")
    print(f"together (tuner-tui lab, defaults): {lab_s:8.1f} s")
    print(f"one after another, alone:           {solo_s:8.1f} s")
    print(f"ratio:                              {lab_s / solo_s:8.2f}")
    print(f"{'preset':<13} {'pack':>4} {'test acc lab':>12} {'alone':>8} {'diff pp':>8} "
          f"{'lab loss lab':>13} {'alone':>8}")
    for lab_run, solo_run in zip(together, alone, strict=True):
        a, b = lab_run["metrics"], solo_run["metrics"]
        diff = a["test_accuracy"] - b["test_accuracy"]
        print(
            f"{lab_run['preset']:<13} {lab_run['pack_size']:>4} {a['test_accuracy']:>11.2f}% "
            f"{b['test_accuracy']:>7.2f}% {diff:>8.3f} {a['train_loss']:>13.4f} {b['train_loss']:>8.4f}"
        )


if __name__ == "__main__":
    main()
