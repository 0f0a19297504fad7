"""Which device a test runs on, and why it cannot run here when it cannot.

This is the single-device placement the spine needs; leasing GPUs across xdist workers builds on it.
"""

from __future__ import annotations

import os

import torch

from ..config.schema import Accelerator


class Unavailable(Exception):
    """The host lacks what the system describes; the test is skipped with this reason."""


def place(accelerator: Accelerator) -> torch.device:
    """The device a system's test runs on, or Unavailable saying what is missing."""
    if accelerator.kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        return _missing(f"needs {accelerator.count}x {accelerator.model} (CUDA); this host has no CUDA GPU")
    found = torch.cuda.device_count()
    if found < accelerator.count:
        return _missing(f"needs {accelerator.count}x {accelerator.model}; this host has {found} CUDA device(s)")
    if accelerator.count > 1:
        return _missing(
            f"needs {accelerator.count} devices in one run; multi-device launch (torchrun) is not available yet"
        )
    name = torch.cuda.get_device_name(0)
    if accelerator.model.casefold() not in name.casefold() and name.casefold() not in accelerator.model.casefold():
        return _missing(f"describes {accelerator.model}; this host's cuda:0 is {name}")
    return torch.device("cuda", 0)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def share_cpu_threads(workers: int) -> int:
    """Give each of `workers` parallel test processes its share of the cores instead of all of them each."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // max(1, workers))
    torch.set_num_threads(threads)
    return threads


def _missing(reason: str) -> torch.device:
    raise Unavailable(reason)
