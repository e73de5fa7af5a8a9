"""How figures, configs and run events read, in one place for the CLI, the app and the report.

Bytes are formatted by `tuner_tui.engine.units.format_bytes`, which the engine's messages use too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuner_tui.engine.config import RunConfig
from tuner_tui.engine.events import EpochEnd, Started, TimeEstimate
from tuner_tui.engine.gpu import GpuSnapshot
from tuner_tui.engine.units import format_bytes

if TYPE_CHECKING:
    from tuner_tui.runs.records import RunRecord


def format_seconds(seconds: float | None) -> str:
    """`0.8 s`, `42.1 s`, `3 min 05 s`, `1 h 02 min`; `n/a` for None."""
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_percent(value: float | None) -> str:
    """`84.79 %`, or `n/a`."""
    return "n/a" if value is None else f"{value:.2f} %"


def format_number(value: float | None, digits: int = 4) -> str:
    """`0.2061` (significant digits), or `n/a`."""
    return "n/a" if value is None else f"{value:.{digits}g}"


def plural(count: int, noun: str) -> str:
    """`1 epoch`, `3 epochs`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def config_brief(config: RunConfig) -> str:
    """What a config trains: `fmnist 784→256→10 · lr 0.01 · batch 20 · 20 epochs · λ 0.001`."""
    return (
        f"{config.dataset} {config.layers_label} · lr {config.lr:g} · batch {config.batch_size} · "
        f"{plural(config.epochs, 'epoch')} · λ {config.reg:g}"
    )


def config_summary(config: RunConfig) -> str:
    """Every field that shapes a run, on one line that wraps at any width."""
    return (
        f"{config_brief(config)} · seed {config.seed} · {config.conventions} · {config.engine} · "
        f"device {config.device}"
    )


def epoch_line(event: EpochEnd) -> str:
    """`epoch 3: train loss 0.4123 · train acc 85.20 % · test acc 84.10 % · 2.1 s` (the lab's loss)."""
    return (
        f"epoch {event.epoch}: train loss {event.train_loss:.4f} · train acc {event.train_accuracy:.2f} % · "
        f"test acc {event.test_accuracy:.2f} % · {format_seconds(event.seconds)}"
    )


def time_estimate_text(estimate: TimeEstimate) -> str:
    """`≈ 12.3 s (training 10.1 s + test passes 2.2 s)`: the whole run, as its ETA starts from."""
    return (
        f"≈ {format_seconds(estimate.total_seconds)} (training {format_seconds(estimate.train_seconds)} "
        f"+ test passes {format_seconds(estimate.test_pass_seconds * estimate.epochs)})"
    )


def started_lines(event: Started) -> tuple[str, str]:
    """Where the run trains, and what it is estimated to take."""
    estimate = event.time_estimate
    return (
        f"{event.config.layers_label} on {event.device_name} · {event.params:,} parameters · "
        f"data {event.data_source}",
        f"estimated memory {format_bytes(event.memory_estimate.total)} · time {time_estimate_text(estimate)}; "
        f"{estimate.steps_per_epoch} steps/epoch at {estimate.seconds_per_step * 1e3:.3f} ms/step",
    )


def gpu_memory_text(snapshot: GpuSnapshot) -> str:
    """e.g. `1.2 GiB / 15.0 GiB used · this process 945.0 MiB`, or `n/a (no NVIDIA driver)`."""
    if not snapshot.available:
        return f"n/a ({snapshot.reason})" if snapshot.reason else "n/a"
    if snapshot.used_bytes is None and snapshot.total_bytes is None:
        text = "n/a"
    else:
        text = f"{format_bytes(snapshot.used_bytes)} / {format_bytes(snapshot.total_bytes)} used"
    if snapshot.process_bytes is not None:
        text += f" · this process {format_bytes(snapshot.process_bytes)}"
    return text


def printable(text: str) -> str:
    """`text` with control characters (escape sequences among them) replaced by `�`: store and user
    text reaches a terminal as characters, never as commands."""
    return "".join(char if char.isprintable() or char == " " else "\ufffd" for char in text)


def error_line(error: BaseException) -> str:
    """An exception as one line: its type and the first line of its text."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def metric_text(name: str, value: float | None) -> str:
    """A metric a user's code reported: `val_accuracy 0.8521`, `loss 1.2e-05`, `val_accuracy n/a`."""
    return f"{name} {format_number(value)}"


def headline_text(record: RunRecord) -> str:
    """A run's metric that matters: `test acc 84.10 %` for a built-in run, its headline metric for
    a run of user code."""
    if record.model is None:
        return f"test acc {format_percent(record.test_accuracy)}"
    name, value, _ = record.headline
    return metric_text(name, value)
