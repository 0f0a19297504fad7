"""The dcgan workload (pytorch/examples DCGAN, Mila's dcgan): registration, throughput unit, the custom two-optimiser
step, learning in fp32 and bf16, and the published model sizes."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_learns

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.quality import converge
from pytest_mlperf.workloads import dcgan
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
BATCH = 16
WORKLOAD = get("dcgan")


def build(precision: str = "fp32", batch: int = BATCH, preset: str = "cpu") -> dcgan.DCGAN:
    torch.manual_seed(0)
    return WORKLOAD.build(Setup(WORKLOAD.presets[preset], batch, CPU, resolve(precision, CPU)))


def test_registration() -> None:
    assert (WORKLOAD.name, WORKLOAD.family, WORKLOAD.task, WORKLOAD.unit) == ("dcgan", "dcgan", "training", "img/s")
    assert WORKLOAD.quality.higher_is_better
    assert WORKLOAD.quality.real_target is None


def test_items_per_step_counts_real_images() -> None:
    assert build(batch=12).items_per_step == 12


def test_step_updates_both_networks() -> None:
    trainer = build(batch=4)
    g0 = [p.detach().clone() for p in trainer.generator.parameters()]
    d0 = [p.detach().clone() for p in trainer.discriminator.parameters()]
    loss = trainer.step()
    assert loss.ndim == 0 and not loss.requires_grad
    assert all(not torch.equal(a, b) for a, b in zip(g0, trainer.generator.parameters(), strict=True))
    assert all(not torch.equal(a, b) for a, b in zip(d0, trainer.discriminator.parameters(), strict=True))
    assert all(p.requires_grad for p in trainer.discriminator.parameters())
    # Adam with the example's hyper-parameters, one optimiser per network.
    for update in (trainer.update_d, trainer.update_g):
        group = update.optimizer.param_groups[0]
        assert (group["lr"], group["betas"]) == (2e-4, (0.5, 0.999))


def test_learns_in_fp32() -> None:
    trainer = build()
    assert_learns(trainer, WORKLOAD.quality, trainer.discriminator)


def test_learns_in_bf16() -> None:
    result = converge(build("bf16"), WORKLOAD.quality, 0)
    assert result.reached, result


def test_real_preset_sizes() -> None:
    # pytorch/examples dcgan with nz 100, ngf = ndf = 64, 64x64 RGB: generator 3,576,704 parameters (convolution
    # weights 819,200 + 2,097,152 + 524,288 + 131,072 + 3,072, BatchNorm 1,920), discriminator 2,765,568 (3,072 +
    # 131,072 + 524,288 + 2,097,152 + 8,192, BatchNorm 1,792).
    trainer = build(batch=2, preset="real")
    assert sum(p.numel() for p in trainer.generator.parameters()) == pytest.approx(3_576_704, rel=0.01)
    assert sum(p.numel() for p in trainer.discriminator.parameters()) == pytest.approx(2_765_568, rel=0.01)
    assert trainer.real[0].shape == (2, 3, 64, 64)
    assert math.isfinite(float(trainer.step()))
