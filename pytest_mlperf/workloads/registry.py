"""The catalogue of workloads: what each benchmark trains, on what data, and in which unit it is reported.

Workloads never time themselves; they describe a model, a synthetic batch, a loss and an optimizer, and
`pytest_mlperf.run` turns that into a step for `pytest_mlperf.run.measure` to time. A conftest or another plugin
registers its own with `register(Workload(...))` before collection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

Preset = Mapping[str, Any]


@dataclass(frozen=True)
class Workload:
    name: str  #: the benchmark's id in system files and test ids, e.g. "resnet50"
    family: str  #: the mark that selects it with -m, e.g. "resnet"
    task: str  #: "training" or "inference"
    unit: str  #: the published throughput unit, e.g. "img/s"
    description: str
    #: size presets: "real" is the published configuration, "cpu" runs in seconds on a 2-core machine
    presets: Mapping[str, Preset]
    build_model: Callable[[Preset], nn.Module]
    synthetic_batch: Callable[[Preset, int, torch.device], tuple[Tensor, Tensor]]
    loss: Callable[[Tensor, Tensor], Tensor]
    optimizer: Callable[[Iterable[nn.Parameter], int, torch.device], torch.optim.Optimizer]
    #: image models run faster with NHWC tensors on CUDA's tensor cores
    channels_last: bool = False


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
