"""Numeric precisions a test can ask for, what each means on a device, and whether the device can run it.

- fp32: float32 everywhere, TF32 tensor-core math switched off (cuDNN enables it for convolutions by default).
- tf32: float32 tensors with TF32 matmul/convolution math (Ampere and newer); what Lambda's A100/H100 "FP32" is.
- amp: automatic mixed precision: float16 autocast with a GradScaler on CUDA, bfloat16 autocast on CPU.
- fp16: parameters and data in float16 ("pure" fp16, as Lambda's v0 ResNet-50 FP16 column); CUDA only.
- bf16: bfloat16 autocast, no loss scaling needed; CUDA from Ampere on, and CPU.
- fp16 in inference: float16 autocast (the served model keeps its float32 weights); CUDA only.
- int8 (inference only): dynamic quantization of Linear/LSTM layers (`pytest_mlperf.run.serving`); CPU only for now.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

PRECISIONS = ("fp32", "tf32", "amp", "fp16", "bf16")
INFERENCE_PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class Precision:
    name: str
    autocast: torch.dtype | None  #: dtype of autocast regions, None for no autocast
    params: torch.dtype  #: dtype of parameters and inputs
    scaler: bool  #: whether the loss needs dynamic scaling (float16 gradients underflow)
    tf32: bool


def unsupported(name: str, device: torch.device) -> str | None:
    """Why `device` cannot run precision `name`, or None when it can."""
    if name == "int8" and device.type != "cpu":
        return "int8 inference on CUDA is not supported yet (dynamic quantization runs on the CPU only)"
    if device.type == "cpu":
        if name in ("tf32", "fp16"):
            return f"{name} needs a CUDA GPU (tensor cores); the CPU has no {name} training kernels"
        return None
    capability = torch.cuda.get_device_capability(device)
    if name in ("tf32", "bf16") and capability < (8, 0):
        gpu = torch.cuda.get_device_name(device)
        return f"{name} needs compute capability 8.0 (Ampere) or newer; {gpu} has {capability[0]}.{capability[1]}"
    return None


def resolve(name: str, device: torch.device) -> Precision:
    if name == "amp":
        low = torch.float16 if device.type == "cuda" else torch.bfloat16
        return Precision(name, autocast=low, params=torch.float32, scaler=low == torch.float16, tf32=False)
    if name == "bf16":
        return Precision(name, autocast=torch.bfloat16, params=torch.float32, scaler=False, tf32=False)
    if name == "fp16":
        return Precision(name, autocast=None, params=torch.float16, scaler=False, tf32=False)
    if name in ("fp32", "tf32"):
        return Precision(name, autocast=None, params=torch.float32, scaler=False, tf32=name == "tf32")
    raise ValueError(f"unknown precision {name!r}; known: {', '.join(PRECISIONS)}")


@contextlib.contextmanager
def float32_math(precision: Precision) -> Iterator[None]:
    """Set TF32 on or off for the duration of a test, restoring the process-wide flags afterwards."""
    mode = "tf32" if precision.tf32 else "ieee"
    backends = (torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn)
    saved = [backend.fp32_precision for backend in backends]
    try:
        for backend in backends:
            backend.fp32_precision = mode
        yield
    finally:
        for backend, value in zip(backends, saved, strict=True):
            backend.fp32_precision = value
