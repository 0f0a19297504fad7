"""Building blocks of a training step that honour the case's precision, and the common supervised Trainer.

Every workload's step goes through `autocast` and `Updater`, so fp32/tf32/amp/fp16/bf16 mean the same everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..workloads.registry import Setup

Batch = tuple[Any, Any]  #: (inputs, targets); inputs a tensor or a tuple of tensors passed as arguments


def autocast(setup: Setup) -> contextlib.AbstractContextManager[Any]:
    """The precision's autocast region; none at all for fp32/tf32/fp16 (a disabled one still costs microseconds)."""
    low = setup.precision.autocast
    return torch.autocast(setup.device.type, dtype=low) if low else contextlib.nullcontext()


def prepare(model: nn.Module, setup: Setup, channels_last: bool = False) -> nn.Module:
    """Move a model to the device, in the precision's parameter dtype (and NHWC for image models)."""
    fmt = torch.channels_last if channels_last else torch.preserve_format
    return model.to(device=setup.device, dtype=setup.precision.params, memory_format=fmt).train()


def cast(value: Any, setup: Setup, channels_last: bool = False) -> Any:
    """Floating-point tensors (also inside tuples) to the precision's parameter dtype; others untouched."""
    if isinstance(value, tuple):
        return tuple(cast(v, setup, channels_last) for v in value)
    if isinstance(value, Tensor) and value.is_floating_point():
        fmt = torch.channels_last if channels_last and value.dim() == 4 else torch.preserve_format
        return value.to(device=setup.device, dtype=setup.precision.params, memory_format=fmt)
    return value.to(setup.device) if isinstance(value, Tensor) else value


class Updater:
    """backward, optimizer step and zero_grad, through a GradScaler when the precision needs loss scaling."""

    def __init__(self, optimizer: torch.optim.Optimizer, setup: Setup) -> None:
        self.optimizer = optimizer
        self.scaler = torch.amp.GradScaler(setup.device.type) if setup.precision.scaler else None

    def __call__(self, loss: Tensor) -> None:
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)


def forward(model: nn.Module, inputs: Any) -> Any:
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


class Supervised:
    """The common Trainer: one model and optimizer, a pool of (inputs, targets) batches cycled on the device
    (no input-pipeline cost, as NVIDIA's synthetic data backends), one loss, and a metric on held-out batches."""

    def __init__(
        self,
        setup: Setup,
        model: nn.Module,
        batches: Sequence[Batch],
        loss: Callable[[Any, Any], Tensor],
        optimizer: Callable[[nn.Module], torch.optim.Optimizer],
        metric: Callable[[nn.Module, Sequence[Batch]], float],
        held_out: Sequence[Batch],
        items_per_sample: int = 1,
        channels_last: bool = False,
    ) -> None:
        self.model = prepare(model, setup, channels_last)
        self.batches = [cast(b, setup, channels_last) for b in batches]
        self.held_out = [cast(b, setup, channels_last) for b in held_out]
        self.loss = loss
        self.metric = metric
        self.update = Updater(optimizer(self.model), setup)
        self.autocast = autocast(setup)
        self.items_per_step = setup.batch_size * items_per_sample
        self.steps = 0

    def step(self) -> Tensor:
        inputs, targets = self.batches[self.steps % len(self.batches)]
        self.steps += 1
        with self.autocast:
            loss = self.loss(forward(self.model, inputs), targets)
        self.update(loss)
        return loss.detach()

    def evaluate(self) -> float:
        self.model.eval()
        try:
            with torch.no_grad(), self.autocast:
                return float(self.metric(self.model, self.held_out))
        finally:
            self.model.train()
