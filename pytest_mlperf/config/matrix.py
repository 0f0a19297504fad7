"""The test matrix: benchmark x precision (as each system lists them) x system, one Case per test."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..run.precision import PRECISIONS
from ..workloads import Workload, known
from .schema import RunSettings, System

TASKS = ("training", "inference")


@dataclass(frozen=True)
class Case:
    """One test's coordinates; results and baselines are matched by `key`, never by pytest node id."""

    task: str
    workload: Workload
    precision: str
    system: System
    settings: RunSettings

    @property
    def benchmark(self) -> str:
        return self.workload.name

    @property
    def id(self) -> str:
        return f"{self.benchmark}-{self.precision}-{self.system.name}"

    @property
    def key(self) -> tuple[str, str, str, int, int]:
        return (self.benchmark, self.precision, self.system.name, self.settings.global_batch, self.settings.devices)

    @property
    def marks(self) -> tuple[str, ...]:
        """Mark names for -m selection: family (resnet), benchmark (resnet50), task and precision."""
        return tuple(dict.fromkeys((self.workload.family, self.benchmark, self.task, self.precision)))


def expand(task: str, benchmarks: Sequence[str], systems: Iterable[System]) -> list[Case]:
    """Cases for a suite function covering `benchmarks` (all of `task` when empty), in system-file order."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of: {', '.join(TASKS)}")
    workloads = known()
    unknown = [name for name in benchmarks if name not in workloads]
    if unknown:
        raise ValueError(f"unknown benchmark {', '.join(map(repr, unknown))}; known: {', '.join(sorted(workloads))}")
    wanted = set(benchmarks or [name for name, w in workloads.items() if w.task == task])
    cases = []
    for system in systems:
        for name, bench in system.spec.benchmarks.items():
            if name not in wanted:
                continue
            for precision in sorted(bench.precisions, key=PRECISIONS.index):
                cases.append(Case(task, workloads[name], precision, system, system.settings(name, precision)))
    return cases


def marker_lines() -> list[str]:
    """`markers` ini lines for every mark a Case can carry, so --strict-markers accepts them."""
    lines = [
        "mlperf(task, *benchmarks): parametrise a test over the benchmark x precision x system matrix",
        "training: MLPerf-style training throughput tests",
        "inference: MLPerf-style inference tests",
    ]
    lines += [f"{p}: tests run in {p} precision" for p in PRECISIONS]
    for name, workload in sorted(known().items()):
        lines.append(f"{workload.family}: the {workload.family} benchmark family")
        lines.append(f"{name}: {workload.description}")
    return list(dict.fromkeys(lines))
