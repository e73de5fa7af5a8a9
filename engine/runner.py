"""The one training path: prepare a run (where bad input surfaces), then execute it with events.

    prepared = prepare_run(config)               # ConfigError / DatasetError: bad input
    finished = execute_run(prepared, on_event, cancel=threading.Event())

`execute_run` never raises: an error becomes a `failed` run with a one-line message. It reports
`Started`, then `Progress` (at most about ten a second whatever the batch size) and `EpochEnd`,
then `Finished`. The step loop reads results back from the device only at those reports.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from engine.backend import Backend, EpochTotals
from engine.backends import make_backend
from engine.batching import DeviceData
from engine.config import ConfigError, RunConfig
from engine.datasets import LoadedDataset, load_dataset
from engine.devices import device_name, resolve_device, synchronize
from engine.calibration import calibrate_step_time, estimate_time, time_test_pass
from engine.memory_model import estimate_memory
from engine.events import (
    EpochEnd,
    Event,
    Finished,
    MemoryEstimate,
    Progress,
    Resources,
    RunStatus,
    Started,
    TimeEstimate,
)
from engine.gpu import NvmlGpuProbe
from engine.memory import PeakRssTracker, remember_context_bytes, remembered_context_bytes
from engine.architecture import count_parameters
from engine.params import init_params

PROGRESS_INTERVAL_S = 0.1
GPU_SAMPLE_INTERVAL_S = 1.0
COLLAPSE_MARGIN_PP = 2.0

EventSink = Callable[[Event], None]


@dataclass
class PreparedRun:
    """A validated run with its data loaded on the host, ready to execute."""

    config: RunConfig
    device: torch.device
    dataset: LoadedDataset
    rss: PeakRssTracker
    start_time: float  # perf_counter at prepare


def prepare_run(config: RunConfig, *, load: Callable[..., LoadedDataset] = load_dataset) -> PreparedRun:
    """Resolve the device and load the dataset. Raises ConfigError or DatasetError (bad input)."""
    start_time = time.perf_counter()
    rss = PeakRssTracker()
    rss.start()
    device = resolve_device(config.device)
    dataset = load(config.dataset, config.data_root)
    samples = dataset.train_images.shape[0]
    if config.batch_size > samples:
        raise ConfigError(
            "batch_size",
            f"must be in [1, {samples}] for {dataset.spec.title} ({samples} training images), "
            f"got {config.batch_size}",
        )
    return PreparedRun(config, device, dataset, rss, start_time)


def run_training(config: RunConfig, on_event: EventSink, *, cancel: threading.Event | None = None) -> Finished:
    """`prepare_run` then `execute_run`; bad input raises, anything later is a `failed` run."""
    return execute_run(prepare_run(config), on_event, cancel=cancel)


def execute_run(prepared: PreparedRun, on_event: EventSink, *, cancel: threading.Event | None = None) -> Finished:
    """Train, reporting events; returns (and reports) the `Finished` event. Never raises."""
    loop = _TrainingLoop(prepared, on_event, cancel or threading.Event())
    try:
        finished = loop.run()
    except Exception as error:  # noqa: BLE001 - any failure becomes a failed run, by design
        finished = loop.finish(RunStatus.FAILED, _one_line(error))
    finally:
        loop.release()
    on_event(finished)
    return finished


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return f"CUDA out of memory: {first}"
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


@dataclass
class _Accounting:
    """Turns an epoch's totals into the reported figures (the lab's definitions under lab4)."""

    conventions: str
    classes: int
    samples: int
    batch_size: int

    def loss(self, totals: EpochTotals, *, final: bool) -> float:
        """lab4: Σ batch losses (Σ CE / classes per batch) / floor(N/B) at the epoch's end, or
        / steps so far while running; standard: mean cross-entropy per sample."""
        if totals.samples == 0:
            return math.nan
        if self.conventions == "lab4":
            divisor = self.samples // self.batch_size if final else totals.steps
            return totals.loss_sum / self.classes / max(1, divisor)
        return totals.loss_sum / totals.samples

    def accuracy(self, totals: EpochTotals) -> float:
        return 100.0 * totals.correct / totals.samples if totals.samples else math.nan

    def collapsed(self, totals: EpochTotals) -> bool:
        """Mean cross-entropy above 2·ln(classes) with accuracy within 2 pp of chance."""
        mean_ce = totals.loss_sum / max(1, totals.samples)
        chance = 100.0 / self.classes
        return mean_ce > 2 * math.log(self.classes) and abs(self.accuracy(totals) - chance) <= COLLAPSE_MARGIN_PP


@dataclass
class _TrainingLoop:
    prepared: PreparedRun
    on_event: EventSink
    cancel: threading.Event
    backend: Backend | None = None
    data: DeviceData | None = None
    epochs_done: list[EpochEnd] = field(default_factory=list)
    loss_curve: list[float] = field(default_factory=list)
    train_time_s: float = 0.0
    steps_done_total: int = 0
    gpu_probe: NvmlGpuProbe | None = None
    gpu_peak_process_bytes: int | None = None
    gpu_last_sample: float = 0.0
    _resources: Resources | None = None

    @property
    def config(self) -> RunConfig:
        return self.prepared.config

    @property
    def device(self) -> torch.device:
        return self.prepared.device

    def run(self) -> Finished:
        config, dataset, device = self.config, self.prepared.dataset, self.device
        spec = dataset.spec
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.gpu_probe = NvmlGpuProbe(index=device.index or 0)
        else:
            # Saturated softmax gradients (lab4 on CIFAR) underflow to denormals, which make CPU
            # matmuls ten times slower; flushing them to zero changes no reported figure.
            torch.set_flush_denormal(True)
        self.data = DeviceData.from_tensors(
            dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels,
            spec.classes, device,
        )
        params = init_params(
            spec.features, config.hidden, spec.classes, conventions=config.conventions,
            seed=config.seed, device=device,
        )
        self.backend = make_backend(
            config.engine, params, self.data, lr=config.lr, reg=config.reg,
            batch_size=config.batch_size, conventions=config.conventions, seed=config.seed,
        )
        calibration = calibrate_step_time(self.backend, device)
        time_estimate = estimate_time(
            config, calibration.seconds_per_step, time_test_pass(self.backend, device),
            train_size=self.data.train_size,
        )
        name = device_name(device)
        self.on_event(Started(
            config=config, device_name=name, params=self.params, memory_estimate=self._memory_estimate(name),
            time_estimate=time_estimate, data_source=dataset.source,
            train_samples=self.data.train_size, test_samples=dataset.test_images.shape[0],
        ))
        return self._train(time_estimate)

    @property
    def params(self) -> int:
        spec = self.prepared.dataset.spec
        return count_parameters(spec.features, self.config.hidden, spec.classes)

    def _memory_estimate(self, name: str) -> MemoryEstimate:
        context = None
        if self.device.type == "cuda":
            context = remembered_context_bytes(name)
            if context is None:
                context = self._measure_cuda_context(name)
        return estimate_memory(
            self.config, device_type=self.device.type, context_bytes=context,
            train_size=self.data.train_size, test_size=self.prepared.dataset.test_images.shape[0],
        )

    def _measure_cuda_context(self, name: str) -> int | None:
        """This process's NVML-reported memory less what torch reserved: context + libraries."""
        synchronize(self.device)
        used = self.gpu_probe.snapshot().process_bytes if self.gpu_probe else None
        if used is None:
            return None
        context = max(0, used - torch.cuda.memory_reserved(self.device))
        remember_context_bytes(name, context)
        return context

    def _train(self, estimate: TimeEstimate) -> Finished:
        backend, config = self.backend, self.config
        accounting = _Accounting(config.conventions, self.data.classes, self.data.train_size, config.batch_size)
        steps = backend.steps_per_epoch
        total_steps = steps * config.epochs
        test_pass_s = estimate.test_pass_seconds
        for epoch in range(1, config.epochs + 1):
            backend.start_epoch(epoch - 1)
            epoch_start = last_report = time.perf_counter()
            reported = EpochTotals(0.0, 0, 0, 0)
            step = 0
            while step < steps:
                if self.cancel.is_set():
                    self.train_time_s += time.perf_counter() - epoch_start
                    return self.finish(RunStatus.CANCELLED, f"stopped in epoch {epoch} at step {step}")
                backend.train_step(step)
                step += 1
                now = time.perf_counter()
                if now - last_report >= PROGRESS_INTERVAL_S or step == steps:
                    totals = backend.epoch_totals(step)
                    if not math.isfinite(totals.loss_sum):
                        self.train_time_s += time.perf_counter() - epoch_start
                        return self._diverged_nonfinite(epoch)
                    now = time.perf_counter()
                    self._report_progress(epoch, step, totals, reported, accounting, now - epoch_start, total_steps, test_pass_s)
                    reported, last_report = totals, now
                    self._sample_gpu(now)
            epoch_seconds = time.perf_counter() - epoch_start
            self.train_time_s += epoch_seconds
            totals = backend.epoch_totals(steps)
            test_accuracy = backend.test_accuracy()
            end = EpochEnd(
                epoch=epoch, train_loss=accounting.loss(totals, final=True),
                train_accuracy=accounting.accuracy(totals), test_accuracy=test_accuracy,
                seconds=epoch_seconds,
            )
            self.epochs_done.append(end)
            self.on_event(end)
            if epoch >= 2 and accounting.collapsed(totals):
                return self.finish(
                    RunStatus.DIVERGED,
                    f"collapsed after epoch {epoch}: mean cross-entropy {totals.loss_sum / totals.samples:.3g} "
                    f"> 2·ln({self.data.classes}) with accuracy {end.train_accuracy:.1f} % (chance "
                    f"{100 / self.data.classes:.0f} %)",
                    diverged_step=self.steps_done_total,
                )
        return self.finish(
            RunStatus.COMPLETED, f"{config.epochs} epoch{'s' if config.epochs != 1 else ''} in {self.train_time_s:.1f} s"
        )

    def _report_progress(
        self, epoch: int, step: int, totals: EpochTotals, previous: EpochTotals,
        accounting: _Accounting, epoch_elapsed: float, total_steps: int, test_pass_s: float,
    ) -> None:
        new_steps = totals.steps - previous.steps
        self.steps_done_total += new_steps
        recent = EpochTotals(
            totals.loss_sum - previous.loss_sum, totals.correct - previous.correct,
            totals.samples - previous.samples, new_steps,
        )
        self.loss_curve.append(accounting.loss(recent, final=False))
        elapsed = self.train_time_s + epoch_elapsed
        seconds_per_step = elapsed / max(1, self.steps_done_total)
        remaining_epochs = self.config.epochs - epoch + 1
        eta = (total_steps - self.steps_done_total) * seconds_per_step + remaining_epochs * test_pass_s
        self.on_event(Progress(
            epoch=epoch, epochs=self.config.epochs, step=step, steps_per_epoch=self.backend.steps_per_epoch,
            loss=accounting.loss(totals, final=False), accuracy=accounting.accuracy(totals),
            recent_loss=self.loss_curve[-1], samples_per_s=totals.samples / max(epoch_elapsed, 1e-9),
            elapsed_s=elapsed, eta_s=eta,
        ))

    def _diverged_nonfinite(self, epoch: int) -> Finished:
        step = self.backend.first_nonfinite_step(self.backend.steps_per_epoch) or 1
        global_step = (epoch - 1) * self.backend.steps_per_epoch + step
        return self.finish(
            RunStatus.DIVERGED, f"non-finite loss at step {global_step} (epoch {epoch}, step {step})",
            diverged_step=global_step,
        )

    def _sample_gpu(self, now: float) -> None:
        if self.gpu_probe is None or now - self.gpu_last_sample < GPU_SAMPLE_INTERVAL_S:
            return
        self.gpu_last_sample = now
        used = self.gpu_probe.snapshot().process_bytes
        if used is not None:
            self.gpu_peak_process_bytes = max(used, self.gpu_peak_process_bytes or 0)

    def finish(self, status: RunStatus, message: str, *, diverged_step: int | None = None) -> Finished:
        """The Finished event: the last completed epoch's figures (the lab's definitions)."""
        last = self.epochs_done[-1] if self.epochs_done else None
        finite = last is not None and math.isfinite(last.train_loss)
        return Finished(
            status=status, message=message,
            train_loss=last.train_loss if finite else None,
            train_accuracy=last.train_accuracy if last else None,
            test_accuracy=last.test_accuracy if last else None,
            params=self.params, resources=self._measure_resources(),
            epochs=tuple(self.epochs_done), loss_curve=tuple(x for x in self.loss_curve if math.isfinite(x)),
            diverged_step=diverged_step,
        )

    def _measure_resources(self) -> Resources:
        total = time.perf_counter() - self.prepared.start_time
        if self.device.type != "cuda":
            return Resources(
                train_time_s=self.train_time_s, total_time_s=total,
                peak_rss_growth_bytes=self.prepared.rss.peak_growth_bytes(),
            )
        self._sample_gpu(math.inf)
        snapshot = self.gpu_probe.snapshot() if self.gpu_probe else None
        return Resources(
            train_time_s=self.train_time_s, total_time_s=total,
            peak_rss_growth_bytes=self.prepared.rss.peak_growth_bytes(),
            cuda_peak_allocated_bytes=torch.cuda.max_memory_allocated(self.device),
            cuda_peak_reserved_bytes=torch.cuda.max_memory_reserved(self.device),
            gpu_process_memory_bytes=self.gpu_peak_process_bytes,
            gpu_used_bytes=snapshot.used_bytes if snapshot else None,
            gpu_total_bytes=snapshot.total_bytes if snapshot else None,
            gpu_utilization_percent=snapshot.utilization_percent if snapshot else None,
        )

    def release(self) -> None:
        """Drop device tensors so a long-lived process (the app) gets its GPU memory back."""
        self.backend = None
        self.data = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
