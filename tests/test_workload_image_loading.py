"""The image_loading workload (Mila's loader): registration, a step is one augmented batch from a DataLoader with
workers, the synthetic ImageNet folder (cached, reused, in the real format), and a quality check that passes for a
correct pipeline and fails for broken ones."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pytest_mlperf.data import EvalTransform, ImageFolder, TrainTransform, ensure
from pytest_mlperf.data.transforms import MEAN, STD
from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.quality import converge
from pytest_mlperf.workloads import image_loading
from pytest_mlperf.workloads.image_loading import (
    CLASSES,
    ImageLoading,
    colour_accuracy,
    synthetic_folder,
    synthetic_image,
    synthetic_spec,
)
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
BATCH = 32
WORKLOAD = get("image_loading")
PRESET = WORKLOAD.presets["cpu"]


def build(precision: str = "fp32", batch: int = BATCH, root: Path | None = None) -> ImageLoading:
    return ImageLoading(Setup(PRESET, batch, CPU, resolve(precision, CPU), data=root))


@pytest.fixture(scope="module")
def trainer() -> ImageLoading:
    return build()


def test_registration() -> None:
    assert (WORKLOAD.name, WORKLOAD.family, WORKLOAD.task, WORKLOAD.unit) == (
        "image_loading",
        "image_loading",
        "training",
        "img/s",
    )
    assert WORKLOAD.build is ImageLoading and WORKLOAD.quality.real_target is None
    # Mila's baselines.json: --workers 8; RandomResizedCrop(224)
    assert WORKLOAD.presets["real"]["workers"] == 8 and WORKLOAD.presets["real"]["image_size"] == 224


def test_items_per_step_counts_images(trainer: ImageLoading) -> None:
    assert trainer.items_per_step == BATCH


def test_step_delivers_augmented_batches(trainer: ImageLoading) -> None:
    images, labels = next(trainer.batches)
    assert images.shape == (BATCH, 3, 64, 64) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and int(labels.min()) >= 0 and int(labels.max()) < CLASSES
    assert len(set(labels.tolist())) > 1  # shuffled across classes
    assert colour_accuracy(images, labels).all()  # training crops keep the class colour
    losses = [trainer.step() for _ in range(3)]
    assert all(v.dim() == 0 and not v.requires_grad and math.isfinite(float(v)) for v in losses)


def test_batches_never_run_out(trainer: ImageLoading) -> None:
    """The sampler is endless: more batches than one pass over the 128 training images."""
    for _ in range(6):
        trainer.step()


def test_quality_reached_at_once(trainer: ImageLoading) -> None:
    assert trainer.evaluate() == 1.0
    result = converge(trainer, WORKLOAD.quality, 10)
    assert result.reached and result.steps == 10


def test_metric_catches_broken_pipelines(trainer: ImageLoading) -> None:
    images, labels = next(iter(torch.utils.data.DataLoader(ImageFolder(trainer.root / "val", EvalTransform(64)), 32)))
    assert colour_accuracy(images, labels).all()
    target = WORKLOAD.quality.target
    assert colour_accuracy(images.flip(1), labels).float().mean() <= 0.5 < target  # RGB read as BGR
    assert not colour_accuracy(images, (labels + 1) % CLASSES).any()  # labels not matching the folders
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    assert colour_accuracy(images * std + mean, labels).float().mean() < target  # Normalize forgotten


def test_synthetic_folder_is_cached_and_in_imagenet_format() -> None:
    root = synthetic_folder(PRESET)
    assert root.parent.name == "pytest-mlperf"
    again = ensure(synthetic_spec(PRESET), root.parent)
    assert not again.prepared_now and again.root == root
    assert again.summary == {"classes": 8, "train_images": 8 * 16, "val_images": 8 * 4}
    train = ImageFolder(root / "train", TrainTransform(64))
    assert train.classes == [f"n{k:08d}" for k in range(CLASSES)]
    assert sorted(p.suffix for p in (root / "train" / "n00000003").iterdir()) == [".JPEG"] * 16


def test_bf16_changes_nothing() -> None:
    trainer = build("bf16", batch=8)
    assert math.isfinite(float(trainer.step())) and trainer.evaluate() == 1.0


def test_real_data_checked_for_intact_images(trainer: ImageLoading) -> None:
    """Given an ImageNet-format root, it trains on it and checks that images decode (no class colours)."""
    real = ImageLoading(Setup({**PRESET, "workers": 0}, 4, CPU, resolve("fp32", CPU), data=trainer.root))
    assert not real.synthetic and math.isfinite(float(real.step())) and real.evaluate() == 1.0


def test_real_preset_shapes() -> None:
    p = WORKLOAD.presets["real"]
    image = synthetic_image(5, *p["source_size"], torch.Generator().manual_seed(0))
    assert image.size == (500, 375)
    assert TrainTransform(p["image_size"])(image).shape == (3, 224, 224)
    assert EvalTransform(p["image_size"])(image).shape == (3, 224, 224)  # resize 256, centre crop 224
    assert image_loading.synthetic_spec(p).verify.keywords["train_images"] >= 256  # one real batch at least
