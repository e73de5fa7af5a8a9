"""Estimated against measured memory and time for the 20 lab presets' shapes.

Each preset runs in a fresh process (so its peak RSS growth is its own) for a fraction of an
epoch: the run is cancelled after `--seconds` of training. Time is compared per step (the
calibrated estimate against the training loop's measured seconds per step, which is what the
full-run estimate multiplies); memory against the process's peak RSS growth on the CPU, or
NVML's reading of the process on CUDA.

    python benchmarks/estimates.py --quick     # fmnist_exp1, fmnist_exp5, cifar_exp1, cifar_exp7
    python benchmarks/estimates.py             # all 20 presets
CIFAR-10 is built from ../shared/data into the data root when it is not there (about 15 s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
QUICK = ("fmnist_exp1", "fmnist_exp5", "cifar_exp1", "cifar_exp7")


def child(preset: str, seconds: float, data_root: str, device: str) -> None:
    """Run one preset until `seconds` of training, print one JSON line of figures."""
    import dataclasses

    from tuner_tui.engine.events import Event, Progress, Started
    from tuner_tui.engine.runner import execute_run, prepare_run
    from tuner_tui.runs.presets import load_preset

    config = dataclasses.replace(load_preset(preset).config, data_root=data_root, device=device)
    cancel = threading.Event()
    starts: list[Started] = []
    steps = 0

    def on_event(event: Event) -> None:
        nonlocal steps
        if isinstance(event, Started):
            starts.append(event)
            threading.Timer(seconds, cancel.set).start()
        elif isinstance(event, Progress):
            steps = (event.epoch - 1) * event.steps_per_epoch + event.step

    finished = execute_run(prepare_run(config), on_event, cancel=cancel)
    started = starts[0]
    print(json.dumps({
        "preset": preset,
        "device": started.device_name,
        "estimated_s_per_step": started.time_estimate.seconds_per_step,
        "measured_s_per_step": finished.resources.train_time_s / max(1, steps),
        "steps": steps,
        "estimated_memory": started.memory_estimate.total,
        "measured_memory": finished.resources.peak_memory_bytes,
    }))


def ensure_cifar10(data_root: Path) -> None:
    if (data_root / "cifar-10-batches-py" / "test_batch").exists():
        return
    builder = ROOT.parent / "shared" / "data" / "build_cifar10.py"
    print(f"building CIFAR-10 into {data_root} with {builder} …", flush=True)
    subprocess.run([sys.executable, str(builder), str(data_root)], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--seconds", type=float, default=3.0, help="training seconds per preset")
    parser.add_argument("--data-root", default=str(ROOT / ".data"), help="where CIFAR-10 is (built if absent)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.seconds, args.data_root, args.device)
        return 0

    from tuner_tui.engine.units import format_bytes
    from tuner_tui.formatting import format_seconds
    from tuner_tui.runs.presets import list_presets

    names = QUICK if args.quick else [p.name for p in list_presets() if "_exp" in p.name and p.shipped]
    ensure_cifar10(Path(args.data_root))
    print(f"{'preset':<13} {'est ms/step':>11} {'meas ms/step':>12} {'ratio':>6}  "
          f"{'est memory':>11} {'meas memory':>11} {'ratio':>6}  steps")
    time_ratios, memory_ratios = [], []
    for name in names:
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, "--seconds", str(args.seconds),
             "--data-root", args.data_root, "--device", args.device],
            capture_output=True, text=True, check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        time_ratio = row["estimated_s_per_step"] / row["measured_s_per_step"]
        memory_ratio = row["estimated_memory"] / row["measured_memory"] if row["measured_memory"] else float("nan")
        time_ratios.append(time_ratio)
        memory_ratios.append(memory_ratio)
        print(f"{name:<13} {1e3 * row['estimated_s_per_step']:>11.3f} {1e3 * row['measured_s_per_step']:>12.3f} "
              f"{time_ratio:>6.2f}  {format_bytes(row['estimated_memory']):>11} "
              f"{format_bytes(row['measured_memory']):>11} {memory_ratio:>6.2f}  {row['steps']}", flush=True)
    print(f"device: {row['device']}; {format_seconds(args.seconds)} of training per preset")
    print(f"time ratio (estimated/measured): min {min(time_ratios):.2f}, max {max(time_ratios):.2f}")
    print(f"memory ratio (estimated/measured): min {min(memory_ratios):.2f}, max {max(memory_ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
