"""ResNet-50 v1.5 image classification (MLPerf, Lambda and NVIDIA's DeepLearningExamples).

Our own model code: torchvision cannot be installed beside the CPU torch build. v1.5 differs from v1 only in
putting the stride-2 downsampling in each bottleneck's 3x3 convolution instead of its first 1x1, which is the
variant NVIDIA's and MLPerf's reference implementations train and publish numbers for.

Data: synthetic class images by default; with `--data-dir`, ImageNet's class folders through a DataLoader with the
reference's augmentation (`pytest_mlperf.data`), trained to MLPerf's 75.9% top-1 on the validation images within
the 90-epoch budget of NVIDIA's recipe, evaluated every epoch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..data import EvalTransform, ImageFolder, TrainTransform
from ..run.training import Data, Supervised, seeded
from .metrics import CLASSIFICATION, top1
from .registry import Quality, Setup, Workload, register
from .synthetic import class_images

#: Bottleneck blocks per stage for ResNet-50.
LAYERS = (3, 4, 6, 3)


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


def image_data(setup: Setup) -> tuple[Data, Data, int]:
    """(training batches, held-out batches, classes): ImageNet's train/ and val/ folders when `Setup.data` is a
    prepared copy, read by `workers` DataLoader processes per device; else synthetic class images made on the device
    (the held-out ones: the same class patterns with other noise and labels)."""
    p, batch = setup.preset, setup.batch_size
    if setup.data is None:
        batches = class_images(p["num_classes"], p["image_size"], batch, p["batches"] + 2, setup.device)
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
    batch = setup.batch_size
    train, held_out, classes = image_data(setup)
    return Supervised(
        setup,
        seeded(lambda: ResNet(num_classes=classes)),  # the same start in every process, whatever ran before
        train,
        loss=lambda logits, labels: F.cross_entropy(logits.float(), labels, label_smoothing=0.1),
        optimizer=lambda model: torch.optim.SGD(
            model.parameters(), lr=0.256 * batch / 256, momentum=0.875, weight_decay=3.0517578125e-05, fused=True
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
            "real": {"image_size": 224, "num_classes": 1000, "batches": 4, "workers": 5},
            "cpu": {"image_size": 32, "num_classes": 4, "batches": 4, "workers": 2},
        },
        build=build,
        quality=Quality("top-1 accuracy", target=0.9, max_steps=40, real_target=0.759, real_epochs=90),
        serving=CLASSIFICATION,
        dataset="imagenet",
    )
)
