"""Learnable synthetic data: the real shapes, with a signal a model can learn in a few steps, so that quality can
be asserted without downloading a dataset. Generated on the device with a seeded generator."""

from __future__ import annotations

import torch
from torch import Tensor


def class_images(
    num_classes: int, size: int, batch_size: int, count: int, device: torch.device, seed: int = 0
) -> list[tuple[Tensor, Tensor]]:
    """`count` batches of images, each a fixed random pattern of its class plus as much Gaussian noise."""
    g = torch.Generator(device=device).manual_seed(seed)
    patterns = torch.randn(num_classes, 3, size, size, generator=g, device=device)
    batches = []
    for _ in range(count):
        labels = torch.randint(num_classes, (batch_size,), generator=g, device=device)
        noise = torch.randn(batch_size, 3, size, size, generator=g, device=device)
        batches.append((patterns[labels] + noise, labels))
    return batches
