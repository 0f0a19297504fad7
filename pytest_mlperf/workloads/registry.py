"""The catalogue of workloads: what each benchmark trains, on what data, how its quality is judged, in which unit.

A workload never times itself: `build` returns a Trainer whose `step` `pytest_mlperf.run.measure` times, and whose
`evaluate` the quality check calls. A conftest or another plugin registers its own with `register(Workload(...))`
before collection.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..run.flops import Work
from ..run.precision import Precision

Preset = Mapping[str, Any]


@dataclass(frozen=True)
class Setup:
    """What a Trainer is built for: one device's share of a case."""

    preset: Preset
    batch_size: int  #: per device
    device: torch.device
    precision: Precision
    data: Path | None = None  #: a prepared real dataset (the workload's `dataset`); None: synthetic data
    compile: bool = False  #: whether `prepare` hands the models to torch.compile


class Trainer(Protocol):
    #: units of the workload's throughput (images, tokens, samples, ...) one step processes on this device
    items_per_step: int

    def step(self) -> Tensor:
        """One training step; returns the detached loss without synchronising with the device."""
        ...

    def evaluate(self) -> float:
        """The quality metric on held-out data of the same (learnable, synthetic) task."""
        ...


@runtime_checkable
class Roofed(Protocol):
    """A trainer whose step does no arithmetic to count (a data loader): it measures its own roof."""

    def work(self) -> Work:
        """What one item costs in its own unit and the host's rate of it, measured under the run's conditions."""
        ...


@dataclass(frozen=True)
class Quality:
    metric: str  #: e.g. "top-1 accuracy"
    target: float  #: what the synthetic task must reach, in any preset
    max_steps: int  #: training steps allowed to reach it, from a fresh model (the measured ones do not count)
    eval_every: int = 5  #: steps between evaluations while converging
    real_target: float | None = None  #: the published target on the real dataset (e.g. MLPerf's 0.759 top-1)
    higher_is_better: bool = True
    real_epochs: float | None = None  #: the published training budget on the real dataset
    real_eval_epochs: float = 1.0  #: how often the real run evaluates

    def reached(self, value: float) -> bool:
        return value >= self.target if self.higher_is_better else value <= self.target

    def on_real_data(self, epoch_steps: int | None) -> Quality:
        """The check on a real dataset of `epoch_steps` steps an epoch: the published target within the published
        budget, as MLPerf times it; the same check when the workload publishes neither (e.g. a data-loading one)."""
        if self.real_target is None or self.real_epochs is None or not epoch_steps:
            return self
        return replace(
            self,
            target=self.real_target,
            max_steps=math.ceil(self.real_epochs * epoch_steps),
            eval_every=max(1, round(self.real_eval_epochs * epoch_steps)),
        )


@dataclass(frozen=True)
class Serving:
    """How the workload's trained model answers inference queries: `answer` turns a batch of model outputs (and the
    preset) into one fixed-size row per sample (what LoadGen's accuracy log holds, e.g. ResNet-50's top-1 class id),
    `score` rates the answers of all samples against their held-out targets with the benchmark's accuracy metric."""

    metric: str  #: e.g. "top-1 accuracy", "F1"
    answer: Callable[[Any, Preset], Tensor]
    score: Callable[[Any, Any], float]  #: (answers as a numpy array, targets as the held-out batches hold them)
    dtype: torch.dtype = torch.int32  #: of an answer


@dataclass(frozen=True)
class Workload:
    name: str  #: the benchmark's id in system files and test ids, e.g. "resnet50"
    family: str  #: the mark that selects it with -m, e.g. "resnet"
    task: str  #: "training" or "inference"
    unit: str  #: the published throughput unit, e.g. "img/s"
    description: str
    #: size presets: "real" is the published configuration, "cpu" runs in seconds on a 2-core machine
    presets: Mapping[str, Preset]
    build: Callable[[Setup], Trainer]
    quality: Quality
    #: the `pytest_mlperf.data.DATASETS` entry `build` trains on when `Setup.data` is given; None: synthetic only
    dataset: str | None = None
    #: how its trained model is served in inference tests; None: not served
    serving: Serving | None = None
    #: preset keys whose smaller values leave the synthetic task as learnable (image size, sequence length, width):
    #: the real presets run with them on a CPU to show that every shipped case can reach its quality target
    #: (tests/test_quality_reach.py); the batch size, data pool, class count and step budget are never reduced
    reductions: Preset = field(default_factory=dict)

    def reduced(self, preset: str) -> Preset:
        """The named preset with `reductions` applied (only to keys it has)."""
        values = self.presets[preset]
        return {**values, **{k: v for k, v in self.reductions.items() if k in values}}


_WORKLOADS: dict[str, Workload] = {}


def register(workload: Workload) -> Workload:
    if workload.name in _WORKLOADS:
        raise ValueError(f"workload {workload.name!r} is registered twice")
    _WORKLOADS[workload.name] = workload
    return workload


def get(name: str) -> Workload:
    try:
        return _WORKLOADS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(sorted(_WORKLOADS))}") from None


def known() -> dict[str, Workload]:
    return dict(_WORKLOADS)
