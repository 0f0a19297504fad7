"""What a run ran on, gathered once per session: the software stack (Python, torch, CUDA, cuDNN, NCCL), the GPUs and
their driver (NVML, from nvidia-ml-py), and the host settings that move benchmark numbers (CPU model and cores,
memory, kernel, transparent huge pages, the CPU frequency governor). A regression gate on "new driver or container"
is only meaningful when each result says which one it ran on.

Every value is a string, and a missing piece of the stack says why it is missing instead of failing the run.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

#: Linux files read for host settings (module-level so tests can point them at files of their own)
CPUINFO = Path("/proc/cpuinfo")
MEMINFO = Path("/proc/meminfo")
HUGEPAGES = Path("/sys/kernel/mm/transparent_hugepage/enabled")
GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")

#: labels for pytest-html's environment table, in the order shown
LABELS = {
    "gpus": "GPUs",
    "driver": "NVIDIA driver",
    "cuda": "CUDA (torch build)",
    "cudnn": "cuDNN",
    "nccl": "NCCL",
    "torch": "torch",
    "python": "Python",
    "cpu": "CPU",
    "cpu_cores": "CPU cores",
    "memory_gb": "Memory (GiB)",
    "kernel": "Kernel",
    "transparent_hugepages": "Transparent huge pages",
    "cpu_governor": "CPU governor",
}


def collect() -> dict[str, str]:
    """The session's system information, keyed as `LABELS`."""
    cuda = torch.cuda.is_available()
    info = {
        **_gpus(),
        "cuda": torch.version.cuda or "none (CPU build of torch)",
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
        "nccl": ".".join(map(str, torch.cuda.nccl.version())) if cuda else "none (no CUDA device)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_cores": str(os.cpu_count() or "unknown"),
        "memory_gb": _memory_gb(),
        "kernel": f"{platform.system()} {platform.release()}",
        "transparent_hugepages": selected(_read(HUGEPAGES)),
        "cpu_governor": _read(GOVERNOR),
    }
    return {key: info[key] for key in LABELS}


def selected(choices: str) -> str:
    """The bracketed choice of a sysfs setting ("always [madvise] never" -> "madvise"); the text itself otherwise."""
    match = re.search(r"\[([^\]]+)\]", choices)
    return match.group(1) if match else choices


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "empty"
    except OSError:
        return f"unknown (no {path})"


def _cpu_model() -> str:
    match = re.search(r"^model name\s*:\s*(.+)$", _read(CPUINFO), re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or platform.machine()


def _memory_gb() -> str:
    match = re.search(r"^MemTotal:\s*(\d+) kB", _read(MEMINFO), re.MULTILINE)
    return f"{int(match.group(1)) / 2**20:.1f}" if match else "unknown"


def _gpus() -> dict[str, str]:
    """GPU models (e.g. "8x NVIDIA A100-SXM4-80GB") and the driver version, from NVML."""
    try:
        import pynvml
    except ImportError:
        return {"gpus": "unknown (nvidia-ml-py is not installed)", "driver": "unknown"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {"gpus": f"none (NVML: {exc})", "driver": "none"}
    try:
        names = [
            pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(pynvml.nvmlDeviceGetCount())
        ]
        driver = pynvml.nvmlSystemGetDriverVersion()
    finally:
        pynvml.nvmlShutdown()
    counts = {name: names.count(name) for name in names}
    return {"gpus": ", ".join(f"{n}x {name}" for name, n in counts.items()) or "none", "driver": driver}
