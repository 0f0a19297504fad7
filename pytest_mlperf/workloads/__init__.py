"""Built-in workloads; importing this package registers them."""

from . import resnet  # noqa: F401  (registers resnet50)
from .registry import Quality, Setup, Trainer, Workload, get, known, register

__all__ = ["Quality", "Setup", "Trainer", "Workload", "get", "known", "register"]
