"""Mila's convnet benchmark: ResNet-18 image classification on ImageNet-shaped data (mila-iqia/training, seed 001).

Mila's image_classification/convnets/pytorch/conv_simple.py trains `torchvision.models.resnet18()` on ImageNet
(RandomResizedCrop 224, random flip), cross-entropy loss, plain SGD at lr 0.1 (no momentum, no weight decay), and
reports train items/s = batch_size * number / time, i.e. images per second. Its "convnet_fp16" entry is the same
script with apex opt-level O1 (mixed precision): here that is the fp16/amp precision of this one workload.

Our own model code (torchvision cannot be installed beside the CPU torch build), the same network as torchvision's
resnet18 (He et al. 2015, "Deep Residual Learning for Image Recognition", table 1, 18-layer column): a 7x7/2 stem
with 3x3/2 max-pooling, four stages of two BasicBlocks (two 3x3 convolutions each, stride 2 in the first block of
stages 2-4 with a 1x1 projection shortcut), widths 64-128-256-512, global average pooling and a 1000-way Linear
layer; torchvision's initialisation (Kaiming-normal fan-out convolutions, BN weight 1 and bias 0). It has 11,689,512
parameters, torchvision's published figure (ResNet18_Weights.IMAGENET1K_V1 meta "num_params").

Data: `synthetic.class_images`, a fixed random pattern per class plus as much Gaussian noise, in ImageNet's shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..run.training import Supervised, seeded
from .metrics import top1
from .registry import Preset, Quality, Setup, Workload, register
from .resnet import ResNet
from .synthetic import class_images

#: torchvision.models.resnet18: BasicBlocks per stage, and the published parameter count (1000 classes).
LAYERS = (2, 2, 2, 2)
PARAMETERS = 11_689_512


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN and ReLU, and an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.downsample(x), inplace=True)


def model(p: Preset) -> ResNet:
    return ResNet(p["layers"], p["num_classes"], block=BasicBlock, width=p["width"])


def build(setup: Setup) -> Supervised:
    p, batch = setup.preset, setup.batch_size
    batches = class_images(p["num_classes"], p["image_size"], batch, p["batches"] + 2, setup.device)
    return Supervised(
        setup,
        seeded(lambda: model(p)),
        batches[:-2],
        loss=lambda logits, labels: F.cross_entropy(logits.float(), labels),
        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=p["lr"], momentum=p["momentum"], fused=True),
        metric=top1,
        held_out=batches[-2:],  # the same class patterns with other noise and labels
        # items = images: Mila's train item rate is batch_size * number / time, one 224x224 crop per sample.
        channels_last=True,
    )


register(
    Workload(
        name="resnet18",
        family="convnet",
        task="training",
        unit="img/s",
        description="Mila convnet: ResNet-18 (torchvision's), SGD lr 0.1, synthetic ImageNet-shaped data",
        presets={
            # conv_simple.py: torchvision resnet18 (1000 classes), 224x224 crops, SGD(lr=0.1) without momentum; the
            # batch (64 in Mila's runs) comes from the system file.
            "real": {
                "layers": LAYERS,
                "width": 64,
                "num_classes": 1000,
                "image_size": 224,
                "batches": 4,
                "lr": 0.1,
                "momentum": 0.0,
            },
            # The same 18-layer network and optimiser at a quarter of the width, on 32x32 images of 4 classes.
            "cpu": {
                "layers": LAYERS,
                "width": 16,
                "num_classes": 4,
                "image_size": 32,
                "batches": 4,
                "lr": 0.1,
                "momentum": 0.0,
            },
        },
        build=build,
        # Mila's convnet benchmark sets no accuracy target (it measures throughput only): no real_target.
        quality=Quality("top-1 accuracy", target=0.9, max_steps=60, eval_every=5),
    )
)
