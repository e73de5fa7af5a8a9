"""Training speed under the app against headless, and key-press latency during training.

In one process, interleaved: the same run headless (`prepare_and_record`, as `--no-ui` does) and
under `TunerApp` (started with F5, driven by Textual's headless test driver, which lays out and
renders every update like a terminal session), once with the app's runner (a child process) and
once with the run in a thread worker of the app's own process (the design it replaced). During
each app run a key bound to a no-op action is pressed repeatedly and the time until its handler
runs is recorded.

    python benchmarks/app_overhead.py            # Fashion-MNIST if installed, else synthetic
    python benchmarks/app_overhead.py --batch-sizes 10,100 --rounds 3 --runners child

Each app run is paired with the headless run just before it; besides the ratio of the medians,
the median of the paired ratios is printed (it is steadier on a machine whose speed drifts).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
from textual import events
from textual.binding import Binding, BindingType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuner_tui.app.app import TunerApp
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.datasets import DEBIAN_FASHION_MNIST
from tuner_tui.engine.gpu import NvmlGpuProbe
from tuner_tui.runs.session import prepare_and_record
from tuner_tui.runs.store import ResultsStore
from tuner_tui.runs.training_process import warm_up

PING_INTERVAL_S = 0.25
RUN_TIMEOUT_S = 300.0


class PingApp(TunerApp):
    """The app with one extra key whose handler records when it ran."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *TunerApp.BINDINGS, Binding("ctrl+t", "ping", show=False, priority=True),
    ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.handled_at: list[float] = []

    def action_ping(self) -> None:
        self.handled_at.append(time.perf_counter())


def write_synthetic_fashion_mnist(root: Path, train: int = 60000, test: int = 10000) -> None:
    folder = root / "FashionMNIST" / "raw"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes(), 1))
        header = (0x801).to_bytes(4, "big") + n.to_bytes(4, "big")
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(header + labels.tobytes(), 1))


def headless_train_seconds(config: RunConfig, store: ResultsStore) -> float:
    recorded = prepare_and_record(config, store, lambda event: None, cancel=threading.Event())
    return recorded.finished.resources.train_time_s


def in_thread_runner(config, store, on_event, cancel, *, labels=None, force=False):
    """The run in the app's own process (its worker thread), sharing the GIL with drawing."""
    return prepare_and_record(config, store, on_event, cancel=cancel, labels=labels, force=force)


async def app_train_seconds(config: RunConfig, store: ResultsStore, runner) -> tuple[float, list[float]]:
    """Train under the app; returns the training time and the key latencies (seconds)."""
    app = PingApp(store, config=config, gpu_probe=NvmlGpuProbe(), runner=runner)
    latencies: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        while app.screen is not getattr(app, "tuning", None) or app.tuning.form_state is None:
            await pilot.pause(0.05)  # F5 before the form has reported would start nothing
        runs_before = len(store.list_runs())
        await pilot.press("f5")  # a short run may be over by the time this returns
        deadline = time.perf_counter() + RUN_TIMEOUT_S
        while app.tuning.running or len(store.list_runs()) == runs_before:
            assert time.perf_counter() < deadline, "the run under the app did not finish"
            await asyncio.sleep(PING_INTERVAL_S)
            before = len(app.handled_at)
            pressed = time.perf_counter()
            app.post_message(events.Key("ctrl+t", None))
            while len(app.handled_at) == before:
                await asyncio.sleep(0.0005)
            latencies.append(app.handled_at[-1] - pressed)
        records = store.list_runs()
        assert len(records) == runs_before + 1 and records[0].status == "completed", records[0].status
        return records[0].train_time_s, latencies


RUNNERS = {"child": None, "thread": in_thread_runner}  # None: the app's own runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="10,100")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runners", default="child,thread", help="child (the app's), thread (the design it replaced)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if DEBIAN_FASHION_MNIST.is_dir():
            data_root, data_label = None, f"Fashion-MNIST ({DEBIAN_FASHION_MNIST})"
        else:
            write_synthetic_fashion_mnist(Path(tmp) / "data")
            data_root, data_label = str(Path(tmp) / "data"), "synthetic Fashion-MNIST shapes"
        store = ResultsStore(Path(tmp) / "runs.sqlite3")
        print(f"data: {data_label}; {args.rounds} interleaved rounds; median reported")
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            config = RunConfig(
                dataset="fmnist", hidden=(256,), lr=0.01, batch_size=batch_size, epochs=args.epochs,
                device="cpu", data_root=data_root,
            )
            runners = {name: RUNNERS[name] for name in args.runners.split(",")}
            headless, under_app = [], {name: [] for name in runners}
            paired = {name: [] for name in runners}
            latencies = {name: [] for name in runners}
            for _ in range(args.rounds):
                for name, runner in runners.items():
                    warm_up(wait=True)  # the standby's torch import must not overlap a timed run
                    headless.append(headless_train_seconds(config, store))
                    seconds, pings = asyncio.run(app_train_seconds(config, store, runner))
                    under_app[name].append(seconds)
                    paired[name].append(headless[-1] / seconds)
                    latencies[name] += pings
            h = statistics.median(headless)
            print(f"batch {batch_size:>4}: headless {h:6.2f} s")
            for name in runners:
                a, pings = statistics.median(under_app[name]), latencies[name]
                latency = (
                    f"median {1e3 * statistics.median(pings):.1f} ms, max {1e3 * max(pings):.1f} ms "
                    f"({len(pings)} presses)" if pings else "n/a (runs too short)"
                )
                print(
                    f"  app, {name:<13} {a:6.2f} s → keeps {100 * h / a:5.1f} % of headless speed "
                    f"(paired: {100 * statistics.median(paired[name]):5.1f} %); key latency: {latency}"
                )
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
