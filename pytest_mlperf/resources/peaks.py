"""The roof for "fraction of peak": a GPU's datasheet peak for the math the precision uses, or on a CPU (which has no
datasheet to trust from inside a VM) the rate of a large matmul measured once per process."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from ..run.precision import Precision


@dataclass(frozen=True)
class Peak:
    flops: float  #: FLOP/s of one device
    source: str


@dataclass(frozen=True)
class GpuPeaks:
    """Dense TFLOP/s of one GPU by math: FP32 (CUDA cores), TF32 and FP16/BF16 tensor cores (FP32 accumulate)."""

    match: tuple[str, ...]  #: all of these (case-insensitive) in torch.cuda.get_device_name
    name: str
    fp32: float
    tf32: float | None
    fp16: float
    bf16: float | None


DATASHEET = "vendor datasheet, dense (no 2:4 sparsity), as in ../shared/reference/gpu-peaks.md"
#: First match wins: the more specific names first.
GPUS = (
    GpuPeaks(("h100", "pcie"), "H100 PCIe", 51.0, 378.0, 756.0, 756.0),
    GpuPeaks(("h100",), "H100 SXM5", 66.9, 494.7, 989.4, 989.4),
    GpuPeaks(("h200",), "H200 SXM (the H100 SXM5's compute)", 66.9, 494.7, 989.4, 989.4),
    GpuPeaks(("a100",), "A100", 19.5, 156.0, 312.0, 312.0),
    GpuPeaks(("v100", "pcie"), "V100 PCIe", 14.0, None, 112.0, None),
    GpuPeaks(("v100",), "V100 SXM2", 15.7, None, 125.0, None),
    GpuPeaks(("t4",), "T4", 8.1, None, 65.0, None),
    GpuPeaks(("titan rtx",), "TITAN RTX", 16.3, None, 130.0, None),
    GpuPeaks(("2080 ti",), "RTX 2080 Ti", 13.4, None, 53.8, None),
    GpuPeaks(("4090",), "RTX 4090", 82.6, 82.6, 165.2, 165.2),
)


def math_mode(precision: Precision) -> str:
    """Which units the precision's matmuls run on: fp32, tf32, fp16 or bf16."""
    if precision.autocast is not None:
        return "bf16" if precision.autocast == torch.bfloat16 else "fp16"
    if precision.params == torch.float16:
        return "fp16"
    return "tf32" if precision.tf32 else "fp32"


def gpu_peak(name: str, precision: Precision) -> Peak | None:
    """The datasheet peak of the GPU named `name` (torch.cuda.get_device_name) for the precision; None if unknown."""
    lowered = name.casefold()
    for gpu in GPUS:
        if all(part in lowered for part in gpu.match):
            mode = math_mode(precision)
            tflops = getattr(gpu, mode)
            return None if tflops is None else Peak(tflops * 1e12, f"{gpu.name} {mode} {tflops} TFLOP/s, {DATASHEET}")
    return None


def cpu_peak(dtype: torch.dtype, size: int = 1024, repeats: int = 5) -> Peak:
    """The median of `repeats` size x size matmuls in `dtype` on this process's CPU threads (1024: large enough to
    reach the kernels' peak, small enough for a CPU without bf16 instructions, where bf16 runs about 10x slower).
    Measured for each test, under its load: the median, not the best, so that a host shared with other work is
    judged against the share it gives, not against a quiet instant of it."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)  # warm-up: thread pool and kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    flops = 2 * size**3 / statistics.median(times)
    threads = torch.get_num_threads()
    name = str(dtype).removeprefix("torch.")
    return Peak(flops, f"measured: {size}x{size} {name} matmul on {threads} CPU threads, median of {repeats}")


def peak(device: torch.device, precision: Precision) -> Peak | None:
    """The device's peak for the precision's math. On a CPU, bf16 autocast leaves some ops in float32 and oneDNN
    runs bf16 convolutions through float32 where the CPU has no bf16 instructions, so its peak is the faster of the
    float32 and bf16 matmuls (the bf16 one alone can be ten times lower than what such a run achieves)."""
    if device.type == "cuda":
        return gpu_peak(torch.cuda.get_device_name(device), precision)
    dtypes = (torch.float32, torch.bfloat16) if math_mode(precision) == "bf16" else (torch.float32,)
    return max((cpu_peak(dtype) for dtype in dtypes), key=lambda p: p.flops)
