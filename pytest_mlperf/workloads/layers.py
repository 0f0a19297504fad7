"""Layers several workloads share, where `torch.nn`'s own needs help on some device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

#: Whether oneDNN can build bfloat16 RNN primitives on this CPU (it needs AVX512-BF16 or AMX).
_ONEDNN_BF16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def cpu_bf16_unsupported(x: Tensor) -> bool:
    """True where CPU bf16 autocast would send a recurrent layer to a oneDNN bf16 primitive this CPU lacks."""
    return not _ONEDNN_BF16 and x.device.type == "cpu" and torch.is_autocast_enabled("cpu")


T = TypeVar("T")


def _float(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.float() if value.is_floating_point() else value
    return tuple(_float(v) for v in value) if isinstance(value, tuple) else value


def recurrent(forward: Callable[..., T], x: Tensor, *args: Any) -> T:
    """`forward(x, *args)`, but in float32 with autocast off where `cpu_bf16_unsupported(x)`, floating tensors (also
    inside tuples, as LSTM states) cast to float32 first."""
    if not cpu_bf16_unsupported(x):
        return forward(x, *args)
    with torch.autocast("cpu", enabled=False):
        return forward(x.float(), *(_float(a) for a in args))


class LSTM(nn.LSTM):
    """`nn.LSTM` that also runs under CPU bf16 autocast on CPUs without bf16 instructions (no AVX512-BF16/AMX).
    There CPU autocast sends the LSTM to oneDNN in bfloat16, whose primitive cannot be created ("could not create
    a primitive descriptor"), and ATen's own LSTM would run its matmuls in emulated bf16, several times slower
    than float32; so the layer runs in float32, as autocast does for any op without a low-precision kernel (the
    layers around it still run in bf16). Elsewhere, CUDA included, it is `nn.LSTM` unchanged."""

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        return recurrent(super().forward, x, hx)


class LSTMCell(nn.LSTMCell):
    """`nn.LSTMCell` that runs in float32 with autocast off where `LSTM` does; elsewhere unchanged."""

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        return recurrent(super().forward, x, hx)
