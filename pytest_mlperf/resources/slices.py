"""Each parallel worker's share of the host's CPUs and memory, as Mila's suite gives each of N parallel runs N_CPU / N
and RAM / N: so N workers behave like N users of the machine, not N processes fighting over every core.

A worker is pinned to its cores (affinity), runs that many torch threads, and its memory share
is recorded with each result (and checked against the process's peak memory by the telemetry); a container run
gets both as hard limits (cpuset, memory limit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from . import sysinfo


@dataclass(frozen=True)
class Slice:
    cpus: tuple[int, ...]  #: the cores this worker runs on
    memory_gb: float  #: its share of the host's memory
    workers: int  #: how many slices the host was cut into

    @property
    def threads(self) -> int:
        return len(self.cpus)

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
        return f"cpus {self.cpuset} ({self.threads}), {self.memory_gb:.1f} GiB ({self.workers} slice(s))"


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


def available_cpus() -> tuple[int, ...]:
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))
