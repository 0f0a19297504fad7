"""The resnet50 workload's synthetic quality task: its class count per batch, NVIDIA's schedule over the budget, and
the precise-BN evaluation (the walk of its shipped cases is tests/test_quality_reach.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytest_mlperf.run.training import recalibrate_batchnorm, warmup_cosine
from pytest_mlperf.workloads import get
from pytest_mlperf.workloads.resnet import label_classes

WORKLOAD = get("resnet50")


def test_labels_use_one_class_per_13_images_of_the_batch() -> None:
    real, cpu = WORKLOAD.presets["real"], WORKLOAD.presets["cpu"]
    assert [label_classes(real, batch) for batch in (100, 256, 1280, 20000)] == [7, 19, 98, 1000]
    assert label_classes(real, 13) == 2  # never a one-class task
    assert label_classes(cpu, 16) == cpu["num_classes"]


def test_warmup_then_cosine_to_zero_at_the_budget() -> None:
    factor = warmup_cosine(40, 4)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4) == 1.0 and factor(22) == pytest.approx(0.5) and factor(40) == pytest.approx(0.0)
    assert factor(100) == pytest.approx(0.0)


def test_recalibrated_statistics_are_those_of_the_batches() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    batches = [(torch.randn(8, 3, 5, 5) * 3 + 1, None) for _ in range(2)]
    model(torch.randn(8, 3, 5, 5))  # running averages of something else
    recalibrate_batchnorm(model, batches, torch.autocast("cpu", enabled=False))
    with torch.no_grad():
        outputs = torch.cat([model[0](x) for x, _ in batches])
    norm = model[1]
    assert torch.allclose(norm.running_mean, outputs.mean((0, 2, 3)), atol=1e-5)
    assert norm.momentum == 0.1  # restored
