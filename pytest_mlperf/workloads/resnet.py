"""ResNet-50 v1.5 image classification (MLPerf, Lambda and NVIDIA's DeepLearningExamples).

Our own model code: torchvision cannot be installed beside the CPU torch build. v1.5 differs from v1 only in
putting the stride-2 downsampling in each bottleneck's 3x3 convolution instead of its first 1x1, which is the
variant NVIDIA's and MLPerf's reference implementations train and publish numbers for.

Data: synthetic class images by default; with `--data-dir`, ImageNet's class folders through a DataLoader with the
reference's augmentation (`pytest_mlperf.data`), trained to MLPerf's 75.9% top-1 on the validation images within
the 90-epoch budget of NVIDIA's recipe, evaluated every epoch.

Optimiser: NVIDIA's recipe (DeepLearningExamples ConvNets configs.yml): SGD, momentum 0.875, lr 0.256 per 256 images,
label smoothing 0.1, a linear warm-up over 8 of the 90 epochs, then a cosine decay to 0 at the end of the budget. On
the synthetic pool the budget is `Quality.max_steps` and the schedule keeps its shape (warm-up over 8/90 of it).
Without a warm-up, the learning rate of the largest shipped batch (1.28 at 1280 images) collapsed the network onto
one class within a few steps.

Synthetic quality task: the model keeps its 1000 outputs and the labels are drawn from one class per `per_class`
(13) images of the batch (7 classes at 100 images, 98 at 1280), so that each class is seen about 13 times a step and
52 times in a pool of 4 batches, and the classifier's update per class (the learning rate over the class count, both
proportional to the batch) is the same at every shipped batch. With 10 classes at every batch, full width at 1280
images blew up (loss 25 after 5 steps: each class row's update is 13x larger than at 100 images). Held-out top-1
must reach 0.9 (the untrained model scores about 0, a constant answer 1 / classes). The held-out evaluation
normalises with BatchNorm statistics measured on a pool batch with the current weights (`Recalibrated`): training's
running averages trail a short run at a large learning rate by about ten steps.

Quality-preserving reductions (`Workload.reductions`, tests/test_quality_reach.py): 16x16 images (the class patterns
are per-pixel noise, as separable at any size) and width 16. Width is not neutral: the classifier's fan-in (32 x
width) sets how fast its logits move, and at width 8 the 98 classes of the largest batch stalled at 0.74. Width 16
reaches the target at every shipped batch in 5-25 steps; at width 64 (the real value, 16x16 images, by hand) batch
100 reached 1.0 after 5 steps and batch 1280 0.949 after 20.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..data import EvalTransform, ImageFolder, TrainTransform
from ..run.training import Data, Recalibrated, Supervised, scheduled, seeded, warmup_cosine
from .metrics import CLASSIFICATION, top1
from .registry import Preset, Quality, Setup, Workload, register
from .synthetic import class_images

#: Bottleneck blocks per stage for ResNet-50.
LAYERS = (3, 4, 6, 3)
#: Synthetic: held-out top-1 0.9 within 40 steps of a fresh model. ImageNet: MLPerf's 75.9% within 90 epochs.
QUALITY = Quality("top-1 accuracy", target=0.9, max_steps=40, real_target=0.759, real_epochs=90)
#: NVIDIA's recipe warms the learning rate up over the first 8 of its 90 epochs.
WARMUP_EPOCHS = 8


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        # Zero-initialised last BN gamma, as in NVIDIA's recipe: each block starts as the identity.
        nn.init.zeros_(self.bn3.weight)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or inplanes != width:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.downsample(x), inplace=True)


class ResNet(nn.Module):
    """A ResNet of `block`s (Bottleneck here, BasicBlock for ResNet-18/34); `width` is the first stage's channel
    count (64 in the paper), doubled per stage."""

    def __init__(
        self,
        layers: Iterable[int] = LAYERS,
        num_classes: int = 1000,
        block: type[nn.Module] = Bottleneck,
        width: int = 64,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages: list[nn.Module] = []
        inplanes = width
        for i, blocks in enumerate(layers):
            planes = width * 2**i
            for b in range(blocks):
                stages.append(block(inplanes, planes, stride=2 if b == 0 and i > 0 else 1))
                inplanes = planes * block.expansion
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def label_classes(p: Preset, batch: int) -> int:
    """How many classes the synthetic labels are drawn from: one per `per_class` images of a batch (all the model's
    classes when the preset does not say), at least 2 and at most the model's."""
    if "per_class" not in p:
        return p["num_classes"]
    return min(p["num_classes"], max(2, batch // p["per_class"]))


def image_data(setup: Setup) -> tuple[Data, Data, int]:
    """(training batches, held-out batches, classes): ImageNet's train/ and val/ folders when `Setup.data` is a
    prepared copy, read by `workers` DataLoader processes per device; else synthetic class images made on the device
    (the held-out ones: the same class patterns with other noise and labels)."""
    p, batch = setup.preset, setup.batch_size
    if setup.data is None:
        batches = class_images(label_classes(p, batch), p["image_size"], batch, p["batches"] + 2, setup.device)
        return batches[:-2], batches[-2:], p["num_classes"]
    train = ImageFolder(setup.data / "train", TrainTransform(p["image_size"]))
    val = ImageFolder(setup.data / "val", EvalTransform(p["image_size"]))
    workers = p["workers"]
    common = {"num_workers": workers, "persistent_workers": workers > 0, "pin_memory": setup.device.type == "cuda"}
    return (
        DataLoader(train, batch, shuffle=True, drop_last=True, **common),
        DataLoader(val, batch, **common),
        len(train.classes),
    )


def build(setup: Setup) -> Supervised:
    p, batch = setup.preset, setup.batch_size
    train, held_out, classes = image_data(setup)
    budget = QUALITY.max_steps if setup.data is None else QUALITY.on_real_data(len(train)).max_steps
    return Recalibrated(
        setup,
        seeded(lambda: ResNet(num_classes=classes, width=p["width"])),  # the same start in every process
        train,
        loss=lambda logits, labels: F.cross_entropy(logits.float(), labels, label_smoothing=0.1),
        optimizer=lambda model: scheduled(
            torch.optim.SGD(
                model.parameters(), lr=0.256 * batch / 256, momentum=0.875, weight_decay=3.0517578125e-05, fused=True
            ),
            warmup_cosine(budget, round(budget * WARMUP_EPOCHS / QUALITY.real_epochs)),
        ),
        metric=top1,
        held_out=held_out,
        channels_last=True,
    )


register(
    Workload(
        name="resnet50",
        family="resnet",
        task="training",
        unit="img/s",
        description="ResNet-50 v1.5, SGD with momentum, synthetic ImageNet-shaped data",
        presets={
            # workers: NVIDIA DeepLearningExamples ConvNets main.py's default (-j 5) DataLoader processes per GPU.
            # num_classes: the model's outputs; label_classes: how many of them the synthetic labels use.
            "real": {
                "image_size": 224,
                "width": 64,
                "num_classes": 1000,
                "per_class": 13,
                "batches": 4,
                "workers": 5,
            },
            "cpu": {"image_size": 32, "width": 64, "num_classes": 4, "batches": 4, "workers": 2},
        },
        build=build,
        quality=QUALITY,
        reductions={"image_size": 16, "width": 16},
        serving=CLASSIFICATION,
        dataset="imagenet",
    )
)
