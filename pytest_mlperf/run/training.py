"""Turns a workload's description into one training step: forward, loss, backward and optimizer update."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor

from ..workloads import Workload
from ..workloads.registry import Preset
from .precision import Precision


def training_step(
    workload: Workload, preset: Preset, batch_size: int, device: torch.device, precision: Precision
) -> Callable[[], Tensor]:
    """Build the model, optimizer and a synthetic batch on `device`; return a step that returns the detached loss.

    The step never synchronises with the device: `measure` syncs at block ends, as the field's harnesses do.
    """
    memory_format = torch.channels_last if workload.channels_last else torch.preserve_format
    model = workload.build_model(preset).to(device=device, dtype=precision.params, memory_format=memory_format)
    model.train()
    inputs, targets = workload.synthetic_batch(preset, batch_size, device)
    if inputs.is_floating_point():
        inputs = inputs.to(dtype=precision.params, memory_format=memory_format)
    optimizer = workload.optimizer(model.parameters(), batch_size, device)
    scaler = torch.amp.GradScaler(device.type) if precision.scaler else None
    # entering even a disabled autocast costs microseconds a step: only enter one that does something
    low = precision.autocast
    autocast = torch.autocast(device.type, dtype=low) if low else contextlib.nullcontext()

    def step() -> Tensor:
        with autocast:
            loss = workload.loss(model(inputs), targets)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step
