"""Mila's "loader" benchmark (mila-iqia/training image_loading/loader/pytorch/loaders.py): how fast the input
pipeline delivers ImageNet training batches, with no model at all. The seed's FAQ: it "only measures IO speed when
loading JPEG images"; its published target is 1200 img/s.

The reference reads ImageNet/train with torchvision's ImageFolder, RandomResizedCrop(224), RandomHorizontalFlip,
ToTensor and Normalize(ImageNet mean, std), through DataLoader(batch_size, shuffle=True, num_workers=--workers,
pin_memory=True), and times taking the next batch, moving it to the device and synchronising. Its baselines.json runs
it with --workers 8 and batch sizes 32 to 256. Here: the same through `pytest_mlperf.data` (ImageFolder and the
transforms in Pillow and torch, decoding with Pillow as torchvision does), one step = one batch taken and moved
to the device; it returns the batch's mean pixel, a detached scalar the harness checks is finite. One item is one
image (img/s). There is no model: the precision has no effect and there is no parameter count.

Simplified: an endless shuffled sampler (a new permutation whenever one is used up) instead of epochs, so that a
small synthetic folder never stalls the timed steps on the workers' restart at an epoch's end, as a real ImageNet
epoch of 5,000 batches never does in the reference's 150 timed steps.

Data: by default a synthetic ImageNet-format folder (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG) of 8 classes, written
once in a cache folder under the system's temporary directory and reused by later runs and parallel workers (see
`synthetic_folder`). Each class has its own base colour, one corner of the cube [0.25, 0.75]^3, under a smooth
texture and fine noise, so that the JPEGs cost a realistic amount to decode. `ImageLoading(setup, root)` reads a
real ImageNet instead when `Setup.data` is one (`--data-dir`).

Quality: this benchmark trains nothing, so its check is that the pipeline delivers the right data: the fraction of
validation images (evaluation transform, through a DataLoader) whose mean colour, un-normalised, is nearest to their
label's class colour. A loader that is fast because it is wrong (images not decoded, colour channels swapped, wrong
normalisation, labels not matching folders) scores far below the target 0.99; a correct one scores 1.0 from the
first step. On real ImageNet, which has no class colours, it is the fraction of validation images that decode to
finite tensors of the right shape.
"""

from __future__ import annotations

import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, RandomSampler, Subset

from ..data import DatasetSpec, EvalTransform, ImageFolder, TrainTransform, ensure, imagenet
from ..data.transforms import MEAN, STD
from ..run.flops import Work
from .registry import Preset, Quality, Setup, Workload, register

#: the class colours: the corners of [0.25, 0.75]^3, class k's channel c bright when bit (2 - c) of k is set
PALETTE = torch.tensor([[0.25 + 0.5 * ((k >> (2 - c)) & 1) for c in range(3)] for k in range(8)])
CLASSES = len(PALETTE)
EVAL_IMAGES = 512
ROOF_SECONDS = 0.2  #: each round of the roof decodes for at least this long, whatever the host's speed


def synthetic_image(label: int, width: int, height: int, generator: torch.Generator) -> Image.Image:
    """The class colour under a smooth texture (noise on 16-pixel cells, bicubically upsampled) and fine noise."""
    coarse = torch.randn(1, 3, max(height // 16, 2), max(width // 16, 2), generator=generator) * 0.15
    texture = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
    fine = torch.randn(3, height, width, generator=generator) * 0.04
    pixels = ((PALETTE[label].view(3, 1, 1) + texture + fine).clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).numpy())


def write_synthetic(downloads: Path, out: Path, p: Preset) -> None:
    """`prepare` of the synthetic spec (it has no downloads): the class folders of both splits, seeded."""
    width, height = p["source_size"]
    for split, per_class in (("train", p["train_per_class"]), ("val", p["val_per_class"])):
        generator = torch.Generator().manual_seed(int(split == "val"))
        for label in range(CLASSES):
            folder = out / split / f"n{label:08d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                image = synthetic_image(label, width, height, generator)
                image.save(folder / f"n{label:08d}_{i}.JPEG", quality=90)


def synthetic_spec(p: Preset) -> DatasetSpec:
    """The synthetic folder as a dataset that `ensure` prepares (once, under its lock) and verifies."""
    width, height = p["source_size"]
    train, val = p["train_per_class"], p["val_per_class"]
    return DatasetSpec(
        name="imagenet-synthetic",
        folder=f"imagenet-synthetic-v1-{width}x{height}-{train}-{val}",
        downloads=(),
        layout=("train", "val"),
        described="train/<wnid>/*.JPEG and val/<wnid>/*.JPEG",
        prepare=partial(write_synthetic, p=p),
        verify=partial(imagenet.verify, classes=CLASSES, train_images=CLASSES * train, val_per_class=val),
    )


def synthetic_folder(p: Preset) -> Path:
    """The synthetic ImageNet-format folder of preset `p`, written on first use in <tmp>/pytest-mlperf/."""
    cache = Path(tempfile.gettempdir()) / "pytest-mlperf"
    cache.mkdir(exist_ok=True)
    return ensure(synthetic_spec(p), cache).root


def colour_accuracy(images: Tensor, labels: Tensor) -> Tensor:
    """Per image (normalised, (B, 3, H, W)), whether its mean colour is nearest to its label's class colour."""
    colour = images.float().mean((2, 3)) * torch.tensor(STD) + torch.tensor(MEAN)
    return torch.cdist(colour, PALETTE).argmin(1) == labels


def intact(images: Tensor, labels: Tensor, classes: int) -> Tensor:
    """Per image, whether it decoded to finite values with a label in range (real data has no class colours)."""
    return images.flatten(1).isfinite().all(1) & (labels >= 0) & (labels < classes)


class ImageLoading:
    """Trainer whose step is taking one augmented batch from the DataLoader and moving it to the device."""

    def __init__(self, setup: Setup) -> None:
        p = setup.preset
        self.synthetic = setup.data is None
        self.root = synthetic_folder(p) if setup.data is None else setup.data
        self.size = p["image_size"]
        self.device = setup.device
        self.train = train = ImageFolder(self.root / "train", TrainTransform(self.size))
        workers = p["workers"]
        loader = DataLoader(
            train,
            batch_size=setup.batch_size,
            sampler=RandomSampler(train, num_samples=sys.maxsize),  # endless: a new permutation when one ends
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=setup.device.type == "cuda",
        )
        self.batches = iter(loader)
        self.items_per_step = setup.batch_size

    def step(self) -> Tensor:
        images, _ = (t.to(self.device, non_blocking=True) for t in next(self.batches))  # labels too, as the reference
        return images.mean()

    def work(self) -> Work:
        """A loader does no arithmetic: its roof is the test's process decoding and transforming the same training
        images one at a time without the DataLoader, measured before the run under its conditions (the best of 3
        rounds). A loader far below it does extra work (decoding twice, a slow path); its workers may exceed it."""
        best = 0.0
        for _ in range(3):
            count, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < ROOF_SECONDS or count < 8:
                self.train[count % len(self.train)]
                count += 1
            best = max(best, count / elapsed)
        how = "measured: training images decoded and transformed one at a time in the test's process, best of 3 rounds"
        return Work(1.0, best, how, unit="decoded image")

    def evaluate(self) -> float:
        """Fraction of validation images delivered right: their class colour; on real data, intact (of at most
        EVAL_IMAGES evenly spaced ones, not all 50,000)."""
        val = ImageFolder(self.root / "val", EvalTransform(self.size))
        sample = Subset(val, range(0, len(val), -(-len(val) // EVAL_IMAGES)))
        checks = [
            colour_accuracy(images, labels) if self.synthetic else intact(images, labels, len(val.classes))
            for images, labels in DataLoader(sample, batch_size=64)
        ]
        return float(torch.cat(checks).float().mean())


register(
    Workload(
        name="image_loading",
        family="image_loading",
        task="training",
        unit="img/s",
        description="Mila loader: ImageNet JPEG decoding and augmentation through a DataLoader, no model",
        presets={
            # Mila's baselines.json: --workers 8, RandomResizedCrop(224); batch sizes 32-256 (systems choose). The
            # synthetic JPEGs have ImageNet's most common size, 500x375; 8 x 64 training images (>= 2 batches of 256).
            "real": {
                "image_size": 224,
                "workers": 8,
                "source_size": (500, 375),
                "train_per_class": 64,
                "val_per_class": 8,
            },
            # 64-pixel crops of 96x72 JPEGs, 2 workers (this CPU's cores): about 20-40 ms per batch of 32.
            "cpu": {
                "image_size": 64,
                "workers": 2,
                "source_size": (96, 72),
                "train_per_class": 16,
                "val_per_class": 4,
            },
        },
        build=ImageLoading,
        dataset="imagenet",
        # Reached from the first evaluation when the pipeline is right (no training), so one step of budget.
        quality=Quality("validation images delivered with their class's colour (fraction)", target=0.99, max_steps=1),
    )
)
