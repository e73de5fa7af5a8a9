"""Training speed of the engine against the lab's loop, idiomatic PyTorch and a matmul floor.

Every implementation runs the same workload in this one process, interleaved round by round;
the figure reported is the median steps/s over the rounds. Ratios, not absolute numbers, are
what compares across machines.

    python benchmarks/engine_speed.py            # about a full epoch per workload
    python benchmarks/engine_speed.py --quick    # under 90 s on a 2-core CPU
    python benchmarks/engine_speed.py --json out.json

The idiomatic baseline reads images as torchvision's datasets do: each item a PIL image, then ToTensor's
conversion (written out here, so the benchmark runs without the `download` extra).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuner_tui.engine.backend_registry import make_backend
from tuner_tui.engine.batching import DeviceData
from tuner_tui.engine.config import EngineName
from tuner_tui.engine.params import init_params

IMPLEMENTATIONS = ("fast", "graph", "autograd", "idiomatic", "floor")


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    image_shape: tuple[int, ...]  # (H, W) or (H, W, C), as the dataset stores it
    samples: int
    hidden: int
    lr: float
    batch_size: int
    reg: float
    full_steps: int
    quick_steps: int

    @property
    def features(self) -> int:
        return int(torch.tensor(self.image_shape).prod())


WORKLOADS = (
    Workload("W1", "Fashion-MNIST 784→256→10, batch 10", (28, 28), 60000, 256, 0.01, 10, 0.0, 6000, 500),
    Workload("W2", "Fashion-MNIST 784→256→10, batch 20, λ=0.001", (28, 28), 60000, 256, 0.01, 20, 0.001, 3000, 400),
    Workload("W3", "CIFAR-10 3072→256→10, batch 10", (32, 32, 3), 50000, 256, 0.01, 10, 0.0, 2500, 150),
    Workload("W4", "CIFAR-10 3072→512→10, batch 128", (32, 32, 3), 50000, 512, 0.01, 128, 0.0, 390, 30),
)
CLASSES = 10
WARMUP_STEPS = 10


class UInt8ImageDataset(Dataset):
    """Like torchvision's FashionMNIST/CIFAR10: each item becomes a PIL image, then ToTensor()."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images.numpy()
        self.labels = labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[index])
        return to_tensor(image), self.labels[index]


def to_tensor(image: Image.Image) -> torch.Tensor:
    """What torchvision's ToTensor does to a uint8 PIL image: float (C, H, W) in [0, 1]."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
    if pixels.dim() == 2:
        pixels = pixels.unsqueeze(-1)
    return pixels.permute(2, 0, 1).contiguous().to(torch.float32).div(255)


def synthetic_data(workload: Workload, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images in the dataset's storage shape, and labels."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (workload.samples, *workload.image_shape), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, CLASSES, (workload.samples,), generator=generator)
    return images, labels


def flattened_channel_major(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W[, C]) → (N, C·H·W), all of channel 0 first, as the engine stores data."""
    if images.dim() == 4:
        images = images.permute(0, 3, 1, 2)
    return images.reshape(images.shape[0], -1).contiguous()


def engine_runner(kind: str, workload: Workload, data: DeviceData) -> Callable[[int], None]:
    """A function that runs n steps of one of our backends (continuing across calls)."""
    params = init_params(
        workload.features, (workload.hidden,), CLASSES, conventions="lab4", seed=0,
        device=data.train_images.device,
    )
    engines: dict[str, EngineName] = {"fast": "native", "graph": "graph", "autograd": "autograd"}
    engine = engines[kind]
    backend = make_backend(
        engine, params, data, lr=workload.lr, reg=workload.reg,
        batch_size=workload.batch_size, conventions="lab4",
    )
    position = {"step": 0, "epoch": 0}
    backend.start_epoch(0)

    def run(steps: int) -> None:
        for _ in range(steps):
            if position["step"] == backend.steps_per_epoch:
                position["epoch"] += 1
                position["step"] = 0
                backend.start_epoch(position["epoch"])
            backend.train_step(position["step"])
            position["step"] += 1

    return run


def idiomatic_runner(
    workload: Workload, images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> Callable[[int], None]:
    """PyTorch as a user writes it: Dataset + DataLoader(shuffle) + nn.Sequential + optim.SGD."""
    torch.manual_seed(0)
    loader = DataLoader(UInt8ImageDataset(images, labels), batch_size=workload.batch_size, shuffle=True)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(workload.features, workload.hidden), nn.ReLU(),
        nn.Linear(workload.hidden, CLASSES),
    ).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=workload.lr, weight_decay=workload.reg)
    batches = iter(loader)

    def run(steps: int) -> None:
        nonlocal batches
        for _ in range(steps):
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(loader)
                x, y = next(batches)
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()

    return run


def floor_runner(workload: Workload, device: torch.device) -> Callable[[int], None]:
    """Only the five matmuls of a step, in the forms the fast path issues them: two forward
    `addmm` with bias, the backward `mm`, two in-place `addmm_` weight updates."""
    b, d, h = workload.batch_size, workload.features, workload.hidden

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, device=device)

    x, w1, w2, b1, b2 = rand(b, d), rand(h, d), rand(CLASSES, h), rand(h), rand(CLASSES)
    z, o, dz = rand(b, h), rand(b, CLASSES), rand(b, h)
    w1_t, w2_t, o_t, dz_t = w1.t(), w2.t(), o.t(), dz.t()

    def run(steps: int) -> None:
        for _ in range(steps):
            torch.addmm(b1, x, w1_t, out=z)
            torch.addmm(b2, z, w2_t, out=o)
            torch.mm(o, w2, out=dz)
            w2.addmm_(o_t, z, alpha=-1e-12)
            w1.addmm_(dz_t, x, alpha=-1e-12)

    return run


def timed_steps_per_s(run: Callable[[int], None], steps: int, device: torch.device) -> float:
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    start = time.perf_counter()
    run(steps)
    synchronize()
    return steps / (time.perf_counter() - start)


def benchmark_workload(workload: Workload, device: torch.device, steps: int, rounds: int) -> dict[str, float]:
    images, labels = synthetic_data(workload)
    flat = flattened_channel_major(images)
    data = DeviceData.from_tensors(flat, labels, flat[:1000], labels[:1000], CLASSES, device)
    runners = {kind: engine_runner(kind, workload, data) for kind in ("fast", "graph", "autograd")}
    runners["idiomatic"] = idiomatic_runner(workload, images, labels, device)
    runners["floor"] = floor_runner(workload, device)
    for run in runners.values():
        run(WARMUP_STEPS)
    samples: dict[str, list[float]] = {kind: [] for kind in IMPLEMENTATIONS}
    for _ in range(rounds):
        for kind in IMPLEMENTATIONS:
            samples[kind].append(timed_steps_per_s(runners[kind], steps, device))
    return {kind: statistics.median(values) for kind, values in samples.items()}


def print_report(label: str, workload: Workload, result: dict[str, float], steps: int) -> None:
    fast = result["fast"]
    print(f"\n{label} {workload.title} ({steps} steps × rounds, median)")
    for kind in IMPLEMENTATIONS:
        print(f"  {kind:<10} {result[kind]:>10.1f} steps/s   fast is {fast / result[kind]:5.2f}×")
    print(
        f"  fast vs lab autograd loop {fast / result['autograd']:.2f}×, "
        f"vs idiomatic {fast / result['idiomatic']:.2f}×, "
        f"time per step vs floor {result['floor'] / fast:.2f}×"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (under 90 s on 2 cores)")
    parser.add_argument("--json", metavar="PATH", help="write steps/s per workload and implementation")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median taken)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--workloads", default="W1,W2,W3,W4", help="comma-separated subset")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the runner does on the CPU, for every implementation alike
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    wanted = set(args.workloads.split(","))
    results: dict[str, dict[str, float]] = {}
    for device in devices:
        print(f"device: {device} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
        for workload in WORKLOADS:
            if workload.name not in wanted:
                continue
            steps = workload.quick_steps if args.quick else workload.full_steps
            result = benchmark_workload(workload, device, steps, args.rounds)
            key = workload.name if device.type == "cpu" else f"{workload.name}@{device.type}"
            results[key] = result
            print_report(key, workload, result, steps)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
