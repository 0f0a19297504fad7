"""The test matrix, one Case per test: benchmark x precision x system for training, and benchmark x scenario x
precision x system for inference (plus one accuracy Case per benchmark x precision x system)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..run.loadgen import SCENARIOS, Scenario
from ..run.precision import INFERENCE_PRECISIONS, PRECISIONS
from ..workloads import Workload, known
from ..workloads.registry import Preset
from .schema import RunSettings, System

TASKS = ("training", "inference")


@dataclass(frozen=True)
class Case:
    """One test's coordinates; results are matched across runs by `key`, never by pytest node id."""

    task: str
    workload: Workload
    precision: str
    system: System
    settings: RunSettings
    scenario: Scenario | None = None  #: what LoadGen runs, for inference
    launcher: str = ""  #: how a training case on several devices starts its ranks (torchrun, slurm); "" for one
    knobs: tuple[tuple[str, str], ...] = ()  #: one combination of the system's swept launch environment

    @property
    def benchmark(self) -> str:
        return self.workload.name

    @property
    def preset(self) -> Preset:
        """The workload's preset the system names, with the system's options for its keys."""
        return {**self.workload.presets[self.settings.preset], **self.settings.options}

    @property
    def performance(self) -> str:
        """The LoadGen scenario of an inference performance Case; empty for training and accuracy."""
        return self.scenario.name if self.scenario and self.scenario.mode == "performance" else ""

    @property
    def items_per_query(self) -> int:
        """The samples one query carries: MultiStream's samples per query, else 1 (a latency's items)."""
        scenario = self.scenario
        return scenario.multi_stream_samples_per_query if scenario and scenario.name == "multistream" else 1

    @property
    def mode(self) -> str:
        """performance or accuracy for inference, empty for training."""
        return self.scenario.mode if self.scenario else ""

    @property
    def id(self) -> str:
        """Unique in a run: an inference case names its scenario or `accuracy`, which a training case never does, so
        `resnet50-fp32-cpu` (training) and `resnet50-accuracy-fp32-cpu` name different rows."""
        task = self.performance or ("accuracy" if self.mode == "accuracy" else "")
        parts = (self.benchmark, task, self.precision, self.system.name, self.launcher, self.knob_text)
        return "-".join(filter(None, parts))

    @property
    def knob_text(self) -> str:
        """The swept knobs as the results' column shows them: "NCCL_ALGO=Tree,NCCL_P2P_LEVEL=NVL"."""
        return ",".join(f"{name}={value}" for name, value in self.knobs)

    def one_device(self) -> Case:
        """The same case on one of its system's devices, with the per-device batch: the reference of its scaling."""
        s = self.settings
        settings = dataclasses.replace(s, devices=1, batch_per="device", batch_size=s.device_batch)
        return dataclasses.replace(self, settings=settings, launcher="", knobs=())

    @property
    def global_batch(self) -> int:
        """The items of one step on all devices; for inference, the most samples the SUT batches."""
        return self.scenario.max_batch if self.scenario else self.settings.global_batch

    def key(self, compiled: bool, data: str) -> tuple[str | int | bool, ...]:
        """What matches the case's result to another run's: every field that changes what is measured (results.record's
        KEY_FIELDS, in that order), given whether the models were compiled and which data they trained on."""
        s, scenario = self.settings, self.scenario.name if self.scenario else ""
        fields = (self.task, self.benchmark, self.precision, self.system.name, s.preset, self.global_batch, s.devices)
        return (*fields, scenario, self.mode, self.knob_text, compiled, data)

    @property
    def marks(self) -> tuple[str, ...]:
        """Mark names for -m selection: family (resnet), benchmark (resnet50), task, the scenario (or `accuracy`)
        of an inference Case, and precision."""
        extra = "accuracy" if self.mode == "accuracy" else self.performance
        names = (self.workload.family, self.benchmark, self.task, extra, self.precision)
        return tuple(dict.fromkeys(filter(None, names)))


def expand(
    task: str, benchmarks: Sequence[str], systems: Iterable[System], accuracy: bool = False, launcher: str | None = None
) -> list[Case]:
    """Cases for a suite function covering `benchmarks` (all of `task` when empty), in system-file order; for
    inference, one per scenario, or with `accuracy` one accuracy pass per benchmark x precision x system. A training
    case on several devices names its launcher (`launcher`, else the system file's) in its id."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of: {', '.join(TASKS)}")
    workloads = known()
    unknown = [name for name in benchmarks if name not in workloads]
    if unknown:
        raise ValueError(f"unknown benchmark {', '.join(map(repr, unknown))}; known: {', '.join(sorted(workloads))}")
    if task == "inference":
        return _inference(set(benchmarks), systems, workloads, accuracy)
    wanted = set(benchmarks or [name for name, w in workloads.items() if w.task == task])
    cases = []
    for system in systems:
        for name, bench in system.spec.benchmarks.items():
            if name not in wanted:
                continue
            several = system.spec.accelerator.count > 1
            how = (launcher or system.spec.launch.launcher) if several else ""
            sweep = system.spec.launch.sweep if several else {}
            combinations = [tuple(zip(sweep, values, strict=True)) for values in itertools.product(*sweep.values())]
            for precision in sorted(bench.precisions, key=PRECISIONS.index):
                settings = system.settings(name, precision)
                for knobs in combinations:
                    cases.append(Case(task, workloads[name], precision, system, settings, launcher=how, knobs=knobs))
    return cases


def _inference(
    wanted: set[str], systems: Iterable[System], workloads: dict[str, Workload], accuracy: bool
) -> list[Case]:
    """Inference Cases of the systems' `inference` sections (every benchmark there when `wanted` is empty)."""
    cases = []
    for system in systems:
        for name, entry in system.spec.inference.items():
            if wanted and name not in wanted:
                continue
            scenarios = [None] if accuracy else [s for s in SCENARIOS if getattr(entry.scenarios, s) is not None]
            for precision in sorted(entry.precisions, key=INFERENCE_PRECISIONS.index):
                for scenario in scenarios:
                    only = getattr(entry.scenarios, scenario).precisions if scenario else None
                    if only is not None and precision not in only:
                        continue
                    settings = system.inference_settings(name, scenario, precision)
                    run = system.scenario(name, scenario)
                    cases.append(Case("inference", workloads[name], precision, system, settings, run))
    return cases


def marker_lines() -> list[str]:
    """`markers` ini lines for every mark a Case can carry, so --strict-markers accepts them."""
    lines = [
        "mlperf(task, *benchmarks): parametrise a test over the benchmark x precision x system matrix",
        "training: MLPerf-style training throughput tests",
        "inference: MLPerf-style inference tests",
    ]
    lines += [f"{p}: tests run in {p} precision" for p in dict.fromkeys(PRECISIONS + INFERENCE_PRECISIONS)]
    lines += [f"{s}: inference tests in MLPerf's {s} scenario" for s in SCENARIOS]
    lines.append("accuracy: inference accuracy against the FP32 model (LoadGen AccuracyOnly)")
    for name, workload in sorted(known().items()):
        lines.append(f"{workload.family}: the {workload.family} benchmark family")
        lines.append(f"{name}: {workload.description}")
    return list(dict.fromkeys(lines))
