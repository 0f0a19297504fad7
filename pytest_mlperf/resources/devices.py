"""Which torch device a test runs on, given what it leased, and why it cannot run here when it cannot."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..config.schema import Accelerator
from .leasing import Lease
from .nvml import Gpu


class Unavailable(Exception):
    """The host lacks what the system describes; the test is skipped with this reason."""


def fits(gpu: Gpu, accelerator: Accelerator) -> bool:
    """Whether a device is the system's model (either name containing the other, as drivers add or drop a vendor
    prefix), a MIG instance exactly when the model names a MIG profile, with at least 90% of its memory."""
    a, b = gpu.name.casefold(), accelerator.model.casefold()
    mig = " mig " in f" {b} "
    return (a in b or b in a) and (gpu.mig is not None) == mig and gpu.memory_gb >= 0.9 * accelerator.memory_gb


def place(accelerator: Accelerator, lease: Lease, visible: Sequence[Gpu]) -> torch.device:
    """The torch device of a lease, in this process: the CPU, or the leased GPU's position among the devices this
    process sees (CUDA_VISIBLE_DEVICES was set from `visible` before CUDA started); for several devices, whose ranks
    run in processes of their own, just the kind."""
    if not lease.devices:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise Unavailable(f"leased {lease.describe()}, but this torch build has no CUDA")
    if accelerator.count > 1:  # launched ranks, one per leased device
        return torch.device("cuda")
    return torch.device("cuda", list(visible).index(lease.devices[0]))


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
