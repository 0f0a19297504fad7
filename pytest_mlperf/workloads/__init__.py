"""Built-in workloads; importing this package registers them."""

from . import convnet, dcgan, resnet, super_resolution  # noqa: F401  (each registers its workloads)
from .registry import Quality, Setup, Trainer, Workload, get, known, register

__all__ = ["Quality", "Setup", "Trainer", "Workload", "get", "known", "register"]
