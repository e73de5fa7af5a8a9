"""Packed training against the same runs one after another, and parallel worker processes.

Throughput is counted in model-steps/s (a pack of K doing one step is K model-steps). Every
comparison is measured in this one invocation, interleaved round by round, and reported as a ratio
against the sequential baseline (one solo run of the fast path, at the default torch threads, which
is what K runs one after another achieve per model).

Sections:
- packs: K ∈ {1, 2, 4, 8, 16, 32} on Fashion-MNIST 784→256→10 at batch 10 and 100 and CIFAR-10
  3072→256→10 at batch 10 (synthetic data of those shapes);
- per core: the same on one thread, in model-steps per CPU-second (robust to other work on the
  machine), with the block size of the deferred layer-1 updates from 1 to 16;
- workers: N single-threaded processes (solo runs, or packs of K/N each) against one run;
- layout: gather per slot against one shared order (standard conventions), a reserved width against
  a re-sliced one, and what a `reconfigure` costs;
- memory: the pack estimate against peak RSS growth, each pack in a fresh process.

    python benchmarks/pack_speed.py --quick          # a few minutes on a 2-core CPU
    python benchmarks/pack_speed.py --json out.json  # every figure, machine-readable
    python benchmarks/pack_speed.py --device cuda    # the same on a GPU (CUDA graphs where they capture)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuner_tui.engine.batching import DeviceData
from tuner_tui.engine.devices import synchronize
from tuner_tui.engine.fused import FusedMLPBackend
from tuner_tui.engine.packed import PackedMLPBackend, SlotConfig
from tuner_tui.engine.params import init_params

CLASSES = 10
PACK_SIZES = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    features: int
    samples: int
    hidden: int
    batch_size: int


WORKLOADS = (
    Workload("F10", "Fashion-MNIST 784→256→10, batch 10", 784, 60000, 256, 10),
    Workload("F100", "Fashion-MNIST 784→256→10, batch 100", 784, 60000, 256, 100),
    Workload("C10", "CIFAR-10 3072→256→10, batch 10", 3072, 50000, 256, 10),
)


def synthetic_data(workload: Workload, device: torch.device, samples: int | None = None) -> DeviceData:
    g = torch.Generator().manual_seed(0)
    n = samples or workload.samples
    images = torch.randint(0, 256, (n, workload.features), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    return DeviceData.from_tensors(images, labels, images[:1000], labels[:1000], CLASSES, device)


def slot(index: int, hidden: int, *, seed: int | None = None, reg: float = 0.0) -> SlotConfig:
    """Slot `index` of a benchmark pack: its own learning rate and (by default) seed."""
    return SlotConfig(hidden=(hidden,), lr=0.01 * (1 + index % 4) / 2, reg=reg, seed=index if seed is None else seed)


class Stepper:
    """Runs a backend's steps across epochs; `models` model-steps per step."""

    def __init__(self, backend: FusedMLPBackend | PackedMLPBackend, models: int) -> None:
        self.backend, self.models = backend, models
        self.epoch, self.step = 0, 0
        backend.start_epoch(0)

    def run(self, steps: int) -> None:
        backend = self.backend
        for _ in range(steps):
            if self.step == backend.steps_per_epoch:
                self.epoch, self.step = self.epoch + 1, 0
                backend.start_epoch(self.epoch)
            backend.train_step(self.step)
            self.step += 1


def solo_stepper(workload: Workload, data: DeviceData, conventions: str = "lab4") -> Stepper:
    config = slot(0, workload.hidden)
    params = init_params(
        workload.features, config.hidden, CLASSES, conventions=conventions, seed=0, device=data.train_images.device
    )
    backend = FusedMLPBackend(params, data, lr=config.lr, reg=config.reg, batch_size=workload.batch_size,
                              conventions=conventions, seed=0)
    return Stepper(backend, 1)


def pack_stepper(
    workload: Workload, data: DeviceData, k: int, *, conventions: str = "lab4", same_seed: bool = False,
    hidden: list[int] | None = None, reserve: tuple[int, ...] = (),
) -> Stepper:
    sizes = hidden or [workload.hidden] * k
    slots = [slot(i, h, seed=0 if same_seed else None) for i, h in enumerate(sizes)]
    pack = PackedMLPBackend(data, slots, batch_size=workload.batch_size, conventions=conventions, reserve=reserve)
    return Stepper(pack, k)


def rate(stepper: Stepper, seconds: float, device: torch.device) -> float:
    """Model-steps/s over at least `seconds` (whole chunks of steps)."""
    chunk = 5
    synchronize(device)
    start = time.perf_counter()
    steps = 0
    while True:
        stepper.run(chunk)
        steps += chunk
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps * stepper.models / elapsed


def interleaved(
    steppers: dict[str, Stepper], seconds: float, rounds: int, device: torch.device
) -> tuple[dict[str, float], dict[str, float]]:
    """Each stepper once per round, `rounds` rounds: the median model-steps/s of each, and the median
    over rounds of each one's ratio to the first stepper in the same round (paired: a burst of other
    work on a shared machine hits a round, not one side of a ratio)."""
    for stepper in steppers.values():
        stepper.run(3)  # warm-up: buffers, first-call paths
    samples: dict[str, list[float]] = {name: [] for name in steppers}
    ratios: dict[str, list[float]] = {name: [] for name in steppers}
    base = next(iter(steppers))
    for _ in range(rounds):
        for name, stepper in steppers.items():
            samples[name].append(rate(stepper, seconds, device))
        for name in steppers:
            ratios[name].append(samples[name][-1] / samples[base][-1])
    return (
        {name: statistics.median(values) for name, values in samples.items()},
        {name: statistics.median(values) for name, values in ratios.items()},
    )


# --- packs against sequential --------------------------------------------------------------------


def bench_packs(workload: Workload, sizes: tuple[int, ...], device: torch.device, seconds: float, rounds: int) -> dict:
    data = synthetic_data(workload, device)
    steppers = {"sequential": solo_stepper(workload, data)}
    steppers.update({f"pack{k}": pack_stepper(workload, data, k) for k in sizes})
    rates, ratios = interleaved(steppers, seconds, rounds, device)
    print(f"\n{workload.name} {workload.title}: model-steps/s, median of {rounds} interleaved rounds "
          "(ratio: median of the rounds' paired ratios)")
    print(f"  {'sequential':<12}{rates['sequential']:>10.0f}   1.00×")
    for k in sizes:
        print(f"  {f'pack of {k}':<12}{rates[f'pack{k}']:>10.0f}   {ratios[f'pack{k}']:.2f}×")
    return {"rates": rates, "ratios": ratios}


# --- per core: one thread, CPU time -------------------------------------------------------------


def cpu_rate(stepper: Stepper, steps: int) -> float:
    """Model-steps per second of this thread's CPU time: what a core does, whatever else runs."""
    start = time.thread_time()
    stepper.run(steps)
    return steps * stepper.models / (time.thread_time() - start)


def bench_per_core(workload: Workload, sizes: tuple[int, ...], rounds: int) -> dict:
    """Packs and block sizes against a solo run on one thread, in model-steps per CPU-second."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data = synthetic_data(workload, torch.device("cpu"))
    steppers = {"solo": solo_stepper(workload, data)}
    steppers.update({f"pack{k}": pack_stepper(workload, data, k) for k in sizes})
    for block in (1, 2, 4, 8, 16):
        slots = [slot(i, workload.hidden) for i in range(8)]
        pack = PackedMLPBackend(data, slots, batch_size=workload.batch_size, conventions="lab4", block_steps=block)
        steppers[f"pack8 block{block}"] = Stepper(pack, 8)
    for stepper in steppers.values():
        stepper.run(16)
    samples: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(rounds):
        for name, stepper in steppers.items():
            steps = 16 * max(1, 160 // (stepper.models * workload.batch_size))  # whole blocks of up to 16
            samples[name].append(cpu_rate(stepper, steps))
    torch.set_num_threads(threads)
    rates = {name: statistics.median(values) for name, values in samples.items()}
    base = rates["solo"]
    print(f"\n{workload.name} per core (1 thread, model-steps per CPU-second, median of {rounds} rounds)")
    for name, value in rates.items():
        print(f"  {name:<16}{value:>8.0f}   {value / base:.2f}×")
    return {"rates": rates, "ratios": {name: value / base for name, value in rates.items()}}


# --- worker processes ---------------------------------------------------------------------------


def _worker(workload: Workload, pack: int, seconds: float, start_at: float, out: mp.Queue) -> None:
    """One single-threaded worker: a solo run (pack 1) or a pack, for `seconds` from `start_at`."""
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    device = torch.device("cpu")
    data = synthetic_data(workload, device)
    stepper = solo_stepper(workload, data) if pack == 1 else pack_stepper(workload, data, pack)
    stepper.run(3)
    time.sleep(max(0.0, start_at - time.time()))
    out.put(rate(stepper, seconds, device))


def workers_rate(workload: Workload, workers: int, pack: int, seconds: float) -> float:
    """Total model-steps/s of `workers` processes started together (each a pack of `pack`)."""
    context = mp.get_context("spawn")
    out: mp.Queue = context.Queue()
    start_at = time.time() + 8.0  # time to spawn, import torch and build the data
    processes = [context.Process(target=_worker, args=(workload, pack, seconds, start_at, out)) for _ in range(workers)]
    for process in processes:
        process.start()
    total = sum(out.get(timeout=120 + seconds) for _ in processes)
    for process in processes:
        process.join(timeout=30)
    return total


def bench_workers(workload: Workload, combos: list[tuple[int, int]], seconds: float, rounds: int) -> dict:
    """One run in this process (default threads, and 1 thread) against each (workers, pack per
    worker) combination, all measured in turn in every round; ratios paired within the round."""
    device = torch.device("cpu")
    threads = torch.get_num_threads()
    data = synthetic_data(workload, device)
    one = solo_stepper(workload, data)
    one.run(3)
    names = [f"one run, {threads} threads", "one run, 1 thread", *(f"{w}×pack{p}" for w, p in combos)]
    samples: dict[str, list[float]] = {name: [] for name in names}
    paired: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        samples[names[0]].append(rate(one, seconds, device))
        torch.set_num_threads(1)
        samples[names[1]].append(rate(one, seconds, device))
        torch.set_num_threads(threads)
        for w, p in combos:
            samples[f"{w}×pack{p}"].append(workers_rate(workload, w, p, seconds))
        for name in names:
            paired[name].append(samples[name][-1] / samples[names[0]][-1])
    rates = {name: statistics.median(values) for name, values in samples.items()}
    ratios = {name: statistics.median(values) for name, values in paired.items()}
    print(f"\n{workload.name} workers (1 thread each) against one run, median of {rounds} rounds "
          "(ratio: median of the rounds' paired ratios)")
    for name in names:
        print(f"  {name:<20}{rates[name]:>10.0f} model-steps/s   {ratios[name]:.2f}×")
    return {"rates": rates, "ratios": ratios}


# --- layout decisions ---------------------------------------------------------------------------


def bench_layout(workload: Workload, k: int, device: torch.device, seconds: float, rounds: int) -> dict:
    """Shared order vs gather per slot; reserved width vs re-sliced; the cost of a reconfigure."""
    data = synthetic_data(workload, device)
    narrow, wide = 128, 360
    steppers = {
        "standard, shared order": pack_stepper(workload, data, k, conventions="standard", same_seed=True),
        "standard, gather per slot": pack_stepper(workload, data, k, conventions="standard"),
        f"all {narrow}, re-sliced to {narrow}": pack_stepper(workload, data, k, hidden=[narrow] * k),
        f"all {narrow}, reserved {wide}": pack_stepper(workload, data, k, hidden=[narrow] * k, reserve=(wide,)),
    }
    rates, _ = interleaved(steppers, seconds, rounds, device)
    pack = pack_stepper(workload, data, k, hidden=[narrow] * (k - 1) + [wide]).backend
    assert isinstance(pack, PackedMLPBackend)
    costs = []
    for index in range(rounds * 3):
        plan: list[int | SlotConfig] = [*range(k - 1), slot(k + index, wide if index % 2 else narrow)]
        synchronize(device)
        start = time.perf_counter()
        pack.reconfigure(plan)
        pack.start_epoch(index + 1)
        pack.train_step(0)
        synchronize(device)
        costs.append(time.perf_counter() - start)
    rebuild = statistics.median(costs)
    step_time = k / rates[f"all {narrow}, re-sliced to {narrow}"]
    print(f"\n{workload.name} layout, pack of {k}: model-steps/s (median of {rounds} rounds)")
    for name, value in rates.items():
        print(f"  {name:<30}{value:>10.0f}")
    print(f"  reconfigure + first step: {rebuild * 1e3:.2f} ms = {rebuild / step_time:.1f} steps of the pack")
    return {"rates": rates, "reconfigure_s": rebuild, "reconfigure_in_steps": rebuild / step_time}


# --- memory -------------------------------------------------------------------------------------


MEMORY_CASES = ((1, "lab4"), (8, "lab4"), (32, "lab4"), (8, "standard"))


def memory_child(k: int, conventions: str) -> None:
    """One pack on real Fashion-MNIST in this fresh process for ~600 steps; prints estimate and RSS."""
    from tuner_tui.engine.config import RunConfig
    from tuner_tui.engine.events import Started
    from tuner_tui.engine.pack_runner import execute_pack, prepare_pack

    configs = [
        RunConfig(dataset="fmnist", device="cpu", hidden=(256,), batch_size=100, epochs=1, lr=0.01, seed=i,
                  conventions=conventions)
        for i in range(k)
    ]
    started: list[Started] = []
    finished = execute_pack(
        prepare_pack(configs), lambda e: started.append(e.event) if isinstance(e.event, Started) else None
    )
    print(json.dumps({
        "k": k, "conventions": conventions, "estimated": started[0].memory_estimate.total,
        "measured": finished[0].resources.peak_rss_growth_bytes,
    }))


def bench_memory(repeats: int) -> list[dict]:
    """Each case in `repeats` fresh processes; the median measured RSS growth against the estimate."""
    rows = []
    print(f"\nmemory: pack estimate against peak RSS growth (Fashion-MNIST, batch 100, median of {repeats})")
    for k, conventions in MEMORY_CASES:
        figures = []
        for _ in range(repeats):
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", f"{k},{conventions}"],
                capture_output=True, text=True, check=True, timeout=900,
            )
            figures.append(json.loads(out.stdout.strip().splitlines()[-1]))
        measured = statistics.median(f["measured"] for f in figures)
        estimated = figures[0]["estimated"]
        row = {"k": k, "conventions": conventions, "estimated": estimated, "measured": measured,
               "ratio": estimated / measured, "all_measured": [f["measured"] for f in figures]}
        rows.append(row)
        print(f"  pack of {k:>2} {conventions:<8} estimated {estimated / 2**20:7.1f} MiB  "
              f"measured {measured / 2**20:7.1f} MiB  ratio {row['ratio']:.2f}")
    return rows


# --- profile ------------------------------------------------------------------------------------


def profile(workload: Workload, k: int, device: torch.device) -> None:
    """Where a pack's step spends its time, against a solo step (torch.profiler, self CPU time)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    data = synthetic_data(workload, device)
    for name, stepper in (("solo", solo_stepper(workload, data)), (f"pack of {k}", pack_stepper(workload, data, k))):
        stepper.run(20)
        steps = 400 // stepper.models + 20
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            stepper.run(steps)
        print(f"\n{workload.name} {name}: {steps} steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter rounds, fewer repeats (a few minutes)")
    parser.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--sections", default="packs,per-core,workers,layout,memory", help="comma-separated subset"
    )
    parser.add_argument("--workloads", default="F10,F100,C10", help="comma-separated subset")
    parser.add_argument("--profile", action="store_true", help="profile a pack of 8 at batch 10 and stop")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        k, conventions = args.memory_child.split(",")
        memory_child(int(k), conventions)
        return 0
    torch.set_flush_denormal(True)  # as the runner does on the CPU
    device = torch.device(args.device)
    seconds, rounds = (0.3, 3) if args.quick else (1.0, 5)
    print(f"device: {device} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    if args.profile:
        profile(WORKLOADS[0], 8, device)
        return 0
    sections = set(args.sections.split(","))
    wanted = [w for w in WORKLOADS if w.name in set(args.workloads.split(","))]
    results: dict[str, object] = {"device": str(device), "threads": torch.get_num_threads()}
    if "packs" in sections:
        results["packs"] = {w.name: bench_packs(w, PACK_SIZES, device, seconds, rounds) for w in wanted}
    if "per-core" in sections and device.type == "cpu":
        results["per_core"] = {w.name: bench_per_core(w, PACK_SIZES, rounds) for w in wanted}
    if "workers" in sections and device.type == "cpu":
        combos = [(2, 1), (1, 8), (2, 4), (2, 8)]
        results["workers"] = {w.name: bench_workers(w, combos, seconds * 3, rounds) for w in wanted[:1]}
    if "layout" in sections:
        results["layout"] = bench_layout(WORKLOADS[0], 8, device, seconds, rounds)
    if "memory" in sections and device.type == "cpu":
        results["memory"] = bench_memory(1 if args.quick else 3)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
