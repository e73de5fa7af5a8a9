"""Checks before Start: what would stop a run, found while the form is filled in, by field.

- the dataset is not under the data root (nor anywhere else a run looks): `data_root`;
- a CUDA device is chosen but no NVIDIA GPU answers, or not that many: `device`;
- the memory estimate exceeds the free memory of the run's device: `hidden` (the layer sizes and the
  batch are what make it big; F5 then asks before forcing the run).

`dataset_problem` looks at the file system (a data root may be on a slow network filesystem):
call it off the UI thread. The others only compute.
"""

from __future__ import annotations

from pathlib import Path

from tuner_tui.app.components.estimates_panel import DeviceContext
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.dataset_specs import DATASET_SPECS
from tuner_tui.engine.gpu import GpuSnapshot
from tuner_tui.engine.memory_model import estimate_memory
from tuner_tui.engine.units import format_bytes


def memory_problem(config: RunConfig, device: DeviceContext) -> str | None:
    """Why the run will not fit in the free memory of its device, or None."""
    if device.free_bytes is None:
        return None
    estimate = estimate_memory(config, device_type=device.device_type, context_bytes=device.context_bytes).total
    if estimate <= device.free_bytes:
        return None
    where = "GPU memory" if device.device_type == "cuda" else "RAM"
    return f"needs ≈ {format_bytes(estimate)}, {format_bytes(device.free_bytes)} {where} free: will not fit"


def device_problem(config: RunConfig, gpu: GpuSnapshot, gpu_count: int | None) -> str | None:
    """Why the chosen CUDA device cannot be used (no driver, no such GPU), or None.

    `gpu_count`: how many GPUs this process sees, when known."""
    if not config.device.startswith("cuda"):
        return None
    if not gpu.available:
        return f"no NVIDIA GPU to use ({gpu.reason or 'n/a'}): choose cpu or auto"
    _, _, index = config.device.partition(":")
    if index and gpu_count is not None and int(index) >= gpu_count:
        return f"there is no GPU {index}: this process sees {gpu_count}"
    return None


def dataset_problem(config: RunConfig) -> str | None:
    """Why the run's dataset will not be found (reads the file system), or None."""
    from tuner_tui.engine.datasets import default_data_root

    spec = DATASET_SPECS[config.dataset]
    root = Path(config.data_root).expanduser() if config.data_root else default_data_root()
    try:
        found = _found(spec.name, root)
    except OSError as error:  # an unreadable data root
        return f"cannot look in {root}: {error.strerror or error}"
    return None if found else f"{spec.title} not found under {root}: a run would try to download it"


def _found(name: str, root: Path) -> bool:
    """Whether the files of dataset `name` are where a run looks for them (not read here)."""
    from tuner_tui.engine.datasets import CIFAR_LAYOUTS, DEBIAN_FASHION_MNIST, IDX_FILES, IDX_FOLDERS

    if name in CIFAR_LAYOUTS:
        folder, train, test, _ = CIFAR_LAYOUTS[name]
        return all((root / folder / file).is_file() for file in [*train, *test])
    places = [root / IDX_FOLDERS[name] / "raw", root]
    if name == "fmnist":
        places.append(DEBIAN_FASHION_MNIST)
    stems = [stem for pair in IDX_FILES.values() for stem in pair]
    return any(all((place / s).is_file() or (place / f"{s}.gz").is_file() for s in stems) for place in places)
