"""The resnet18 workload (Mila's convnet benchmark): registration, throughput unit, learning in fp32 and bf16, and the
published model size."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_learns

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.quality import converge
from pytest_mlperf.run.training import Supervised
from pytest_mlperf.workloads import convnet
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
BATCH = 16
WORKLOAD = get("resnet18")


def build(precision: str = "fp32", batch: int = BATCH) -> Supervised:
    torch.manual_seed(0)
    return WORKLOAD.build(Setup(WORKLOAD.presets["cpu"], batch, CPU, resolve(precision, CPU)))


def test_registration() -> None:
    assert (WORKLOAD.name, WORKLOAD.family, WORKLOAD.task, WORKLOAD.unit) == (
        "resnet18",
        "convnet",
        "training",
        "img/s",
    )
    assert WORKLOAD.quality.higher_is_better
    assert WORKLOAD.quality.real_target is None  # Mila's convnet benchmark has no accuracy target
    assert WORKLOAD.presets["real"]["image_size"] == 224


def test_items_per_step_counts_images() -> None:
    assert build(batch=12).items_per_step == 12


def test_learns_in_fp32() -> None:
    trainer = build()
    assert_learns(trainer, WORKLOAD.quality, trainer.model)


def test_learns_in_bf16() -> None:
    result = converge(build("bf16"), WORKLOAD.quality, 0)
    assert result.reached, result


def test_real_preset_is_torchvision_resnet18() -> None:
    # torchvision.models.resnet18 (ResNet18_Weights.IMAGENET1K_V1 meta): 11,689,512 parameters.
    with torch.device("meta"):
        model = convnet.model(WORKLOAD.presets["real"])
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(11_689_512, rel=0.01)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 20  # 17 3x3/7x7 + 3 projections
