"""Layers several workloads share, where `torch.nn`'s own needs help on some device."""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: Whether oneDNN can build bfloat16 RNN primitives on this CPU (it needs AVX512-BF16 or AMX).
_ONEDNN_BF16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def cpu_bf16_unsupported(x: Tensor) -> bool:
    """True where CPU bf16 autocast would send a recurrent layer to a oneDNN bf16 primitive this CPU lacks."""
    return not _ONEDNN_BF16 and x.device.type == "cpu" and torch.is_autocast_enabled("cpu")


class LSTM(nn.LSTM):
    """`nn.LSTM` that also runs under CPU bf16 autocast on CPUs without bf16 instructions (no AVX512-BF16/AMX).
    There CPU autocast sends the LSTM to oneDNN in bfloat16, whose primitive cannot be created ("could not create
    a primitive descriptor"), and ATen's own LSTM would run its matmuls in emulated bf16, several times slower
    than float32; so the layer runs in float32, as autocast does for any op without a low-precision kernel (the
    layers around it still run in bf16). Elsewhere, CUDA included, it is `nn.LSTM` unchanged."""

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if not cpu_bf16_unsupported(x):
            return super().forward(x, hx)
        with torch.autocast("cpu", enabled=False):
            return super().forward(x.float(), hx)
