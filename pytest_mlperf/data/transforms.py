"""ImageNet's training and evaluation transforms in Pillow and torch, as torchvision computes them (PyTorch's
ImageNet example, Mila's loader and convnets, NVIDIA's ConvNets): RandomResizedCrop(size, scale=(0.08, 1),
ratio=(3/4, 4/3)) with bilinear resampling, RandomHorizontalFlip, ToTensor, Normalize(ImageNet mean, std) for
training; Resize(size / 0.875) of the shorter side, CenterCrop(size), ToTensor, Normalize for evaluation.

Random numbers come from torch's generator, which DataLoader seeds differently in every worker."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torch import Tensor

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _uniform(low: float, high: float) -> float:
    return float(torch.empty(1).uniform_(low, high))


def _randint(high: int) -> int:
    """Uniform in 0..high."""
    return int(torch.randint(0, high + 1, (1,)))


def crop_box(
    width: int, height: int, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params as (left, top, right, bottom): ten tries at an area fraction in
    `scale` and a log-uniform aspect ratio in `ratio`, else the largest central crop within `ratio`."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(*scale)
        aspect = math.exp(_uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = _randint(width - w), _randint(height - h)
            return left, top, left + w, top + h
    if width / height < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif width / height > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


#: x / 255 then (x - mean) / std as one multiply-add per pixel: x * _SCALE + _OFFSET
_SCALE = (1 / (255 * np.array(STD))).astype(np.float32)
_OFFSET = (-np.array(MEAN) / np.array(STD)).astype(np.float32)


def to_tensor(image: Image.Image, normalize: bool = True) -> Tensor:
    """RGB image -> (3, H, W) float32 in [0, 1], then (x - mean) / std with ImageNet's statistics. In numpy, in
    two passes over the pixels: a handful of torch calls per image would cost more than the arithmetic here."""
    x = np.asarray(image, dtype=np.float32)
    x = x * _SCALE + _OFFSET if normalize else x * np.float32(1 / 255)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


class TrainTransform:
    """RandomResizedCrop(size, scale), RandomHorizontalFlip, ToTensor, Normalize."""

    def __init__(self, size: int = 224, scale: tuple[float, float] = (0.08, 1.0)) -> None:
        self.size, self.scale = size, scale

    def __call__(self, image: Image.Image) -> Tensor:
        box = crop_box(image.width, image.height, self.scale)
        image = image.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        if torch.rand(1) < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(image)


class EvalTransform:
    """Resize the shorter side to `resize` (256 for 224), CenterCrop(size), ToTensor, Normalize."""

    def __init__(self, size: int = 224, resize: int | None = None) -> None:
        self.size = size
        self.resize = resize or round(size / 0.875)

    def __call__(self, image: Image.Image) -> Tensor:
        w, h = image.size
        if w <= h:
            w, h = self.resize, int(self.resize * h / w)
        else:
            w, h = int(self.resize * w / h), self.resize
        image = image.resize((w, h), Image.Resampling.BILINEAR)
        left, top = round((w - self.size) / 2), round((h - self.size) / 2)
        return to_tensor(image.crop((left, top, left + self.size, top + self.size)))
