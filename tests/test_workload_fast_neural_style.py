"""The fast_neural_style workload (pytorch/examples fast neural style, Mila's fast_style): registration, throughput
unit, learning in fp32 (and stylising past the target) and bf16, the loss pieces (Gram matrix, perceptual loss, the
metric's unit), loading torchvision's VGG16 weights, and the published configuration's shapes and model sizes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import assert_learns

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.quality import converge
from pytest_mlperf.workloads import fast_neural_style as fns
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
BATCH = 4
WORKLOAD = get("fast_neural_style")


def build(precision: str = "fp32", batch: int = BATCH, preset: str = "cpu") -> fns.FastNeuralStyle:
    torch.manual_seed(0)
    return WORKLOAD.build(Setup(WORKLOAD.presets[preset], batch, CPU, resolve(precision, CPU)))


def test_registration() -> None:
    assert (WORKLOAD.name, WORKLOAD.family, WORKLOAD.task, WORKLOAD.unit) == (
        "fast_neural_style",
        "fast_neural_style",
        "training",
        "img/s",
    )
    assert not WORKLOAD.quality.higher_is_better
    assert WORKLOAD.quality.real_target is None


def test_items_per_step_counts_content_images() -> None:
    assert build(batch=3).items_per_step == 3


def test_learns_in_fp32_then_stylises() -> None:
    trainer = build()
    assert_learns(trainer, WORKLOAD.quality, trainer.transformer)
    assert not any(p.requires_grad for p in trainer.vgg.parameters())
    # Past the (weak) target, within 80 steps: a held-out loss below the identity mapping's and a grey image's.
    while trainer.steps < 80:
        trainer.step()
    with torch.no_grad():
        identity = float(trainer.held_out_loss(lambda x: x))
        grey = float(trainer.held_out_loss(lambda x: torch.full_like(x, 127.5)))
    stylised = trainer.evaluate() * trainer.untrained
    assert stylised < 0.7 * identity and stylised < grey


def test_learns_in_bf16() -> None:
    # Batch 2: bfloat16 convolutions take a slow path on CPUs without AVX-512 bf16; the target takes about 15 steps.
    result = converge(build("bf16", batch=2), WORKLOAD.quality, 0)
    assert result.reached, result


def test_metric_unit_is_the_untrained_network() -> None:
    trainer = build()
    assert trainer.evaluate() == pytest.approx(1.0, rel=1e-5)
    assert trainer.untrained > 0 and math.isfinite(trainer.untrained)


def test_gram_matrix() -> None:
    """utils.gram_matrix on a known case, in either memory format: channels 1 and 2 everywhere give
    [[1, 2], [2, 4]] * h * w / (c * h * w)."""
    features = torch.cat([torch.ones(1, 1, 3, 5), torch.full((1, 1, 3, 5), 2.0)], 1)
    expected = torch.tensor([[[1.0, 2.0], [2.0, 4.0]]]) / 2
    torch.testing.assert_close(fns.gram(features), expected)
    torch.testing.assert_close(fns.gram(features.to(memory_format=torch.channels_last)), expected)


def test_perceptual_loss_weights_and_zero() -> None:
    """Content at relu2_2 only, style summed over the four taps, each times its published weight; zero for the
    style image stylised into itself."""
    vgg = fns.VGG16Features((4, 4, 4, 4)).requires_grad_(False)
    a, b = vgg(torch.rand(2, 3, 16, 16)), vgg(torch.rand(2, 3, 16, 16))
    grams = [fns.gram(f[:1]) for f in b]
    loss = fns.perceptual_loss(a, b, grams, 2.0, 3.0)
    content = torch.nn.functional.mse_loss(a.relu2_2, b.relu2_2)
    style = sum(torch.nn.functional.mse_loss(fns.gram(f), g.expand(2, -1, -1)) for f, g in zip(a, grams, strict=True))
    torch.testing.assert_close(loss.content, 2 * content)
    torch.testing.assert_close(loss.style, 3 * style)
    same = fns.perceptual_loss(b, b, [fns.gram(f) for f in b], 2.0, 3.0)
    assert float(same.total) == 0.0


def test_vgg_keys_are_torchvisions(tmp_path: Path) -> None:
    """torchvision's vgg16().features numbering (convolutions at 0, 2, 5, 7, 10, 12, 14, 17, 19, 21; relu1_2, relu2_2,
    relu3_3, relu4_3 at 3, 8, 15, 22), and a whole-model torchvision state_dict loads, the rest of it ignored."""
    vgg = fns.VGG16Features((4, 8, 8, 8))
    convs = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)
    assert list(vgg.state_dict()) == [f"{i}.{k}" for i in convs for k in ("weight", "bias")]
    assert vgg.taps == [3, 8, 15, 22] and len(vgg) == 23
    source = fns.VGG16Features((4, 8, 8, 8))
    state = {f"features.{k}": torch.randn_like(v) for k, v in source.state_dict().items()}
    state |= {"features.24.weight": torch.zeros(8, 8, 3, 3), "classifier.0.weight": torch.zeros(2, 2)}
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    preset = {**WORKLOAD.presets["cpu"], "vgg_widths": (4, 8, 8, 8), "vgg16_weights": str(path)}
    loaded = fns.loss_network(preset)  # loaded weights are not rescaled
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state[f"features.{key}"])
    assert not any(p.requires_grad for p in loaded.parameters())


def test_real_preset_shapes_and_size() -> None:
    """Mila's run.sh trains 64 px images through the published networks; the example's command 256 px."""
    real, example = WORKLOAD.presets["real"], WORKLOAD.presets["example"]
    assert (real["image_size"], example["image_size"]) == (64, 256)
    assert real["lr"] == 1e-3 and (real["content_weight"], real["style_weight"]) == (1e5, 1e10)
    transformer = fns.TransformerNet(real["widths"], real["residual_blocks"])
    vgg = fns.VGG16Features(real["vgg_widths"])
    # transformer_net.py: conv 9x9 3->32 (7,808) + 3x3 32->64 (18,496) + 3x3 64->128 (73,856), 5 residual blocks of
    # 2 x 147,584 (+ 512 of InstanceNorm), upsampling convs 73,792 + 18,464, conv 9x9 32->3 (7,779), InstanceNorm
    # affines of in1-in5 (640).
    assert sum(p.numel() for p in transformer.parameters()) == 1_679_235
    # torchvision vgg16().features[:23]: 1,792 + 36,928 + 73,856 + 147,584 + 295,168 + 2 x 590,080 + 1,180,160 +
    # 2 x 2,359,808.
    assert sum(p.numel() for p in vgg.parameters()) == 7_635_264
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        assert transformer(x).shape == x.shape
        features = vgg(x)
    assert [tuple(f.shape) for f in features] == [(1, 64, 64, 64), (1, 128, 32, 32), (1, 256, 16, 16), (1, 512, 8, 8)]
