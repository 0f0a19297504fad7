"""Building blocks of a training step that honour the case's precision, and the common supervised Trainer.

Every workload's step goes through `autocast` and `Updater`, so fp32/tf32/amp/fp16/bf16 mean the same everywhere.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..workloads.registry import Setup

Batch = tuple[Any, Any]  #: (inputs, targets); inputs a tensor or a tuple of tensors passed as arguments


def autocast(setup: Setup) -> contextlib.AbstractContextManager[Any]:
    """The precision's autocast region; none at all for fp32/tf32/fp16 (a disabled one still costs microseconds)."""
    low = setup.precision.autocast
    return torch.autocast(setup.device.type, dtype=low) if low else contextlib.nullcontext()


def prepare(model: nn.Module, setup: Setup, channels_last: bool = False) -> nn.Module:
    """Move a model to the device, in the precision's parameter dtype (and NHWC for image models), compiled when the
    setup asks (in place: the module, its parameters and state_dict keys stay the same)."""
    fmt = torch.channels_last if channels_last else torch.preserve_format
    model = model.to(device=setup.device, dtype=setup.precision.params, memory_format=fmt).train()
    if setup.compile:
        model.compile()
    return model


def cast(value: Any, setup: Setup, channels_last: bool = False) -> Any:
    """Floating-point tensors (also inside tuples) to the precision's parameter dtype; others untouched."""
    if isinstance(value, tuple):
        return tuple(cast(v, setup, channels_last) for v in value)
    if isinstance(value, Tensor) and value.is_floating_point():
        fmt = torch.channels_last if channels_last and value.dim() == 4 else torch.preserve_format
        return value.to(device=setup.device, dtype=setup.precision.params, memory_format=fmt)
    return value.to(setup.device, non_blocking=True) if isinstance(value, Tensor) else value


class OnDevice:
    """A DataLoader's batches (a real dataset) moved to the device as they are read, in the precision's dtype:
    iterable again and again (held-out data), and without end through `endless` (training data, epoch after
    epoch). Pinned host memory (the loader's pin_memory) makes the copies asynchronous."""

    def __init__(self, loader: DataLoader[Any], setup: Setup, channels_last: bool = False) -> None:
        self.loader = loader
        self.setup = setup
        self.channels_last = channels_last

    def __iter__(self) -> Iterator[Batch]:
        return (cast(batch, self.setup, self.channels_last) for batch in self.loader)

    def endless(self) -> Iterator[Batch]:
        while True:
            yield from self


class Updater:
    """backward, optimizer step and zero_grad, through a GradScaler when the precision needs loss scaling; with
    `clip`, the global gradient norm is clipped first (after unscaling), on the device without a host sync."""

    def __init__(self, optimizer: torch.optim.Optimizer, setup: Setup, clip: float | None = None) -> None:
        self.optimizer = optimizer
        self.scaler = torch.amp.GradScaler(setup.device.type) if setup.precision.scaler else None
        self.clip = clip
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

    def __call__(self, loss: Tensor) -> None:
        if self.scaler is None:
            loss.backward()
            self._clip()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            if self.clip is not None:
                self.scaler.unscale_(self.optimizer)
                self._clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def _clip(self) -> None:
        if self.clip is not None:
            nn.utils.clip_grad_norm_(self.params, self.clip, foreach=True)


@contextlib.contextmanager
def evaluating(model: nn.Module, precision: contextlib.AbstractContextManager[Any]) -> Iterator[None]:
    """Eval mode, no autograd and the precision's autocast for a quality metric; train mode again afterwards."""
    model.eval()
    try:
        with torch.no_grad(), precision:
            yield
    finally:
        model.train()


def seeded(factory: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """A model with the same initial weights in every run (so steps-to-target do not vary), the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # CPU only: models are built on the CPU, then moved
        return factory()


def scheduled(optimizer: torch.optim.Optimizer, factor: Callable[[int], float]) -> torch.optim.Optimizer:
    """`optimizer` with its learning rate times factor(step), advanced by every optimizer step (a hook, so the
    trainer needs no schedule of its own; a Python float per group, no device sync)."""
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    optimizer.register_step_post_hook(lambda *_: schedule.step())
    return optimizer


def forward(model: nn.Module, inputs: Any) -> Any:
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


Data = Sequence[Batch] | DataLoader[Any]  #: synthetic batches made up front, or a real dataset's loader


class Supervised:
    """The common Trainer: one model and optimizer, one loss, and a metric on held-out batches. Its batches are
    either a pool made up front and cycled on the device (no input-pipeline cost, as NVIDIA's synthetic data
    backends) or a real dataset's DataLoader, read on and on (the input pipeline is then part of the step)."""

    def __init__(
        self,
        setup: Setup,
        model: nn.Module,
        batches: Data,
        loss: Callable[[Any, Any], Tensor],
        optimizer: Callable[[nn.Module], torch.optim.Optimizer],
        metric: Callable[[nn.Module, Iterable[Batch]], float],
        held_out: Data,
        items_per_step: int | None = None,
        channels_last: bool = False,
        clip: float | None = None,
    ) -> None:
        """`items_per_step`: the throughput unit's items in one step's batch (default: its samples); `clip`: the
        gradient norm to clip to."""
        self.model = prepare(model, setup, channels_last)
        self.held_out: Iterable[Batch]
        if isinstance(batches, DataLoader):
            self.stream = OnDevice(batches, setup, channels_last).endless()
        else:
            self.batches = [cast(b, setup, channels_last) for b in batches]
            self.stream = itertools.cycle(self.batches)
        if isinstance(held_out, DataLoader):
            self.held_out = OnDevice(held_out, setup, channels_last)
        else:
            self.held_out = [cast(b, setup, channels_last) for b in held_out]
        self.loss = loss
        self.metric = metric
        self.update = Updater(optimizer(self.model), setup, clip)
        self.autocast = autocast(setup)
        self.items_per_step = setup.batch_size if items_per_step is None else items_per_step
        #: steps an epoch of a real dataset takes (for its training budget); None for a synthetic pool
        self.epoch_steps = len(batches) if isinstance(batches, DataLoader) else None

    def step(self) -> Tensor:
        inputs, targets = next(self.stream)
        with self.autocast:
            loss = self.loss(forward(self.model, inputs), targets)
        self.update(loss)
        return loss.detach()

    def evaluate(self) -> float:
        with evaluating(self.model, self.autocast):
            return float(self.metric(self.model, self.held_out))


def warmup_cosine(total: int, warmup: int) -> Callable[[int], float]:
    """A learning-rate factor (for `scheduled`): linear warm-up to 1 over `warmup` steps, then a cosine decay that
    reaches 0 after `total` steps (NVIDIA's ConvNets recipe, there over epochs)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, batches: Iterable[Batch], precision: contextlib.AbstractContextManager[Any]
) -> None:
    """Set every BatchNorm's running statistics to their average over a forward pass of `batches` in train mode
    ("precise BN", Wu and Johnson 2021): what an evaluation of the current weights should normalise with. Training's
    running averages (momentum 0.1) trail the weights by about ten steps, all of a short synthetic run at a large
    learning rate. Only those buffers change: training normalises with batch statistics."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches below
    try:
        with precision:
            for inputs, _ in batches:
                forward(model, inputs)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum


class Recalibrated(Supervised):
    """`Supervised` that, on a synthetic pool, evaluates with BatchNorm statistics of the current weights
    (`recalibrate_batchnorm` on the pool's first batches, `RECALIBRATION` images or the whole pool): a real dataset's
    epochs keep the running averages current, a short synthetic run at a large learning rate does not."""

    #: Images whose statistics an evaluation normalises with (fewer make them noisy at small batches).
    RECALIBRATION = 256

    def evaluate(self) -> float:
        if self.epoch_steps is None:
            count = -(-self.RECALIBRATION // self.items_per_step)
            recalibrate_batchnorm(self.model, self.batches[:count], self.autocast)
        return super().evaluate()
