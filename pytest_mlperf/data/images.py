"""Image folders as torchvision's ImageFolder reads them, without torchvision: one class per subfolder (sorted
names -> labels 0..n-1), images decoded with Pillow and converted to RGB."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from .imagenet import IMAGE_SUFFIXES


def decode(path: str | os.PathLike[str]) -> Image.Image:
    """An image file as RGB (torchvision's pil_loader)."""
    with Image.open(path) as image:
        return image.convert("RGB")


class ImageFolder(Dataset[tuple[Tensor, int]]):
    """(transform(image), label) per image file of `root`/<class>/. Paths and labels are kept in numpy arrays, not
    Python lists, so forked DataLoader workers do not copy them page by page as reference counts change."""

    def __init__(self, root: str | os.PathLike[str], transform: Callable[[Image.Image], Tensor]) -> None:
        root = Path(root)
        self.classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
        paths, labels = [], []
        for label, name in enumerate(self.classes):
            found = sorted(e.path for e in os.scandir(root / name) if Path(e.name).suffix.lower() in IMAGE_SUFFIXES)
            paths += found
            labels += [label] * len(found)
        if not paths:
            raise FileNotFoundError(f"no images in class folders of {root}")
        self.paths = np.array(paths)
        self.labels = np.array(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(decode(self.paths[index])), int(self.labels[index])
