"""The lab together against the lab one run after another: wall times and figures, measured.

    benchmarks/lab_speed.py [fmnist|cifar10|all] [--set KEY=VALUE ...]

Runs `tuner-tui lab WHICH --no-ui --json` (the default packs and workers), then every experiment
alone with `tuner-tui --preset NAME --no-ui --json` (the default torch threads), one after another,
each in a fresh store, on the real data. Prints both wall times and their ratio (the lab's own
report prints an estimate of the second; this measures it), and for each experiment the test
accuracy and the lab's loss both ways (float32: a pack's figures equal the solo run's to about
0.1 pp of test accuracy). Last, the lab's arithmetic floor: the multiply-adds of its matrix products
(forward, the weight gradients, the input gradient of the output layer, the test pass) at the
best matrix-product rate torch reaches on this machine, measured here: no way of training the lab on
this machine can take less.
"""

from __future__ import annotations

import argparse
import itertools
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


def lab_flops(configs: list[dict]) -> float:
    """Floating-point operations of the runs' matrix products (2 per multiply-add), from the configs
    their records carry (`--set` applied)."""
    from tuner_tui.engine.dataset_specs import DATASET_SPECS

    total = 0.0
    for config in configs:
        data = DATASET_SPECS[config["dataset"]]
        widths = [data.features, *config["hidden"], data.classes]
        layers = list(itertools.pairwise(widths))
        forward = sum(2 * a * b for a, b in layers)
        backward = sum(2 * a * b for a, b in layers) + sum(2 * a * b for a, b in layers[1:])  # no input gradient
        total += config["epochs"] * data.train_size * (forward + backward) + data.test_size * forward
    return total


def best_matmul_rate(seconds: float = 3.0) -> float:
    """The best FLOP/s of one float32 matrix product of the lab's largest shapes, torch's default threads."""
    import torch

    a, b = torch.randn(1280, 3072), torch.randn(3072, 512)
    flops, best = 2 * 1280 * 3072 * 512, 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        torch.mm(a, b)
        best = max(best, flops / (time.perf_counter() - started))
    return best


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
    flops, rate = lab_flops([record["config"] for record in together]), best_matmul_rate()
    print(f"arithmetic floor: {flops / 1e12:.1f} TFLOP at this machine's best matmul rate "
          f"{rate / 1e9:.0f} GFLOP/s = {flops / rate:.0f} s")


if __name__ == "__main__":
    main()
