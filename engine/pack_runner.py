"""Running a pack: several runs trained together (`tuner_tui.engine.packed`), each reported as if it ran alone.

    prepared = prepare_pack(configs)                  # ConfigError / DatasetError: bad input
    finished = execute_pack(prepared, on_event, cancel=stop, judge=judge, next_config=next_config)

Every run of the pack reports the events a solo run reports (`Started`, `Progress`, `EpochEnd`,
`Finished`, in that order), each wrapped in a `PackEvent` that says which run and which slot it
belongs to. The figures come from the solo runner's own code: each run has a `TrainingLoop` (its
accounting, progress and ETA, chance rule, judge, divergence message and `Finished`), fed its slot's
totals. A run that ends (its epochs done, diverged, hopeless, pruned) leaves the pack at the next
epoch boundary without disturbing the others; a diverged slot is frozen at once. Then
`next_config(key)` may hand over a new run that shares the pack's `PackKey`, which takes the free
slot (of any hidden size). The pack ends when no run is left.

A run's stored time and memory are the pack's: its train time is the wall time of the pack epochs
it took part in, its memory the pack's peak; `execute_pack` never raises (a failure fails every run
still in the pack, with one line).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from tuner_tui.engine.backend_base import EpochTotals
from tuner_tui.engine.batching import DeviceData
from tuner_tui.engine.calibration import CalibrationCancelled, calibrate_step_time, estimate_time, time_test_pass
from tuner_tui.engine.capacity import WontFitError, check_pack_fits
from tuner_tui.engine.config import DatasetName, RunConfig, check_batch_size
from tuner_tui.engine.datasets import LoadedDataset, load_dataset
from tuner_tui.engine.devices import device_name, resolve_device, synchronize
from tuner_tui.engine.events import EpochEnd, Event, Finished, MemoryEstimate, RunStatus, Started, TimeEstimate
from tuner_tui.engine.gpu import NvmlGpuProbe
from tuner_tui.engine.memory import PeakRssTracker, remembered_context_bytes
from tuner_tui.engine.memory_model import estimate_pack_memory
from tuner_tui.engine.packed import PackedMLPBackend, PackError, SlotConfig
from tuner_tui.engine.runner import (
    PROGRESS_INTERVAL_S,
    Accounting,
    Clock,
    PreparedRun,
    Stop,
    TrainingLoop,
    nonfinite_stop,
    one_line,
)
from tuner_tui.engine.validation_split import hold_out


@dataclass(frozen=True)
class PackKey:
    """What the runs of one pack share: the same batches in the same shapes at every step."""

    dataset: DatasetName
    data_root: str | None
    device: str
    batch_size: int
    conventions: str
    validation: float
    depth: int  # hidden layers (slots of one pack have the same number)

    @classmethod
    def of(cls, config: RunConfig) -> PackKey:
        return cls(
            config.dataset, config.data_root, config.device, config.batch_size, config.conventions,
            config.validation, len(config.hidden),
        )


def check_packable(configs: Sequence[RunConfig]) -> PackKey:
    """The pack's key; PackError (one line, naming the field) when the configs cannot share a pack."""
    if not configs:
        raise PackError("pack", "needs at least one run")
    key = PackKey.of(configs[0])
    for config in configs:
        if config.engine != "native":
            raise PackError("engine", f"only the native engine trains in packs, got {config.engine}")
        other = PackKey.of(config)
        for name in ("dataset", "data_root", "device", "batch_size", "conventions", "validation"):
            if getattr(other, name) != getattr(key, name):
                raise PackError(
                    name, f"runs in a pack must share it, got {getattr(key, name)} and {getattr(other, name)}"
                )
        if other.depth != key.depth:
            depths = f"{key.depth} and {other.depth}"
            raise PackError("hidden", f"runs in a pack must have the same number of hidden layers, got {depths}")
    return key


def slot_config(config: RunConfig) -> SlotConfig:
    return SlotConfig(hidden=config.hidden, lr=config.lr, reg=config.reg, seed=config.seed)


@dataclass(frozen=True)
class PackEvent:
    """One run's event, tagged: `run` numbers the pack's runs in the order they joined (the first
    configs are 0..K-1), `slot` is the run's position in the pack when the event was reported and
    `slots` the pack's size then (-1 and 0 for a run that could not join)."""

    run: int
    slot: int
    event: Event
    slots: int = 0


PackEventSink = Callable[[PackEvent], None]
PackJudge = Callable[[int, EpochEnd], bool]  # (run, its finished epoch) → prune it?
NextConfig = Callable[[PackKey], RunConfig | None]  # a run to take a freed slot, or None


@dataclass
class PreparedPack:
    """Validated runs with their one dataset loaded on the host, ready to execute together."""

    configs: list[RunConfig]
    key: PackKey
    device: torch.device
    dataset: LoadedDataset
    rss: PeakRssTracker
    start_time: float
    clock: Clock = time.perf_counter
    force: bool = False


def prepare_pack(
    configs: Sequence[RunConfig],
    *,
    load: Callable[..., LoadedDataset] = load_dataset,
    force: bool = False,
    clock: Clock = time.perf_counter,
) -> PreparedPack:
    """Check the runs can share a pack, refuse a pack that cannot fit (unless `force`), load the
    dataset once. Raises ConfigError (PackError, WontFitError among them) or DatasetError."""
    start_time = clock()
    key = check_packable(configs)
    rss = PeakRssTracker()
    rss.start()
    device = resolve_device(key.device)
    if not force:
        context = remembered_context_bytes(device_name(device)) if device.type == "cuda" else None
        check_pack_fits(configs, device, context_bytes=context)
    first = configs[0]
    dataset = hold_out(load(first.dataset, first.data_root), first.validation)
    check_batch_size(first.batch_size, dataset.train_images.shape[0], dataset.spec.title)
    return PreparedPack(list(configs), key, device, dataset, rss, start_time, clock, force)


def execute_pack(
    prepared: PreparedPack,
    on_event: PackEventSink,
    *,
    cancel: threading.Event | None = None,
    judge: PackJudge | None = None,
    next_config: NextConfig | None = None,
) -> list[Finished]:
    """Train the pack, reporting every run's events; returns each run's `Finished`, by run number.
    Never raises."""
    loop = _PackLoop(prepared, on_event, cancel or threading.Event(), judge, next_config)
    try:
        loop.run()
    except CalibrationCancelled:
        loop.finish_all(RunStatus.CANCELLED, "stopped before training started")
    except Exception as error:  # any failure becomes failed runs, by design
        loop.finish_all(RunStatus.FAILED, one_line(error))
    finally:
        loop.release()
    return [loop.finished[run] for run in sorted(loop.finished)]


@dataclass
class _Lane:
    """One run in the pack: its number, its slot, and the solo runner's state for it."""

    run: int
    slot: int
    loop: TrainingLoop
    accounting: Accounting
    estimate: TimeEstimate
    epoch: int = 0  # epochs started (1-based while one is running)
    reported: EpochTotals = field(default_factory=lambda: EpochTotals(0.0, 0, 0, 0))


@dataclass
class _PackLoop:
    prepared: PreparedPack
    on_event: PackEventSink
    cancel: threading.Event
    judge: PackJudge | None
    next_config: NextConfig | None
    lanes: list[_Lane] = field(default_factory=list)  # by slot
    finished: dict[int, Finished] = field(default_factory=dict)
    pack: PackedMLPBackend | None = None
    data: DeviceData | None = None
    gpu_probe: NvmlGpuProbe | None = None
    memory_estimate: MemoryEstimate | None = None
    seconds_per_step: float = 0.0  # calibrated, then measured
    test_pass_seconds: float = 0.0
    runs_started: int = 0
    steps_trained: int = 0
    seconds_trained: float = 0.0
    allocated: list[RunConfig] = field(default_factory=list)  # the runs the pack's storage was built for

    @property
    def device(self) -> torch.device:
        return self.prepared.device

    def run(self) -> None:
        pack = self._set_up()
        pack_epoch = 0
        while self.lanes:
            pack.start_epoch(pack_epoch)
            for lane in self.lanes:
                lane.epoch += 1
                lane.reported = EpochTotals(0.0, 0, 0, 0)
            if not self._train_epoch(pack):
                return
            self._end_epoch(pack)
            self._recycle(pack)
            pack_epoch += 1

    # --- setting up ----------------------------------------------------------------------------

    def _set_up(self) -> PackedMLPBackend:
        """Data on the device, the pack, its calibration; reports each run's `Started`."""
        prepared, device = self.prepared, self.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.gpu_probe = NvmlGpuProbe(index=device.index or 0)
        else:
            torch.set_flush_denormal(True)  # as the solo runner does: denormals slow CPU matmuls tenfold
        self.lanes = [self._lane(config, slot, prepared.start_time) for slot, config in enumerate(prepared.configs)]
        self.data = DeviceData.from_dataset(prepared.dataset, device)
        self.pack = pack = PackedMLPBackend(
            self.data, [slot_config(c) for c in prepared.configs], batch_size=prepared.key.batch_size,
            conventions=prepared.configs[0].conventions,
        )
        self.allocated = list(prepared.configs)
        self.seconds_per_step = calibrate_step_time(pack, device, self.cancel, clock=prepared.clock).seconds_per_step
        self.test_pass_seconds = time_test_pass(pack, device, clock=prepared.clock)
        name = device_name(device)
        self.memory_estimate = self._estimate_memory(name, [lane.loop.config for lane in self.lanes])
        for lane in self.lanes:
            self._start(lane, name)
        return pack

    def _lane(self, config: RunConfig, slot: int, start_time: float) -> _Lane:
        prepared = self.prepared
        run = self.runs_started
        self.runs_started += 1
        solo = PreparedRun(config, prepared.device, prepared.dataset, prepared.rss, start_time, prepared.clock)
        judge = self.judge
        # A pack's slots are judged at epoch ends only (checks within an epoch are a solo trial's).
        slot_judge = None if judge is None else (lambda end: isinstance(end, EpochEnd) and judge(run, end))
        loop = TrainingLoop(solo, self._ignore, self.cancel, slot_judge)
        loop.gpu_probe = self.gpu_probe
        classes, samples = prepared.dataset.spec.classes, prepared.dataset.train_images.shape[0]
        accounting = Accounting(config.conventions, classes, samples, config.batch_size)
        lane = _Lane(run, slot, loop, accounting, self._time_estimate(config))
        loop.on_event = lambda event: self.on_event(PackEvent(lane.run, lane.slot, event, self._slots(lane)))
        return lane

    def _slots(self, lane: _Lane) -> int:
        return self.pack.size if self.pack is not None and lane.slot >= 0 else 0

    @staticmethod
    def _ignore(event: Event) -> None:
        """A lane's sink until it is tagged with its run and slot."""

    def _time_estimate(self, config: RunConfig) -> TimeEstimate:
        """The pack's measured (or, at the start, calibrated) step time for this run's epochs."""
        train_size = self.prepared.dataset.train_images.shape[0]
        return estimate_time(config, self.seconds_per_step, self.test_pass_seconds, train_size=train_size)

    def _estimate_memory(self, name: str, configs: list[RunConfig]) -> MemoryEstimate:
        context = None
        if self.device.type == "cuda":
            context = remembered_context_bytes(name)
            if context is None and self.lanes:
                context = self.lanes[0].loop.measure_cuda_context(name)
        dataset = self.prepared.dataset
        return estimate_pack_memory(
            configs, device_type=self.device.type, context_bytes=context,
            train_size=dataset.train_images.shape[0], test_size=dataset.test_images.shape[0],
        )

    def _start(self, lane: _Lane, name: str) -> None:
        assert self.data is not None and self.memory_estimate is not None
        lane.estimate = self._time_estimate(lane.loop.config)
        dataset = self.prepared.dataset
        lane.loop.on_event(Started(
            config=lane.loop.config, device_name=name, params=lane.loop.params,
            memory_estimate=self.memory_estimate, time_estimate=lane.estimate, data_source=dataset.source,
            train_samples=self.data.train_size, test_samples=dataset.test_images.shape[0],
        ))

    # --- an epoch ------------------------------------------------------------------------------

    def _train_epoch(self, pack: PackedMLPBackend) -> bool:
        """The steps of one epoch with progress reports; False when cancelled (every run ended)."""
        clock = self.prepared.clock
        steps = pack.steps_per_epoch
        epoch_start = last_report = clock()
        for step in range(steps):
            if self.cancel.is_set():
                self._add_time(clock() - epoch_start)
                for lane in list(self.lanes):
                    self._finish(lane, Stop(RunStatus.CANCELLED, f"stopped in epoch {lane.epoch} at step {step}"))
                return False
            pack.train_step(step)
            now = clock()
            if now - last_report >= PROGRESS_INTERVAL_S or step + 1 == steps:
                totals = pack.epoch_totals(step + 1)
                now = clock()
                for lane in list(self.lanes):
                    self._progress(pack, lane, totals[lane.slot], step + 1, now - epoch_start)
                last_report = now
                self._sample_gpu(now)
                if not self.lanes:  # every run diverged: no point finishing the epoch
                    break
        self.steps_trained += step + 1
        self._add_time(clock() - epoch_start)
        return True

    def _progress(
        self, pack: PackedMLPBackend, lane: _Lane, totals: EpochTotals, steps_done: int, elapsed: float
    ) -> None:
        if not math.isfinite(totals.loss_sum):
            bad_step = pack.first_nonfinite_step(lane.slot, steps_done)
            pack.freeze(lane.slot)
            lane.loop.train_time_s += elapsed
            self._finish(lane, nonfinite_stop(lane.epoch, pack.steps_per_epoch, bad_step))
            return
        lane.loop.report_progress(lane.epoch, totals, lane.reported, lane.accounting, elapsed, lane.estimate)
        lane.reported = totals

    def _add_time(self, seconds: float) -> None:
        self.seconds_trained += seconds
        if self.steps_trained:
            self.seconds_per_step = self.seconds_trained / self.steps_trained
        for lane in self.lanes:
            lane.loop.last_epoch_seconds = seconds
            lane.loop.train_time_s += seconds

    def _end_epoch(self, pack: PackedMLPBackend) -> None:
        """Every run's `EpochEnd` from one evaluation pass; runs that are done leave the pack."""
        clock = self.prepared.clock
        synchronize(self.device)
        eval_start = clock()
        test = pack.test_accuracy()
        validation = pack.validation_metrics()
        synchronize(self.device)
        self.test_pass_seconds = clock() - eval_start
        totals = pack.epoch_totals(pack.steps_per_epoch)
        for lane in list(self.lanes):
            slot = lane.slot
            stop = lane.loop.end_epoch(
                lane.epoch, totals[slot], test[slot], None if validation is None else validation[slot], lane.accounting
            )
            if stop is None and lane.epoch == lane.loop.config.epochs:
                epochs, seconds = lane.epoch, lane.loop.train_time_s
                stop = Stop(RunStatus.COMPLETED, f"{epochs} epoch{'' if epochs == 1 else 's'} in {seconds:.1f} s")
            if stop is not None:
                self._finish(lane, stop)

    def _finish(self, lane: _Lane, stop: Stop) -> None:
        finished = lane.loop.finish(stop.status, stop.message, diverged_step=stop.diverged_step)
        lane.loop.on_event(finished)
        self.finished[lane.run] = finished
        self.lanes.remove(lane)

    def finish_all(self, status: RunStatus, message: str) -> None:
        """End every run still in the pack (a failure, or a stop during calibration)."""
        for lane in list(self.lanes):
            self._finish(lane, Stop(status, message))

    # --- recycling -----------------------------------------------------------------------------

    def _recycle(self, pack: PackedMLPBackend) -> None:
        """Give the slots of runs that ended to new runs from `next_config`, or drop them; re-slice."""
        if len(self.lanes) == pack.size and all(lane.slot == i for i, lane in enumerate(self.lanes)):
            return  # no run ended
        by_slot = {lane.slot: lane for lane in self.lanes}
        plan: list[int | SlotConfig] = []
        kept: list[_Lane] = []
        newcomers: list[RunConfig] = []
        for slot in range(pack.size):
            lane = by_slot.get(slot)
            if lane is not None:
                plan.append(slot)
                kept.append(lane)
            elif (config := self._next(kept, newcomers)) is not None:
                plan.append(slot_config(config))
                newcomers.append(config)
        if not plan:
            self.lanes = []
            return
        now = self.prepared.clock()
        fresh = iter(newcomers)
        lanes = []
        for slot, item in enumerate(plan):
            if isinstance(item, int):
                lane = next(lane for lane in kept if lane.slot == item)
                lane.slot = slot
            else:
                lane = self._lane(next(fresh), slot, now)
            lanes.append(lane)
        self.lanes = lanes
        pack.reconfigure(plan)
        self.allocated = [lane.loop.config for lane in lanes]
        name = device_name(self.device)
        self.memory_estimate = self._estimate_memory(name, [lane.loop.config for lane in lanes])
        for lane in lanes:
            if lane.epoch == 0:
                self._start(lane, name)

    def _next(self, kept: list[_Lane], newcomers: list[RunConfig]) -> RunConfig | None:
        """The next run that can join, or None; one that cannot (another key, or too big) fails alone."""
        while self.next_config is not None and (config := self.next_config(self.prepared.key)) is not None:
            try:
                check_packable([self.prepared.configs[0], config])
                if not self.prepared.force:
                    configs = [lane.loop.config for lane in kept] + [*newcomers, config]
                    context = remembered_context_bytes(device_name(self.device)) if self.device.type == "cuda" else None
                    check_pack_fits(configs, self.device, context_bytes=context, allocated=self.allocated)
                return config
            except (PackError, WontFitError) as error:
                lane = self._lane(config, -1, self.prepared.clock())
                self._finish_unstarted(lane, str(error))
        return None

    def _finish_unstarted(self, lane: _Lane, message: str) -> None:
        finished = lane.loop.finish(RunStatus.FAILED, f"cannot join the pack: {message}")
        lane.loop.on_event(finished)
        self.finished[lane.run] = finished

    # --- resources -----------------------------------------------------------------------------

    def _sample_gpu(self, now: float) -> None:
        """The pack's GPU memory peak, read through one run and shared by all (they are one process)."""
        if not self.lanes or self.gpu_probe is None:
            return
        meter = self.lanes[0].loop
        meter.sample_gpu(now)
        for lane in self.lanes[1:]:
            peaks = (lane.loop.gpu_peak_process_bytes or 0, meter.gpu_peak_process_bytes or 0)
            lane.loop.gpu_peak_process_bytes = max(peaks) or None

    def release(self) -> None:
        """Drop device tensors so a long-lived process gets its GPU memory back."""
        self.pack = None
        self.data = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
