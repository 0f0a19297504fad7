"""Quality metrics shared by workloads, computed on held-out batches (model already in eval mode, no grad)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..run.training import Batch, forward


def top1(model: nn.Module, batches: Sequence[Batch]) -> float:
    """Fraction of samples whose highest logit is the label."""
    correct = total = 0
    for inputs, labels in batches:
        logits = forward(model, inputs)
        correct += int((logits.argmax(-1) == labels).sum())
        total += labels.numel()
    return correct / total
