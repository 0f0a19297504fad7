"""The unet3d workload (MLPerf Inference v0.7 3D-UNet, nnU-Net on BraTS 2019): registration, the real network's
stages, shapes and parameter count, nnU-Net's loss and deep-supervision weights against brute-force references, the
BraTS region DICE on hand-made volumes, the synthetic tumours, learning in fp32 and bf16, and serving: the answers
LoadGen would log score exactly the training metric; int8 (quantize_dynamic) leaves this convolutional net as it is,
so serving refuses it."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_learns, assert_losses_fall
from torch import nn

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.serving import Answerer, logged_answers, predict_all, served, trained
from pytest_mlperf.run.training import Supervised
from pytest_mlperf.workloads import unet3d
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
WORKLOAD = get("unet3d")
REAL = WORKLOAD.presets["real"]
CPU_PRESET = WORKLOAD.presets["cpu"]
MLPERF_FILTERS = (30, 60, 120, 240, 320, 320)


def build(precision: str = "fp32", batch: int = 16) -> Supervised:
    return WORKLOAD.build(Setup(CPU_PRESET, batch, CPU, resolve(precision, CPU)))


def test_registration() -> None:
    assert (WORKLOAD.name, WORKLOAD.family, WORKLOAD.task) == ("unet3d", "unet3d", "training")
    assert WORKLOAD.unit == "samples/s"
    assert WORKLOAD.quality.metric == "mean DICE" and WORKLOAD.quality.higher_is_better
    assert WORKLOAD.quality.real_target == 0.853  # MLPerf v0.7's fp32 reference on BraTS 2019 fold 1
    serving = WORKLOAD.serving
    assert serving is not None and serving.metric == "mean DICE"
    assert serving.dtype == torch.uint8
    assert build(batch=4).items_per_step == 4  # samples/s: one volume per sample


def expected_parameters(filters: tuple[int, ...], in_channels: int = 4, classes: int = 4) -> int:
    """Generic_UNet's parameters counted by hand: per 3x3x3 convolution 27 * cin * cout weights and cout biases, and
    2 * cout of instance-norm affine; per decoder level a bias-free 2x2x2 transposed convolution, two convolutions
    (2c -> c, c -> c) and a bias-free 1x1x1 head of `classes`."""

    def conv(cin: int, cout: int) -> int:
        return 27 * cin * cout + cout + 2 * cout

    widths = (in_channels, *filters)
    encoder = sum(conv(widths[i], widths[i + 1]) + conv(widths[i + 1], widths[i + 1]) for i in range(len(filters)))
    decoder = sum(
        8 * filters[i + 1] * filters[i] + conv(2 * filters[i], filters[i]) + conv(filters[i], filters[i])
        for i in range(len(filters) - 1)
    )
    heads = sum(filters[i] * classes for i in range(len(filters) - 1))
    return encoder + decoder + heads


def test_real_network_stages_shapes_and_parameters() -> None:
    assert REAL["filters"] == MLPERF_FILTERS and REAL["patch"] == (224, 224, 160)  # MLPerf's [4, 224, 224, 160]
    with torch.device("meta"):
        model = unet3d.model(REAL)
        deep = model(torch.empty(2, 4, 224, 224, 160))
        model.eval()
        served_logits = model(torch.empty(1, 4, 224, 224, 160))
    first = [stage[0][0] for stage in model.encoder]
    assert [c.out_channels for c in first] == list(MLPERF_FILTERS)
    assert [c.stride for c in first] == [(1, 1, 1)] + [(2, 2, 2)] * 5  # convolutional pooling
    assert all(isinstance(stage[0][1], nn.InstanceNorm3d) and stage[0][1].affine for stage in model.encoder)
    assert [(u.in_channels, u.out_channels, u.kernel_size, u.bias) for u in model.up][:2] == [
        (320, 320, (2, 2, 2), None),
        (320, 240, (2, 2, 2), None),
    ]
    # Deep supervision in training: one output per decoder stage, full resolution first; eval: the full one only.
    assert [tuple(o.shape) for o in deep] == [(2, 4, 224 // 2**i, 224 // 2**i, 160 // 2**i) for i in range(5)]
    assert served_logits.shape == (1, 4, 224, 224, 160)
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_parameters(MLPERF_FILTERS) == 29_698_480  # no published figure to compare with
    assert count - sum(p.numel() for p in model.heads.parameters()) == 29_695_400


def test_deep_supervision_weights_and_targets() -> None:
    # nnUNetTrainerV2: 1/2^i, the lowest output's weight 0, normalised (1 + 1/2 + 1/4 + 1/8 = 15/8).
    assert unet3d.supervision_weights(5) == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15, 0])
    assert unet3d.supervision_weights(2) == [1.0, 0.0]
    labels = torch.randint(4, (2, 8, 8, 8), generator=torch.Generator().manual_seed(0))
    targets = unet3d.downsampled(labels, 3)  # weights 2/3, 1/3, 0: two targets
    assert [t.shape for t in targets] == [(2, 8, 8, 8), (2, 4, 4, 4)]
    nearest = F.interpolate(labels[:, None].float(), scale_factor=0.5, mode="nearest")[:, 0].long()
    assert torch.equal(targets[1], nearest)


def brute_force_loss(logits: torch.Tensor, labels: torch.Tensor, smooth: float = 1e-5) -> float:
    """nnU-Net's cross-entropy + soft DICE loss voxel by voxel in float64 Python arithmetic."""
    n, classes = logits.shape[:2]
    probs = logits.double().softmax(1).reshape(n, classes, -1).tolist()
    flat = labels.reshape(n, -1).tolist()
    voxels = len(flat[0])
    ce = -sum(math.log(probs[i][flat[i][v]][v]) for i in range(n) for v in range(voxels)) / (n * voxels)
    dices = []
    for i in range(n):
        for c in range(1, classes):  # background left out
            tp = sum(probs[i][c][v] for v in range(voxels) if flat[i][v] == c)
            fp = sum(probs[i][c][v] for v in range(voxels) if flat[i][v] != c)
            fn = sum(1 - probs[i][c][v] for v in range(voxels) if flat[i][v] == c)
            dices.append((2 * tp + smooth) / (2 * tp + fp + fn + smooth + 1e-8))
    return ce - sum(dices) / len(dices)


def test_dice_ce_loss_against_brute_force() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 3, 3, 2, generator=g)
    labels = torch.randint(4, (2, 3, 3, 2), generator=g)
    labels[1] = labels[1].clamp(max=2)  # a class absent from a sample: its soft DICE tends to 0, not NaN
    assert float(unet3d.dice_ce_loss(logits, labels)) == pytest.approx(brute_force_loss(logits, labels), rel=1e-5)
    confident = F.one_hot(labels, 4).movedim(-1, 1).float() * 50  # the right class by far everywhere
    loss = float(unet3d.dice_ce_loss(confident, labels))
    # CE ~0; DICE 1 for the present classes, smooth / (smooth + 1e-8) ~1 for sample 1's absent class 3.
    assert loss == pytest.approx(-1.0, abs=1e-3)
    outputs = (logits, logits[:, :, ::2, ::2, ::2])
    weighted = unet3d.deep_supervision_loss(outputs, (labels,))  # two outputs: weights 1 and 0
    assert float(weighted) == pytest.approx(float(unet3d.dice_ce_loss(logits, labels)))


def volume(*labels: int) -> torch.Tensor:
    """A 1 x 1 x len(labels) label volume."""
    return torch.tensor(labels).view(1, 1, -1)


def test_region_dice_and_mean_dice_on_hand_made_volumes() -> None:
    truth = torch.stack([volume(0, 1, 1, 2, 2, 3, 0, 0), volume(0, 1, 1, 2, 2, 0, 0, 0)])
    predicted = torch.stack([volume(0, 1, 2, 2, 2, 3, 3, 0), volume(0, 0, 1, 1, 2, 0, 0, 0)])
    dice = unet3d.region_dice(predicted, truth)
    # Sample 0: whole tumour 5 true voxels, 6 predicted, 5 shared; core 3, 5 and 3; enhancing 1, 2 and 1.
    assert dice[0].tolist() == pytest.approx([10 / 11, 6 / 8, 2 / 3])
    # Sample 1: whole 4 true, 3 predicted, 3 shared; core 2, 1, 1; no enhancing tumour in either: NaN, not scored.
    assert dice[1, :2].tolist() == pytest.approx([6 / 7, 2 / 3]) and math.isnan(dice[1, 2])
    expected = ((10 / 11 + 6 / 7) / 2 + (6 / 8 + 2 / 3) / 2 + 2 / 3) / 3  # enhancing: sample 0 alone
    assert unet3d.mean_dice(predicted, truth) == pytest.approx(expected)
    assert unet3d.mean_dice(truth, truth) == 1.0
    # A region predicted where there is none scores 0 (sample 1's enhancing tumour now counts, as 0).
    predicted[1, 0, 0, 7] = 3
    assert unet3d.region_dice(predicted, truth)[1, 2] == 0.0
    # A region empty in every sample is undefined, as MLPerf's mean would be.
    assert math.isnan(unet3d.mean_dice(volume(0, 1).unsqueeze(0), volume(0, 1).unsqueeze(0)))


def test_synthetic_tumours_are_nested_and_look_like_mri() -> None:
    g = torch.Generator().manual_seed(0)
    images, labels = unet3d.tumour_volumes(CPU_PRESET, 32, CPU, g)
    assert images.shape == (32, 4, 16, 16, 16) and labels.shape == (32, 16, 16, 16)
    torch.testing.assert_close(images.mean((2, 3, 4)), torch.zeros(32, 4), atol=1e-5, rtol=0)  # z-scored
    torch.testing.assert_close(images.std((2, 3, 4)), torch.ones(32, 4), atol=1e-5, rtol=0)
    fractions = [float((labels >= k).float().mean()) for k in (1, 2, 3)]
    assert fractions[0] > 0.1 and fractions[0] > fractions[1] > fractions[2] > 0.005  # whole > core > enhancing
    assert all(len(sample.unique()) == 4 for sample in labels)  # every tumour has all three tissues here

    def mean(channel: int, label: int) -> float:
        return float(images[:, channel][labels == label].mean())

    t1, t1ce, t2, flair = range(4)
    assert mean(flair, 1) > mean(flair, 0) + 0.5 and mean(t2, 1) > mean(t2, 0) + 0.5  # edema
    assert mean(t1ce, 3) > max(mean(t1ce, label) for label in (0, 1, 2)) + 0.5  # enhancing tumour
    assert mean(t1, 2) < min(mean(t1, label) for label in (0, 1, 3))  # the non-enhancing core, dark in T1
    again = unet3d.tumour_volumes(CPU_PRESET, 32, CPU, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], images) and torch.equal(again[1], labels)


def test_learns_in_fp32() -> None:
    # Batch 4 here (about 20 steps); the serving test below trains at batch 16, as serving does.
    trainer = build(batch=4)
    assert_learns(trainer, WORKLOAD.quality)


def test_bf16_losses_finite_and_falling() -> None:
    # Batch 2 and a few steps: bfloat16 3D convolutions run about 15x slower than fp32 on this CPU (no AVX-512 bf16).
    trainer = build("bf16", batch=2)
    assert_losses_fall(trainer, 6, 2)
    assert 0.0 <= trainer.evaluate() <= 1.0


@pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning")
def test_served_answers_score_the_training_metric_and_survive_int8() -> None:
    serving = WORKLOAD.serving
    assert serving is not None
    model = trained(WORKLOAD, "cpu", CPU, 16, 32)  # trained in fp32 at batch 16; 32 held-out volumes
    assert model.inputs.shape == (32, 4, 16, 16, 16) and model.labels.shape == (32, 16, 16, 16)
    answers = predict_all(Answerer(model.model, model.inputs, serving, CPU_PRESET), 32, 16)
    assert answers.shape == (32, 16, 16, 16) and answers.dtype == np.uint8
    # LoadGen's accuracy log holds each answer's bytes; read back as the direct answers hold them, they score the
    # same DICE as the training metric on the same held-out volumes.
    logged = logged_answers({i: answers[i].tobytes() for i in range(32)}, answers)
    assert np.array_equal(logged, answers)
    score = serving.score(logged, model.labels)
    assert score == pytest.approx(model.quality.value, abs=1e-12) and score >= WORKLOAD.quality.target
    assert serving.score(model.labels.numpy().astype(np.uint8), model.labels) == 1.0
    # int8 is quantize_dynamic over Linear/LSTM: this network has neither, so the model survives it unchanged, and
    # serving refuses to time that fp32 model as "int8".
    quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model.model), {nn.Linear, nn.LSTM})
    assert [type(m) for m in quantized.modules()] == [type(m) for m in model.model.modules()]
    same = predict_all(Answerer(quantized, model.inputs, serving, CPU_PRESET), 32, 16)
    assert np.array_equal(same, answers)
    with pytest.raises(ValueError, match="found no Linear or LSTM layer to convert in UNet3D"):
        served(model.model, "int8", CPU)
