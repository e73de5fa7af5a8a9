"""How promptly a run answers: cancel latency (cancel set → `execute_run` returns) and progress
reports per second of training, on synthetic data of the lab's shapes, measured on this machine.

The tests check the logic on a fake clock (a cancel is seen before the next step; a report comes
once per PROGRESS_INTERVAL_S of the run's clock); this script measures the wall-clock figures the
product aims at (a stop within 1 s, about ten reports a second) under whatever load the machine has.

    python benchmarks/responsiveness.py            # 5 cancels per workload
    python benchmarks/responsiveness.py --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.dataset_specs import DATASET_SPECS
from tuner_tui.engine.datasets import LoadedDataset
from tuner_tui.engine.events import Event, Progress
from tuner_tui.engine.runner import PROGRESS_INTERVAL_S, execute_run, prepare_run

WORKLOADS = {  # the lab's smallest and largest steps
    "fmnist 784→256→10 batch 10": RunConfig(dataset="fmnist", hidden=(256,), batch_size=10, epochs=1000, device="cpu"),
    "cifar10 3072→512→10 batch 128": RunConfig(
        dataset="cifar10", hidden=(512,), batch_size=128, epochs=1000, device="cpu"
    ),
}
TRAIN_SECONDS = 1.5  # of training before each cancel
WAIT_TIMEOUT_S = 120.0


def synthetic(name: str, root: object = None) -> LoadedDataset:
    """Random uint8 images of the dataset's shape (10,000 train, 1,000 test)."""
    spec = DATASET_SPECS[name]
    generator = torch.Generator().manual_seed(0)

    def images(n: int) -> torch.Tensor:
        return torch.randint(0, 256, (n, spec.features), generator=generator, dtype=torch.uint8)

    def labels(n: int) -> torch.Tensor:
        return torch.randint(0, spec.classes, (n,), generator=generator)

    return LoadedDataset(spec, images(10_000), labels(10_000), images(1_000), labels(1_000), source="synthetic")


def one_cancel(config: RunConfig) -> tuple[float, float]:
    """Train for TRAIN_SECONDS, cancel from another thread: (seconds to return, reports per second)."""
    prepared = prepare_run(config, load=synthetic, force=True)
    cancel, training = threading.Event(), threading.Event()
    reports: list[float] = []

    def on_event(event: Event) -> None:
        if isinstance(event, Progress):
            reports.append(time.perf_counter())
            training.set()

    done = threading.Event()

    def train() -> None:
        execute_run(prepared, on_event, cancel=cancel)
        done.set()

    worker = threading.Thread(target=train)
    worker.start()
    if not training.wait(WAIT_TIMEOUT_S):
        raise SystemExit("no progress report within two minutes")
    time.sleep(TRAIN_SECONDS)
    cancelled_at = time.perf_counter()
    cancel.set()
    if not done.wait(WAIT_TIMEOUT_S):
        raise SystemExit("the run did not stop within two minutes of cancel")
    latency = time.perf_counter() - cancelled_at
    worker.join()
    window = [t for t in reports if t <= cancelled_at]
    rate = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 else float("nan")
    return latency, rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="cancels per workload")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; target: stop within 1 s, "
          f"about {1 / PROGRESS_INTERVAL_S:.0f} reports/s")
    print(f"{'workload':<32} {'cancel latency median / max':>28} {'reports/s median':>17}")
    for name, config in WORKLOADS.items():
        latencies, rates = zip(*(one_cancel(config) for _ in range(args.repeats)), strict=True)
        print(f"{name:<32} {1e3 * statistics.median(latencies):>12.1f} ms / {1e3 * max(latencies):>7.1f} ms "
              f"{statistics.median(rates):>17.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
