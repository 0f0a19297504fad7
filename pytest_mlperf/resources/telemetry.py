"""What the hardware did while a test was measured: GPU utilisation, power, temperature, clocks and slow-down reasons
(NVML), and the CPU slice's utilisation and frequency and the process's memory (psutil), sampled on a daemon thread
every `interval_s` around the measured phase. A throughput is only as good as the conditions it ran under: a GPU
that sat idle behind a slow input pipeline, or was held back by its power cap, gives a number that says nothing
about the GPU, and the telemetry's `flags` say so next to it.

The sampler must not move the number it annotates: one sample costs well under a millisecond without GPUs (see
benchmarks/telemetry_overhead.py), so the default interval keeps it far below 1% of one core.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from .nvml import Gpu, Nvml, Reading

#: seconds between samples: short enough to see a 10 s phase in 20 samples, long enough that sampling takes about
#: 0.15% of a core (0.5-0.8 ms a sample with two replayed GPUs; benchmarks/telemetry_overhead.py); 10x shorter
#: costs a CPU training loop about 2% of its throughput
DEFAULT_INTERVAL_S = 0.5
#: the shortest time a closing sample (taken when the phase ends) may cover
CLOSING_MIN_S = 0.02
#: fewer samples than this (a phase shorter than about 3 intervals) are too few for an idle or throttle verdict
MIN_SAMPLES = 3
#: how long stopping waits for a sample in progress; longer means a read hung (the thread is a daemon, left behind)
JOIN_TIMEOUT_S = 5.0


@dataclass
class GpuSample:
    """One GPU's `Reading`, in JSON-ready types."""

    index: int  #: NVML's index of the physical GPU
    utilization: float  #: %
    memory_used_gb: float
    power_w: float
    temperature_c: float
    sm_clock_mhz: float
    throttles: list[str]  #: active slow-down reasons, as nvml.THROTTLES names them


@dataclass
class Sample:
    """The state at one moment; CPU utilisation is over the interval that ends here."""

    t_s: float  #: seconds since sampling started
    cpu_util: float  #: % busy, mean over the CPUs of the test's slice
    rss_gb: float  #: resident memory of the process and its descendants (pages shared between them count in each)
    cpu_freq_mhz: float | None  #: mean current frequency of the slice's CPUs; None where the host does not say (VMs)
    gpus: list[GpuSample] = field(default_factory=list)


@dataclass
class Telemetry:
    """A measured phase's samples and what a reader should make of them."""

    interval_s: float
    samples: list[Sample] = field(default_factory=list)
    cpus: list[int] = field(default_factory=list)  #: the CPU slice whose utilisation was sampled
    gpus: list[int] = field(default_factory=list)  #: NVML indexes of the physical GPUs sampled
    duration_s: float = 0.0  #: how long sampling ran
    sampling_s: float = 0.0  #: wall time spent taking the samples: the sampler's cost (at most; GIL waits count)
    error: str | None = None  #: why sampling stopped early, when it did

    def summary(self) -> dict[str, float]:
        """Mean and max of each metric over the samples (and over the GPUs: mean over GPUs and samples, max over
        all); GPU metrics only when GPUs were sampled, CPU frequency only where the host reports it."""
        gpu = [g for s in self.samples for g in s.gpus]
        series = {
            "gpu_util": [g.utilization for g in gpu],
            "gpu_power_w": [g.power_w for g in gpu],
            "gpu_temp_c": [g.temperature_c for g in gpu],
            "gpu_sm_clock_mhz": [g.sm_clock_mhz for g in gpu],
            "gpu_mem_gb": [g.memory_used_gb for g in gpu],
            "cpu_util": [s.cpu_util for s in self.samples],
            "cpu_freq_mhz": [s.cpu_freq_mhz for s in self.samples if s.cpu_freq_mhz is not None],
            "rss_gb": [s.rss_gb for s in self.samples],
        }
        summary = {"samples": float(len(self.samples))}
        for name, values in series.items():
            if values:
                summary[f"{name}_mean"] = statistics.fmean(values)
                summary[f"{name}_max"] = max(values)
        return summary

    def flags(self, idle_below: float = 50.0, throttle_share: float = 0.1, memory_gb: float | None = None) -> list[str]:
        """Sentences about conditions that make the phase's throughput doubtful: a GPU slowed down (by a reason
        active in at least `throttle_share` of its samples), a GPU mostly idle (mean utilisation below `idle_below`
        %), the process's memory above its slice (`memory_gb`), sampling cut short. With fewer than MIN_SAMPLES
        samples there is no idle or throttle verdict, only a sentence that says so (when GPUs were sampled)."""
        flags = []
        if self.error:
            flags.append(f"telemetry incomplete: {self.error}")
        if self.gpus and len(self.samples) < MIN_SAMPLES:
            flags.append(
                f"too few samples ({len(self.samples)}) to judge GPU utilisation or throttling: the phase lasted "
                f"{self.duration_s:.1f} s, under {MIN_SAMPLES} intervals of {self.interval_s:g} s"
            )
        elif self.gpus:
            for index, readings in self._per_gpu().items():
                reasons = [reason for g in readings for reason in g.throttles]
                for reason in dict.fromkeys(reasons):  # in order of first appearance
                    share = reasons.count(reason) / len(readings)
                    if share >= throttle_share:
                        flags.append(f"GPU {index} slowed by {reason} in {share:.0%} of samples")
                mean = statistics.fmean(g.utilization for g in readings)
                if mean < idle_below:
                    flags.append(f"GPU {index} mostly idle: mean utilisation {mean:.0f}% (below {idle_below:g}%)")
        peak = max((s.rss_gb for s in self.samples), default=0.0)
        if memory_gb is not None and peak > memory_gb:
            flags.append(
                f"process memory (RSS with children) peaked at {peak:.1f} GB, above its {memory_gb:g} GB slice"
            )
        return flags

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Telemetry:
        samples = [
            Sample(**{**s, "gpus": [GpuSample(**{**g, "throttles": list(g["throttles"])}) for g in s["gpus"]]})
            for s in data["samples"]
        ]
        return cls(**{**data, "samples": samples, "cpus": list(data["cpus"]), "gpus": list(data["gpus"])})

    def _per_gpu(self) -> dict[int, list[GpuSample]]:
        per_gpu: dict[int, list[GpuSample]] = {index: [] for index in self.gpus}
        for sample in self.samples:
            for g in sample.gpus:
                per_gpu.setdefault(g.index, []).append(g)
        return {index: readings for index, readings in per_gpu.items() if readings}


class Sampler:
    """Samples every `interval_s` on a daemon thread while its `with` block runs; `telemetry` has the result.

    `gpus` are the test's leased devices (MIG instances are read as their physical GPU, once), `cpus` the indexes of
    its CPU slice (default: the CPUs this process may run on). The first sample is taken one interval after the
    start, never at it: NVML's utilisation and psutil's CPU utilisation describe the period before a call, which
    at the start is time outside the phase. An exception in a read ends sampling; the test goes on and the
    telemetry carries the exception as `error`."""

    def __init__(
        self,
        nvml: Nvml | None,
        gpus: Sequence[Gpu] = (),
        *,
        cpus: Collection[int] | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        if gpus and nvml is None:
            raise ValueError("GPUs to sample but no NVML to read them with")
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, not {interval_s}")
        online = len(psutil.cpu_times(percpu=True))  # psutil lists the online CPUs
        self.cpus = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
        if not self.cpus or not all(0 <= cpu < online for cpu in self.cpus):
            raise ValueError(f"CPU slice {self.cpus} is not within this host's {online} online CPUs")
        self.nvml = nvml
        self.gpus: list[Gpu] = []  # one per physical GPU: NVML reads a MIG instance's whole GPU
        for gpu in gpus:
            if all(g.index != gpu.index for g in self.gpus):
                self.gpus.append(gpu)
        self.interval_s = interval_s
        self._process = psutil.Process()
        self._children: dict[int, psutil.Process] = {}
        self._proc_children = Path(f"/proc/{self._process.pid}/task/{self._process.pid}/children").exists()
        self._samples: list[Sample] = []
        self._sampling_s = 0.0
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = self._stopped = time.perf_counter()

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("a Sampler samples one phase; make a new one for the next")
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="pytest-mlperf-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Wake the thread (it waits on an Event, so this is immediate unless a sample is being taken) and wait."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            if self._thread.is_alive() and self._error is None:
                self._error = f"a read hung: sampling had not stopped {JOIN_TIMEOUT_S:g} s after the phase ended"
        self._stopped = time.perf_counter()

    @property
    def telemetry(self) -> Telemetry:
        """The samples so far (all of them once stopped)."""
        running = self._thread is not None and not self._stop.is_set()
        end = time.perf_counter() if running else self._stopped
        return Telemetry(
            interval_s=self.interval_s,
            samples=list(self._samples),
            cpus=list(self.cpus),
            gpus=[g.index for g in self.gpus],
            duration_s=round(max(0.0, end - self._started), 3),
            sampling_s=round(self._sampling_s, 6),
            error=self._error,
        )

    def sample(self) -> Sample:
        """Take one sample and add it to the series. The sampling thread calls this; tests and the cost benchmark
        may call it directly (its CPU utilisation then covers the time since this thread's previous call)."""
        begin = time.perf_counter()
        gpus = [_gpu_sample(g.index, self.nvml.read(g)) for g in self.gpus] if self.nvml else []
        per_cpu = psutil.cpu_percent(percpu=True)
        sample = Sample(
            t_s=round(begin - self._started, 3),
            cpu_util=round(statistics.fmean(per_cpu[cpu] for cpu in self.cpus), 1),
            rss_gb=round(self._rss_bytes() / 2**30, 4),
            cpu_freq_mhz=self._cpu_freq_mhz(),
            gpus=gpus,
        )
        self._samples.append(sample)
        self._sampling_s += time.perf_counter() - begin
        return sample

    def _run(self) -> None:
        # psutil's cpu_percent compares the CPU times with those of the previous call (per thread from psutil 6.1,
        # per process before), so the first call's answer covers an unknown period: this call primes the counters
        # for the first sample's interval, and its answer is discarded.
        psutil.cpu_percent(percpu=True)
        due, last = self._started + self.interval_s, self._started
        while True:
            ending = self._stop.wait(max(0.0, due - time.perf_counter()))
            # At the end, one closing sample covers the time since the previous one, so that a phase shorter than
            # an interval is described too; unless that time is too short for a utilisation to mean anything and an
            # earlier sample describes the phase already (every phase gets one, however fast the host ran it).
            if ending and self._samples and time.perf_counter() - last < CLOSING_MIN_S:
                return
            try:
                self.sample()
            except Exception as exc:  # the test must go on: sampling ends and says why
                at = time.perf_counter() - self._started
                self._error = f"sampling stopped at {at:.1f} s after {len(self._samples)} samples: {exc!r}"
                return
            if ending:
                return
            last = time.perf_counter()
            due += self.interval_s
            if due < last:  # a slow read: skip the missed ticks rather than catch up in a burst
                due = last + self.interval_s

    def _rss_bytes(self) -> int:
        """The process's resident memory plus its descendants' (data-loader workers, compiler subprocesses)."""
        total, known, self._children = self._process.memory_info().rss, self._children, {}
        for pid in self._descendants():
            try:
                child = known.get(pid) or psutil.Process(pid)  # kept between samples: creating one reads /proc
                total += child.memory_info().rss
            except psutil.Error:  # exited since it was listed
                continue
            self._children[pid] = child
        return total

    def _descendants(self) -> list[int]:
        """Linux lists each thread's children in /proc; psutil's children() instead reads every process on the host
        (about 1.5 ms with 70 processes, tens of ms on a busy host), which would be most of a sample's cost."""
        if not self._proc_children:
            try:
                return [child.pid for child in self._process.children(recursive=True)]
            except psutil.Error:
                return []
        found, todo = [], [self._process.pid]
        while todo:
            pid = todo.pop()
            try:
                threads = os.listdir(f"/proc/{pid}/task")
            except OSError:  # exited
                continue
            for tid in threads:
                try:
                    with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as listing:
                        children = [int(child) for child in listing.read().split()]
                except OSError:
                    continue
                found.extend(children)
                todo.extend(children)
        return found

    def _cpu_freq_mhz(self) -> float | None:
        """The slice's mean current frequency; the host's mean where psutil cannot tell CPUs apart, None where it
        reports none (common in VMs, as are zeros)."""
        per_cpu = psutil.cpu_freq(percpu=True) if hasattr(psutil, "cpu_freq") else []
        if not per_cpu:
            return None
        chosen = [per_cpu[cpu] for cpu in self.cpus if cpu < len(per_cpu)] if len(per_cpu) > 1 else per_cpu
        current = [f.current for f in chosen if f.current > 0]
        return round(statistics.fmean(current), 1) if current else None


def _gpu_sample(index: int, reading: Reading) -> GpuSample:
    return GpuSample(
        index=index,
        utilization=reading.utilization,
        memory_used_gb=round(reading.memory_used_gb, 3),
        power_w=reading.power_w,
        temperature_c=reading.temperature_c,
        sm_clock_mhz=reading.sm_clock_mhz,
        throttles=list(reading.throttles),
    )
