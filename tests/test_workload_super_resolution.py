"""The super_resolution workload (pytorch/examples ESPCN, Mila's reso): registration, throughput unit, learning in fp32
and bf16, the real preset's shapes and the published model size."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_learns

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.quality import converge
from pytest_mlperf.run.training import Supervised
from pytest_mlperf.workloads import super_resolution  # noqa: F401  (registers the workload)
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
BATCH = 16
WORKLOAD = get("super_resolution")


def build(precision: str = "fp32", batch: int = BATCH, preset: str = "cpu") -> Supervised:
    torch.manual_seed(0)
    return WORKLOAD.build(Setup(WORKLOAD.presets[preset], batch, CPU, resolve(precision, CPU)))


def test_registration() -> None:
    assert (WORKLOAD.name, WORKLOAD.family, WORKLOAD.task, WORKLOAD.unit) == (
        "super_resolution",
        "super_resolution",
        "training",
        "img/s",
    )
    assert WORKLOAD.quality.higher_is_better
    assert WORKLOAD.quality.real_target is None


def test_items_per_step_counts_images() -> None:
    assert build(batch=12).items_per_step == 12


def test_learns_in_fp32() -> None:
    trainer = build()
    assert_learns(trainer, WORKLOAD.quality, trainer.model)


def test_learns_in_bf16() -> None:
    # Batch 8: bfloat16 convolutions take a slow path on CPUs without AVX-512 bf16.
    result = converge(build("bf16", batch=8), WORKLOAD.quality, 0)
    assert result.reached, result


def test_target_lies_between_trivial_baselines() -> None:
    """The target lies between predicting each image's mean (13.5 dB) and nearest-neighbour upsampling (32 dB)."""
    trainer = build(batch=8)
    (x, y), _ = trainer.held_out
    size = y.shape[-1]
    mean = torch.nn.functional.mse_loss(y.mean((2, 3), keepdim=True).expand_as(y), y)
    nearest = torch.nn.functional.mse_loss(torch.nn.functional.interpolate(x, size=size, mode="nearest"), y)
    assert 10 * math.log10(1 / float(mean)) < WORKLOAD.quality.target < 10 * math.log10(1 / float(nearest))


def test_real_preset_shapes_and_size() -> None:
    # pytorch/examples super_resolution: crops of 256 - 256 % 3 = 255, inputs 85x85.
    trainer = build(batch=1, preset="real")
    (x, y) = trainer.batches[0]
    assert x.shape == (1, 1, 85, 85) and y.shape == (1, 1, 255, 255)
    assert trainer.model(x).shape == y.shape
    # model.py with upscale_factor 3: conv1 1*64*25+64, conv2 64*64*9+64, conv3 64*32*9+32, conv4 32*9*9+9 = 59,657.
    count = sum(p.numel() for p in trainer.model.parameters())
    assert count == pytest.approx(1_664 + 36_928 + 18_464 + 2_601, rel=0.01)
