"""The memory estimate before launch, from the shapes alone (no torch: the app computes it live).

It counts what the engine allocates (see `tuner_tui.engine.backend_base` and `tuner_tui.engine.fused`):
the uint8 dataset, the parameters, the per-sample epoch records, the step buffers, one batch's activations and one
chunk of the test pass. On CUDA it adds the context (measured once per device and remembered,
see `tuner_tui.engine.memory`) and the caching allocator's rounding; on the CPU it adds the loader's
transient copy of the training images. `estimate_pack_memory` does the same for a pack of runs
trained together (`tuner_tui.engine.packed`).
"""

from __future__ import annotations

from collections.abc import Sequence

from tuner_tui.engine.architecture import count_parameters
from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.dataset_specs import DATASET_SPECS
from tuner_tui.engine.events import MemoryEstimate

FLOAT_BYTES = 4
INDEX_BYTES = 8
MIB = 1024**2
EVAL_CHUNK_ROWS = 1024  # the test pass runs in chunks of this many images
CUDA_SEGMENT = 2 * MIB  # the caching allocator's small-pool segment and large-block rounding
CUDA_SMALL_LIMIT = 1 * MIB
DEFAULT_CUDA_CONTEXT = 500 * MIB  # used only until the context has been measured on a device
# torch's own working memory on the CPU during training (OpenMP and MKL buffers, allocator slack):
# measured as RSS growth beyond the pack's tensors, 26-28 MiB for packs of 8 and 32 on Fashion-MNIST.
CPU_RUNTIME_BYTES = 24 * MIB
# Temporaries per batch element of each layer's output, beyond the fused path's one buffer:
# the graph and autograd paths keep forward outputs, gradients and elementwise temporaries.
ACTIVATION_COPIES = {"native": 2, "graph": 5, "autograd": 5}
INPUT_COPIES = {"native": 1, "graph": 2, "autograd": 2}  # float batch (+ its 1/255-scaled copy)


def _cuda_reserved(sizes: list[int]) -> int:
    """What the caching allocator reserves for these live tensors (2 MiB segments)."""
    small = sum(s for s in sizes if s < CUDA_SMALL_LIMIT)
    large = sum(-(-s // CUDA_SEGMENT) * CUDA_SEGMENT for s in sizes if s >= CUDA_SMALL_LIMIT)
    return large + -(-small // CUDA_SEGMENT) * CUDA_SEGMENT


def estimate_memory(
    config: RunConfig,
    *,
    device_type: str,
    context_bytes: int | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    dtype_bytes: int = FLOAT_BYTES,
) -> MemoryEstimate:
    """Peak memory of the run by part.

    `context_bytes` is the CUDA context (None: a default until measured); the sizes default to
    the official dataset's.
    """
    spec = DATASET_SPECS[config.dataset]
    n = spec.train_size if train_size is None else train_size
    m = spec.test_size if test_size is None else test_size
    d, b = spec.features, config.batch_size
    outs = [*config.hidden, spec.classes]
    params = count_parameters(d, config.hidden, spec.classes)

    dataset_parts = [n * d, n * INDEX_BYTES, m * d, m * INDEX_BYTES]
    if config.conventions == "standard":
        dataset_parts += [n * INDEX_BYTES, n * INDEX_BYTES]  # the epoch's order and its labels
    parameter_parts = [(o_in * o + o) * dtype_bytes for o_in, o in zip([d, *config.hidden], outs, strict=True)]
    epoch_records = [n * dtype_bytes, n * INDEX_BYTES]
    # native: a uint8 gather buffer and per-layer gradient rows; the others: one gradient per parameter
    step_parts = [b * d, *(b * o * dtype_bytes for o in outs)] if config.engine == "native" else [params * dtype_bytes]
    train_parts = [INPUT_COPIES[config.engine] * b * d * dtype_bytes] + [
        ACTIVATION_COPIES[config.engine] * b * o * dtype_bytes for o in outs
    ]
    chunk = min(EVAL_CHUNK_ROWS, m)
    test_parts = [chunk * d * dtype_bytes] + [chunk * o * dtype_bytes for o in outs] + [chunk * INDEX_BYTES]

    if device_type == "cuda":
        everything = dataset_parts + parameter_parts + epoch_records + step_parts
        resident = _cuda_reserved(everything + max(train_parts, test_parts, key=sum))
        raw = sum(everything) + max(sum(train_parts), sum(test_parts))
        context = DEFAULT_CUDA_CONTEXT if context_bytes is None else context_bytes
        overhead = context + max(0, resident - raw)
    else:
        overhead = n * d  # the loader's copy of the training images while it decodes them
    return MemoryEstimate(
        dataset=sum(dataset_parts),
        parameters=sum(parameter_parts),
        gradients_and_buffers=sum(epoch_records) + sum(step_parts),
        activations_train=sum(train_parts),
        activations_test=sum(test_parts),
        runtime_overhead=overhead,
    )


# A pack on the CPU defers layer 1's updates over blocks of steps holding up to this many samples
# (8 steps at batch 10; none at batch 80 and up), measured best in benchmarks/pack_speed.py; on a
# GPU it does not defer. A slot whose decay factor 1 − lr·reg is below MIN_DEFERRED_DECAY turns it off.
BLOCK_SAMPLES = 80
MIN_DEFERRED_DECAY = 0.5


def pack_block_steps(
    device_type: str, batch_size: int, decays: Sequence[float], requested: int | None = None
) -> int:
    """Steps per block of deferred layer-1 updates for a pack with these per-slot decay factors
    (`requested`, or the device's default; 1 when a slot decays too fast to defer)."""
    if not all(MIN_DEFERRED_DECAY <= d <= 1.0 for d in decays):
        return 1
    if requested is not None:
        return max(1, requested)
    return max(1, BLOCK_SAMPLES // batch_size) if device_type == "cpu" else 1


def pack_eval_rows(slots: int) -> int:
    """Images per evaluation chunk of a pack: a run's chunk, shared by its slots."""
    return max(1, EVAL_CHUNK_ROWS // slots)


def estimate_pack_memory(
    configs: Sequence[RunConfig],
    *,
    device_type: str,
    context_bytes: int | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    dtype_bytes: int = FLOAT_BYTES,
) -> MemoryEstimate:
    """Peak memory of a pack of `configs` (one dataset, batch size and conventions) by part.

    It counts what `tuner_tui.engine.packed` allocates: the dataset once (under `standard`, every slot's
    epoch order), each slot's parameters at the pack's widths (its widest slot per layer), the
    per-slot epoch records, the step buffers of a full and of the partial batch, and the larger of
    the test pass's chunk and the calibration's copy of the parameters (the test pass runs while the
    step buffers are allocated, so `activations_test` includes them). On CUDA the overhead is a
    run's; on the CPU it is the larger of torch's working memory (CPU_RUNTIME_BYTES) and what the
    loader's transient copy of the training images adds beyond the pack's own tensors: the load's
    peak comes before training's and does not add to it.
    """
    first = configs[0]
    spec = DATASET_SPECS[first.dataset]
    n = spec.train_size if train_size is None else train_size
    m = spec.test_size if test_size is None else test_size
    k, d, b, classes = len(configs), spec.features, first.batch_size, spec.classes
    widths = [max(c.hidden[layer] for c in configs) for layer in range(len(first.hidden))]
    outs = [*widths, classes]
    per_slot_order = first.conventions == "standard" and len({c.seed for c in configs}) > 1

    dataset_parts = [n * d, n * INDEX_BYTES, m * d, m * INDEX_BYTES]
    if first.conventions == "standard":
        # each slot's order; then either one shared order's labels, or the stacked orders and labels
        dataset_parts += [k * n * INDEX_BYTES, (2 * k if per_slot_order else 1) * n * INDEX_BYTES]
    parameter_parts = [k * (n_in * n_out + n_out) * dtype_bytes for n_in, n_out in zip([d, *widths], outs, strict=True)]
    epoch_records = [k * n * dtype_bytes, k * n * INDEX_BYTES]

    block = pack_block_steps(device_type, b, [1.0 - c.lr * c.reg for c in configs])
    step_parts: list[int] = []  # a block's inputs and layer-1 tensors, gradients, per-sample buffers
    activation_parts: list[int] = []
    for rows, steps in {(b, block), (n % b, 1)}:
        if rows == 0:
            continue
        copies, samples = (k if per_slot_order else 1), steps * rows
        step_parts += [copies * samples * d, copies * samples * d * dtype_bytes]  # uint8 gather, float inputs
        step_parts += [copies * samples * samples * dtype_bytes]  # the block's input products
        step_parts += [2 * k * widths[0] * samples * dtype_bytes]  # layer 1 at the block's start, pending grads
        step_parts += [k * rows * o * dtype_bytes for o in outs]  # d objective / d pre-activation
        step_parts += [6 * k * rows * dtype_bytes, k * rows * INDEX_BYTES, rows * dtype_bytes]  # per sample
        activation_parts += [k * rows * o * dtype_bytes for o in outs]
    chunk = min(pack_eval_rows(k), m)
    # the uint8 chunk as floats, each layer's output (layer 1's again, made contiguous for bmm), argmax
    test_parts = [chunk * d * dtype_bytes, k * chunk * widths[0] * dtype_bytes]
    test_parts += [*(k * chunk * o * dtype_bytes for o in outs), k * chunk * INDEX_BYTES]
    if first.validation > 0:
        test_parts.append(k * chunk * classes * dtype_bytes)  # log-softmax of the validation chunk
    transient = max(sum(test_parts), sum(parameter_parts))  # the test pass, or calibration's copy

    if device_type == "cuda":
        everything = dataset_parts + parameter_parts + epoch_records + step_parts + activation_parts
        largest = test_parts if sum(test_parts) >= sum(parameter_parts) else parameter_parts
        resident = _cuda_reserved(everything + largest)
        raw = sum(everything) + transient
        context = DEFAULT_CUDA_CONTEXT if context_bytes is None else context_bytes
        overhead = context + max(0, resident - raw)
    else:
        training = sum(parameter_parts) + sum(epoch_records) + sum(step_parts) + sum(activation_parts) + transient
        overhead = max(CPU_RUNTIME_BYTES, n * d - training)
    return MemoryEstimate(
        dataset=sum(dataset_parts),
        parameters=sum(parameter_parts),
        gradients_and_buffers=sum(epoch_records) + sum(step_parts),
        activations_train=sum(activation_parts),
        activations_test=sum(activation_parts) + transient,
        runtime_overhead=overhead,
    )
