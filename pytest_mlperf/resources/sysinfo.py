"""What a run ran on, gathered once per session: the software stack (Python, torch, CUDA, cuDNN, NCCL), the GPUs and
their driver (NVML, from nvidia-ml-py), and the host settings that move benchmark numbers (CPU model and cores,
memory, kernel, transparent huge pages, the CPU frequency governor). A regression gate on "new driver or container"
is only meaningful when each result says which one it ran on.

Every value is a string, and a missing piece of the stack says why it is missing instead of failing the run.
"""

from __future__ import annotations

import itertools
import os
import platform
import re
from pathlib import Path

import torch

from .nvml import open_nvml

#: Linux files read for host settings (module-level so tests can point them at files of their own)
CPUINFO = Path("/proc/cpuinfo")
MEMINFO = Path("/proc/meminfo")
HUGEPAGES = Path("/sys/kernel/mm/transparent_hugepage/enabled")
GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
#: what container engines leave inside a container: podman's names the image and its id, Docker's is empty
CONTAINERENV = Path("/run/.containerenv")
DOCKERENV = Path("/.dockerenv")

#: labels for pytest-html's environment table, in the order shown
LABELS = {
    "gpus": "GPUs",
    "gpu_devices": "GPU devices",
    "gpu_topology": "GPU topology",
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
    "container": "Container (of this session)",
}


def collect(replay: Path | None = None) -> dict[str, str]:
    """The session's system information, keyed as `LABELS` (the GPUs from `replay`, an NVML replay file, if given)."""
    cuda = torch.cuda.is_available()
    info = {
        **_gpus(replay),
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
        "container": _container(),
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


def memory_gb() -> float | None:
    """The host's memory in GiB, None where /proc/meminfo does not say."""
    match = re.search(r"^MemTotal:\s*(\d+) kB", _read(MEMINFO), re.MULTILINE)
    return int(match.group(1)) / 2**20 if match else None


def _memory_gb() -> str:
    total = memory_gb()
    return f"{total:.1f}" if total is not None else "unknown"


def _gpus(replay: Path | None) -> dict[str, str]:
    """GPU models (e.g. "8x NVIDIA A100-SXM4-80GB"), each device with its UUID, how each pair connects, and the
    driver version, from NVML (or its replay)."""
    nvml = open_nvml(replay)
    if isinstance(nvml, str):
        return {"gpus": f"none ({nvml})", "gpu_devices": "none", "gpu_topology": "none", "driver": "none"}
    try:
        found, driver = nvml.gpus(), nvml.driver()
        boards = list({g.index: g for g in found}.values())
        pairs = [f"GPU {a.index}-{b.index}: {nvml.topology(a, b)}" for a, b in itertools.combinations(boards, 2)]
    finally:
        nvml.close()
    names = [g.name for g in found]
    counts = {name: names.count(name) for name in names}
    return {
        "gpus": ", ".join(f"{n}x {name}" for name, n in counts.items()) or "none",
        "gpu_devices": "; ".join(g.label for g in found) or "none",
        "gpu_topology": "; ".join(pairs) or "n/a",
        "driver": driver,
    }


def _container() -> str:
    """The image (and its id) this session itself runs in, when an engine says; "none" on the host. Tests run in a
    container by --runner=container carry their own image, id and digest in their rows."""
    if CONTAINERENV.is_file():
        fields = dict(re.findall(r'^(\w+)="?([^"\n]*)"?$', _read(CONTAINERENV), re.MULTILINE))
        image = fields.get("image") or "unknown image"
        return f"{image} ({fields['imageid']})" if fields.get("imageid") else image
    return "Docker (image not visible inside)" if DOCKERENV.exists() else "none (on the host)"
