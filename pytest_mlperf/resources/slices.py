"""Each parallel worker's share of the host's CPUs and memory, as Mila's suite gives each of N parallel runs N_CPU / N
and RAM / N: so N workers behave like N users of the machine, not N processes fighting over every core.

A worker is pinned to its cores (affinity), runs a torch thread per core, and its memory share
is recorded with each result (and checked against the process's peak memory by the telemetry); a container run
gets both as hard limits (cpuset, memory limit). A test runs one thread per core that other work leaves free
(`free`): torch's threads wait for each other at every parallel region, so one thread sharing its core with another
program holds all of them back (ResNet-50 on 2 threads beside one busy loop ran 20x slower than on 1 thread). The
affinity stays the whole slice, so the kernel puts the threads on whichever cores are free from moment to moment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from . import sysinfo


@dataclass(frozen=True)
class Slice:
    cpus: tuple[int, ...]  #: the cores this worker runs on
    memory_gb: float  #: its share of the host's memory
    workers: int  #: how many slices the host was cut into
    busy: tuple[int, ...] = ()  #: the cores other work kept busy (`free`): the slice runs that many fewer threads

    @property
    def threads(self) -> int:
        return len(self.cpus) - len(self.busy)

    @property
    def cpuset(self) -> str:
        """The cores as a cpuset list ("0-3,8"), as Docker's cpuset_cpus and taskset take them."""
        runs: list[list[int]] = []
        for cpu in self.cpus:
            if runs and cpu == runs[-1][-1] + 1:
                runs[-1].append(cpu)
            else:
                runs.append([cpu])
        return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)

    def describe(self) -> str:
        busy = f", cpus {','.join(map(str, self.busy))} busy with other work" if self.busy else ""
        return f"cpus {self.cpuset} ({self.threads} threads{busy}), {self.memory_gb:.1f} GiB ({self.workers} slice(s))"


def cut(worker: int, workers: int, cpus: tuple[int, ...] | None = None, memory_gb: float | None = None) -> Slice:
    """Worker `worker`'s slice of `workers`: a contiguous run of the available cores (so a slice stays on one NUMA
    node where the numbering allows), memory divided evenly. With more workers than cores, workers share a core."""
    cpus = tuple(sorted(cpus if cpus is not None else available_cpus()))
    memory_gb = memory_gb if memory_gb is not None else sysinfo.memory_gb() or 0.0
    workers = max(1, workers)
    share = max(1, len(cpus) // workers)
    start = (worker % workers) * share % len(cpus)
    return Slice(cpus[start : start + share], memory_gb / workers, workers)


def apply(piece: Slice) -> None:
    """Pin this process to the slice's cores and size torch's thread pool to them."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, piece.cpus)
    torch.set_num_threads(piece.threads)


@contextlib.contextmanager
def applied(piece: Slice) -> Iterator[Slice]:
    """`apply` for a while (a test), then this process's cores and threads as they were."""
    cpus, threads = available_cpus(), torch.get_num_threads()
    apply(piece)
    try:
        yield piece
    finally:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cpus)
        torch.set_num_threads(threads)


STAT = Path("/proc/stat")  #: the kernel's per-core time counters (Linux)
WINDOW_S = 0.25  #: how long `free` watches the cores: 25 ticks of the kernel's 100 Hz counters


def free(piece: Slice, window_s: float = WINDOW_S, stat: Path = STAT) -> Slice:
    """The slice less the cores other work keeps busy (`keep_free`), watched for `window_s`. A slice of one core, or
    a host without /proc/stat, is kept whole."""
    if len(piece.cpus) < 2:
        return piece
    idle = idle_fractions(piece.cpus, window_s, stat)
    return keep_free(piece, idle) if idle else piece


def keep_free(piece: Slice, idle: dict[int, float]) -> Slice:
    """The slice with as many threads as its cores were idle in total (rounded, at least one); the least idle cores
    are named busy."""
    keep = min(len(piece.cpus), max(1, round(sum(idle[cpu] for cpu in piece.cpus))))
    busy = sorted(piece.cpus, key=lambda cpu: idle[cpu])[: len(piece.cpus) - keep]
    return dataclasses.replace(piece, busy=tuple(sorted(busy)))


def idle_fractions(cpus: tuple[int, ...], window_s: float = WINDOW_S, stat: Path = STAT) -> dict[int, float]:
    """Each core's idle share of the next `window_s`; {} where /proc/stat does not count them all."""
    before = _idle_and_total(stat)
    time.sleep(window_s)
    after = _idle_and_total(stat)
    if not all(cpu in before and cpu in after for cpu in cpus):
        return {}
    spent = {cpu: after[cpu][1] - before[cpu][1] for cpu in cpus}
    return {cpu: (after[cpu][0] - before[cpu][0]) / spent[cpu] if spent[cpu] > 0 else 1.0 for cpu in cpus}


def _idle_and_total(stat: Path) -> dict[int, tuple[int, int]]:
    """Each core's idle and total ticks so far: idle and iowait are idle; user, nice, system, irq, softirq and steal
    (time the hypervisor gave another guest) are not."""
    try:
        lines = stat.read_text(encoding="ascii").splitlines()
    except OSError:
        return {}
    ticks = {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and len(fields) >= 8:
            counts = [int(f) for f in fields[:8]]
            ticks[int(name[3:])] = (counts[3] + counts[4], sum(counts))
    return ticks


def available_cpus() -> tuple[int, ...]:
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))
