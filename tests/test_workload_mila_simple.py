"""Mila's small training benchmarks (regression, time_sequence, vae): the cpu presets learn their synthetic tasks to
the quality target in fp32 and bf16, and the real presets build the reference models."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_learns

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.quality import converge
from pytest_mlperf.workloads import mila_simple  # noqa: F401  (registers the workloads)
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
#: cpu-preset batch per workload: Mila's toy_reg batch (256), 16 waves, 32 images
CPU_BATCH = {"regression": 256, "time_sequence": 16, "vae": 32}
#: published batch: Mila baselines.json toy_reg --batch-size 256; the 97 training waves of
#: time_sequence_prediction; pytorch/examples/vae default --batch-size 128
REAL_BATCH = {"regression": 256, "time_sequence": 97, "vae": 128}
FAMILY_UNIT = {
    "regression": ("regression", "samples/s"),
    "time_sequence": ("lstm", "samples/s"),
    "vae": ("vae", "img/s"),
}
#: parameter counts of the reference models, from their layer sizes:
#: - regression: fc = Linear(POLY_DEGREE=4, 1) in pytorch/examples/regression/main.py: 4 + 1
#: - time_sequence: LSTMCell(1, 51) + LSTMCell(51, 51) + Linear(51, 1) in time_sequence_prediction/train.py:
#:   4*51*(1+51) + 2*4*51 = 11016, 4*51*(51+51) + 2*4*51 = 21216, 51 + 1 = 52
#: - vae: fc1 784x400, fc21/fc22 400x20, fc3 20x400, fc4 400x784 in pytorch/examples/vae/main.py:
#:   314000 + 2 * 8020 + 8400 + 314384
REFERENCE_PARAMS = {"regression": 5, "time_sequence": 32_284, "vae": 652_824}
NAMES = sorted(CPU_BATCH)


def trainer_for(name: str, precision: str, preset: str = "cpu", batch: int | None = None):
    workload = get(name)
    batch = batch or (CPU_BATCH if preset == "cpu" else REAL_BATCH)[name]
    return workload.build(Setup(workload.presets[preset], batch, CPU, resolve(precision, CPU)))


@pytest.mark.parametrize("name", NAMES)
def test_cpu_preset_learns_to_the_target_in_fp32(name: str) -> None:
    workload = get(name)
    assert (workload.family, workload.unit, workload.task) == (*FAMILY_UNIT[name], "training")
    assert set(workload.presets) == {"cpu", "real"}
    quality = workload.quality
    assert not quality.higher_is_better and quality.real_target is None

    trainer = trainer_for(name, "fp32")
    assert trainer.items_per_step == CPU_BATCH[name]  # samples / waves / images: one per batch element
    assert_learns(trainer, quality)


@pytest.mark.parametrize("name", NAMES)
def test_cpu_preset_learns_to_the_target_in_bf16(name: str) -> None:
    workload = get(name)
    trainer = trainer_for(name, "bf16")
    assert not workload.quality.reached(trainer.evaluate())
    result = converge(trainer, workload.quality, 0)
    assert result.reached, f"{result.metric} {result.value} after {result.steps} steps (target {result.target})"


@pytest.mark.parametrize("name", NAMES)
def test_real_preset_builds_the_reference_model(name: str) -> None:
    trainer = trainer_for(name, "fp32", "real")
    assert trainer.items_per_step == REAL_BATCH[name]
    assert sum(p.numel() for p in trainer.model.parameters()) == REFERENCE_PARAMS[name]


def test_real_preset_shapes() -> None:
    """The published data shapes: 256 (x..x^4, y) pairs; 97 waves of 999 steps; 128 images of 28x28."""
    regression, waves, vae = (trainer_for(name, "fp32", "real") for name in NAMES)
    x, y = regression.batches[0]
    assert x.shape == (256, 4) and y.shape == (256, 1)
    inputs, targets = waves.batches[0]
    assert inputs.shape == targets.shape == (97, 999)
    torch.testing.assert_close(inputs[:, 1:], targets[:, :-1])  # the target is the input shifted by one step
    images, _ = vae.batches[0]
    assert images.shape == (128, 1, 28, 28) and set(images.unique().tolist()) == {0.0, 1.0}
    # one real step of the two cheap ones (a real time_sequence step is 999 LSTM steps: seconds on a CPU)
    assert math.isfinite(float(regression.step())) and math.isfinite(float(vae.step()))
