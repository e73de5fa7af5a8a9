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

from tuner_tui.engine.architecture import count_parameters
from tuner_tui.engine.backend_base import Backend, EpochTotals
from tuner_tui.engine.backend_registry import make_backend
from tuner_tui.engine.batching import DeviceData, steps_per_epoch
from tuner_tui.engine.calibration import CalibrationCancelled, calibrate_step_time, estimate_time, time_test_pass
from tuner_tui.engine.capacity import check_fits
from tuner_tui.engine.chance import at_chance, chance_accuracy, hopeless
from tuner_tui.engine.config import Conventions, RunConfig, check_batch_size
from tuner_tui.engine.datasets import LoadedDataset, load_dataset
from tuner_tui.engine.devices import device_name, resolve_device, synchronize
from tuner_tui.engine.events import (
    EpochEnd,
    Event,
    Finished,
    MemoryEstimate,
    Progress,
    Resources,
    RunStatus,
    Started,
    TimeEstimate,
    ValidationCheck,
)
from tuner_tui.engine.gpu import NvmlGpuProbe
from tuner_tui.engine.memory import PeakRssTracker, remember_context_bytes, remembered_context_bytes
from tuner_tui.engine.memory_model import estimate_memory
from tuner_tui.engine.params import init_params
from tuner_tui.engine.validation_split import hold_out

PROGRESS_INTERVAL_S = 0.1
GPU_SAMPLE_INTERVAL_S = 1.0

Clock = Callable[[], float]  # seconds, monotonic (time.perf_counter; a fake one in tests)
EventSink = Callable[[Event], None]
# Called with each finished epoch (and, for a sweep's trial, with each check of the validation rows
# within an epoch); True stops the run as `pruned` (a sweep's pruner decides), unless it was the last.
EpochJudge = Callable[[EpochEnd | ValidationCheck], bool]


@dataclass(frozen=True)
class TrialSettings:
    """How a sweep's trial trains unlike a plain run: it spends no steps on a time calibration (its
    estimate is what earlier trials of its shape measured, when known), it takes the test pass once,
    at the end of a run that completes (the objective is on the validation rows), and it checks its
    validation rows `reports_per_epoch` times an epoch, so a hopeless trial is pruned early."""

    reports_per_epoch: int = 1
    seconds_per_step: float | None = None  # measured by earlier trials of the same shape on this device


@dataclass
class PreparedRun:
    """A validated run with its data loaded on the host, ready to execute."""

    config: RunConfig
    device: torch.device
    dataset: LoadedDataset
    rss: PeakRssTracker
    start_time: float  # `clock()` at prepare
    clock: Clock = time.perf_counter


def prepare_run(
    config: RunConfig,
    *,
    load: Callable[..., LoadedDataset] = load_dataset,
    force: bool = False,
    clock: Clock = time.perf_counter,
) -> PreparedRun:
    """Resolve the device, refuse a run that cannot fit (unless `force`), load the dataset and hold
    out its validation rows. Raises ConfigError (WontFitError among them) or DatasetError: bad input.
    Every duration of the run is read from `clock`."""
    start_time = clock()
    rss = PeakRssTracker()
    rss.start()
    device = resolve_device(config.device)
    if not force:
        context = remembered_context_bytes(device_name(device)) if device.type == "cuda" else None
        check_fits(config, device, context_bytes=context)
    dataset = hold_out(load(config.dataset, config.data_root), config.validation)
    check_batch_size(config.batch_size, dataset.train_images.shape[0], dataset.spec.title)
    return PreparedRun(config, device, dataset, rss, start_time, clock)


def build_backend(prepared: PreparedRun, data: DeviceData) -> Backend:
    """The run's backend over `data`, its parameters initialized from its seed."""
    config, spec = prepared.config, prepared.dataset.spec
    params = init_params(
        spec.features, config.hidden, spec.classes, conventions=config.conventions, seed=config.seed,
        device=prepared.device,
    )
    return make_backend(
        config.engine, params, data, lr=config.lr, reg=config.reg, batch_size=config.batch_size,
        conventions=config.conventions, seed=config.seed,
    )


def calibrate(backend: Backend, prepared: PreparedRun, cancel: threading.Event | None = None) -> TimeEstimate:
    """The run's time estimate from real steps of `backend` (its parameters are put back after)."""
    clock = prepared.clock
    seconds_per_step = calibrate_step_time(backend, prepared.device, cancel, clock=clock).seconds_per_step
    test_pass_seconds = time_test_pass(backend, prepared.device, clock=clock)
    return estimate_time(prepared.config, seconds_per_step, test_pass_seconds, train_size=backend.samples)


def estimate_solo_time(prepared: PreparedRun) -> TimeEstimate:
    """How long `prepared` would take trained alone on its device: a calibration, nothing trained."""
    return calibrate(build_backend(prepared, DeviceData.from_dataset(prepared.dataset, prepared.device)), prepared)


def execute_run(
    prepared: PreparedRun,
    on_event: EventSink,
    *,
    cancel: threading.Event | None = None,
    judge: EpochJudge | None = None,
    trial: TrialSettings | None = None,
) -> Finished:
    """Train, reporting events; returns (and reports) the `Finished` event. Never raises.

    `trial`: train as a sweep's trial (see `TrialSettings`)."""
    loop = TrainingLoop(prepared, on_event, cancel or threading.Event(), judge, trial=trial)
    try:
        finished = loop.run()
    except CalibrationCancelled:
        finished = loop.finish(RunStatus.CANCELLED, "stopped before training started")
    except Exception as error:  # any failure becomes a failed run, by design
        finished = loop.finish(RunStatus.FAILED, one_line(error))
    finally:
        loop.release()
    on_event(finished)
    return finished


def one_line(error: BaseException) -> str:
    """An error as one line for a failed run's message: its type and the first line of its text."""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return f"CUDA out of memory: {first}"
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


@dataclass(frozen=True)
class Accounting:
    """Turns an epoch's totals into the reported figures (the lab's definitions under lab4)."""

    conventions: Conventions
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

    @staticmethod
    def mean_cross_entropy(totals: EpochTotals) -> float:
        """Mean cross-entropy per sample, comparable across batch sizes and conventions."""
        return totals.loss_sum / totals.samples if totals.samples else math.nan

    def accuracy(self, totals: EpochTotals) -> float:
        return 100.0 * totals.correct / totals.samples if totals.samples else math.nan


@dataclass(frozen=True)
class Stop:
    """Why training stopped before its last epoch."""

    status: RunStatus
    message: str
    diverged_step: int | None = None


def nonfinite_stop(epoch: int, steps_per_epoch: int, bad_step: int | None) -> Stop:
    """The stop for a loss gone non-finite at 1-based step `bad_step` of `epoch` (None: unknown, 1)."""
    step = bad_step or 1
    global_step = (epoch - 1) * steps_per_epoch + step
    return Stop(
        RunStatus.DIVERGED, f"non-finite loss at step {global_step} (epoch {epoch}, step {step})",
        diverged_step=global_step,
    )


@dataclass
class TrainingLoop:
    """One run's training state and reports. `execute_run` drives it with its own backend; the pack
    runner (`tuner_tui.engine.pack_runner`) drives one per slot of a pack, feeding it that slot's figures."""

    prepared: PreparedRun
    on_event: EventSink
    cancel: threading.Event
    judge: EpochJudge | None = None
    backend: Backend | None = None
    data: DeviceData | None = None
    epochs_done: list[EpochEnd] = field(default_factory=list)
    loss_curve: list[float] = field(default_factory=list)
    train_time_s: float = 0.0
    last_epoch_seconds: float = 0.0
    steps_done_total: int = 0
    gpu_probe: NvmlGpuProbe | None = None
    gpu_peak_process_bytes: int | None = None
    gpu_last_sample: float = 0.0
    trial: TrialSettings | None = None

    @property
    def config(self) -> RunConfig:
        return self.prepared.config

    @property
    def device(self) -> torch.device:
        return self.prepared.device

    @property
    def params(self) -> int:
        spec = self.prepared.dataset.spec
        return count_parameters(spec.features, self.config.hidden, spec.classes)

    def run(self) -> Finished:
        backend, estimate = self._set_up()
        accounting = Accounting(self.config.conventions, backend.data.classes, backend.samples, self.config.batch_size)
        for epoch in range(1, self.config.epochs + 1):
            stop = self._train_epoch(backend, epoch, accounting, estimate)
            if stop is None:
                stop = self._end_epoch(backend, epoch, accounting)
            if stop is not None:
                return self.finish(stop.status, stop.message, diverged_step=stop.diverged_step)
        epochs = self.config.epochs
        message = f"{epochs} epoch{'' if epochs == 1 else 's'} in {self.train_time_s:.1f} s"
        return self.finish(RunStatus.COMPLETED, message)

    def _set_up(self) -> tuple[Backend, TimeEstimate]:
        """Data on the device, parameters, the backend and its calibration; reports `Started`."""
        config, dataset, device = self.config, self.prepared.dataset, self.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.gpu_probe = NvmlGpuProbe(index=device.index or 0)
        else:
            # Saturated softmax gradients (lab4 on CIFAR) underflow to denormals, which make CPU
            # matmuls ten times slower; flushing them to zero changes no reported figure.
            torch.set_flush_denormal(True)
        self.data = DeviceData.from_dataset(dataset, device)
        self.backend = backend = build_backend(self.prepared, self.data)
        if self.trial is None:
            estimate = calibrate(backend, self.prepared, self.cancel)
        else:  # a trial measures itself as it trains: no calibration steps
            estimate = TimeEstimate(
                seconds_per_step=self.trial.seconds_per_step or math.nan, steps_per_epoch=backend.steps_per_epoch,
                test_pass_seconds=0.0, epochs=config.epochs,
            )
        name = device_name(device)
        self.on_event(Started(
            config=config, device_name=name, params=self.params, memory_estimate=self._memory_estimate(name),
            time_estimate=estimate, data_source=dataset.source,
            train_samples=self.data.train_size, test_samples=dataset.test_images.shape[0],
        ))
        return backend, estimate

    def _memory_estimate(self, name: str) -> MemoryEstimate:
        context = None
        if self.device.type == "cuda":
            context = remembered_context_bytes(name)
            if context is None:
                context = self.measure_cuda_context(name)
        dataset = self.prepared.dataset
        return estimate_memory(
            self.config, device_type=self.device.type, context_bytes=context,
            train_size=dataset.train_images.shape[0], test_size=dataset.test_images.shape[0],
        )

    def measure_cuda_context(self, name: str) -> int | None:
        """This process's NVML-reported memory less what torch reserved: context + libraries."""
        synchronize(self.device)
        used = self.gpu_probe.snapshot().process_bytes if self.gpu_probe else None
        if used is None:
            return None
        context = max(0, used - torch.cuda.memory_reserved(self.device))
        remember_context_bytes(name, context)
        return context

    def _train_epoch(
        self, backend: Backend, epoch: int, accounting: Accounting, estimate: TimeEstimate
    ) -> Stop | None:
        """The steps of one epoch, with progress reports; a stop when cancelled or non-finite."""
        backend.start_epoch(epoch - 1)
        steps = backend.steps_per_epoch
        clock = self.prepared.clock
        epoch_start = last_report = clock()
        reported = EpochTotals(0.0, 0, 0, 0)
        checks = self._check_steps(steps)
        try:
            for step in range(steps):
                if self.cancel.is_set():
                    return Stop(RunStatus.CANCELLED, f"stopped in epoch {epoch} at step {step}")
                backend.train_step(step)
                if step + 1 in checks and self._pruned_within(backend, epoch, checks[step + 1]):
                    return Stop(RunStatus.PRUNED, f"pruned in epoch {epoch} at step {step + 1} of {steps}")
                now = clock()
                if now - last_report >= PROGRESS_INTERVAL_S or step + 1 == steps:
                    totals = backend.epoch_totals(step + 1)
                    if not math.isfinite(totals.loss_sum):
                        return nonfinite_stop(epoch, steps, backend.first_nonfinite_step(steps))
                    now = clock()
                    self.report_progress(epoch, totals, reported, accounting, now - epoch_start, estimate)
                    reported, last_report = totals, now
                    self.sample_gpu(now)
            return None
        finally:
            self.last_epoch_seconds = clock() - epoch_start
            self.train_time_s += self.last_epoch_seconds

    def _check_steps(self, steps: int) -> dict[int, int]:
        """Within an epoch of `steps`, after which step each check of the validation rows comes
        (step → its part, 1 to reports_per_epoch - 1; the epoch's end is the last part)."""
        parts = self.trial.reports_per_epoch if self.trial is not None and self.judge is not None else 1
        if parts <= 1 or self.prepared.dataset.val_images is None:
            return {}
        return {round(steps * part / parts): part for part in range(1, parts) if round(steps * part / parts) > 0}

    def _pruned_within(self, backend: Backend, epoch: int, part: int) -> bool:
        """Check the validation rows in the middle of an epoch; whether the judge prunes the trial."""
        assert self.judge is not None and self.trial is not None
        validation = backend.validation_metrics()
        if validation is None:
            return False
        check = ValidationCheck(epoch, part, self.trial.reports_per_epoch, validation[0], validation[1])
        return self.judge(check)

    def _end_epoch(self, backend: Backend, epoch: int, accounting: Accounting) -> Stop | None:
        totals = backend.epoch_totals(backend.steps_per_epoch)
        validation = backend.validation_metrics()
        last = epoch == self.config.epochs
        # A trial is measured on its validation rows; its test pass comes once, when it completes.
        test = backend.test_accuracy() if self.trial is None or last else None
        return self.end_epoch(epoch, totals, test, validation, accounting)

    def end_epoch(
        self, epoch: int, totals: EpochTotals, test_accuracy: float | None, validation: tuple[float, float] | None,
        accounting: Accounting,
    ) -> Stop | None:
        """Report the finished epoch; a stop when the run is hopeless or its judge prunes it."""
        end = EpochEnd(
            epoch=epoch, train_loss=accounting.loss(totals, final=True),
            train_accuracy=accounting.accuracy(totals), test_accuracy=test_accuracy,
            seconds=self.last_epoch_seconds, train_ce=accounting.mean_cross_entropy(totals),
            val_loss=validation[0] if validation else None, val_accuracy=validation[1] if validation else None,
        )
        self.epochs_done.append(end)
        self.on_event(end)
        classes, patience = accounting.classes, self.config.chance_patience
        if hopeless([e.train_accuracy for e in self.epochs_done], classes, patience):
            return Stop(
                RunStatus.DIVERGED,
                f"stopped after epoch {epoch}: training accuracy at chance ({chance_accuracy(classes):.0f} %) "
                f"for {patience} epochs in a row",
                diverged_step=self.steps_done_total,
            )
        # The judge hears every epoch, the last too (a sweep's learning curve ends where the run
        # does), but only an epoch before the last can be pruned.
        if self.judge is not None and self.judge(end) and epoch < self.config.epochs:
            return Stop(RunStatus.PRUNED, f"pruned after epoch {epoch}")
        return None

    def report_progress(
        self, epoch: int, totals: EpochTotals, previous: EpochTotals, accounting: Accounting,
        epoch_elapsed: float, estimate: TimeEstimate,
    ) -> None:
        """Report `Progress` from the epoch's totals so far (`previous`: those of the last report)."""
        steps = steps_per_epoch(accounting.samples, accounting.batch_size)
        new_steps = totals.steps - previous.steps
        self.steps_done_total += new_steps
        recent = EpochTotals(
            totals.loss_sum - previous.loss_sum, totals.correct - previous.correct,
            totals.samples - previous.samples, new_steps,
        )
        self.loss_curve.append(accounting.loss(recent, final=False))
        elapsed = self.train_time_s + epoch_elapsed
        seconds_per_step = elapsed / max(1, self.steps_done_total)
        total_steps = steps * self.config.epochs
        remaining_epochs = self.config.epochs - epoch + 1 if self.trial is None else 0
        eta = (total_steps - self.steps_done_total) * seconds_per_step + remaining_epochs * estimate.test_pass_seconds
        self.on_event(Progress(
            epoch=epoch, epochs=self.config.epochs, step=totals.steps, steps_per_epoch=steps,
            loss=accounting.loss(totals, final=False), accuracy=accounting.accuracy(totals),
            recent_loss=self.loss_curve[-1], samples_per_s=totals.samples / max(epoch_elapsed, 1e-9),
            elapsed_s=elapsed, eta_s=eta,
        ))

    def sample_gpu(self, now: float) -> None:
        """Keep the peak of this process's GPU memory, read at most once per GPU_SAMPLE_INTERVAL_S."""
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
        classes = self.prepared.dataset.spec.classes
        if status is RunStatus.COMPLETED and last is not None and at_chance(last.test_accuracy, classes):
            message += f"; test accuracy at chance ({chance_accuracy(classes):.0f} %)"
        return Finished(
            status=status, message=message,
            train_loss=last.train_loss if last is not None and finite else None,
            train_accuracy=last.train_accuracy if last else None,
            test_accuracy=last.test_accuracy if last else None,
            params=self.params, resources=self._measure_resources(),
            epochs=tuple(self.epochs_done), loss_curve=tuple(x for x in self.loss_curve if math.isfinite(x)),
            diverged_step=diverged_step,
        )

    def _measure_resources(self) -> Resources:
        total = self.prepared.clock() - self.prepared.start_time
        rss_growth = self.prepared.rss.peak_growth_bytes()
        if self.device.type != "cuda":
            return Resources(train_time_s=self.train_time_s, total_time_s=total, peak_rss_growth_bytes=rss_growth)
        self.sample_gpu(math.inf)
        snapshot = self.gpu_probe.snapshot() if self.gpu_probe else None
        return Resources(
            train_time_s=self.train_time_s, total_time_s=total, peak_rss_growth_bytes=rss_growth,
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
