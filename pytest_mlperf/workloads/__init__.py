"""Built-in workloads; importing this package registers them."""

from .registry import Quality, Setup, Trainer, Workload, get, known, register

from . import resnet  # noqa: E402, F401, I001  (registers resnet50; after the registry it uses)

__all__ = ["Quality", "Setup", "Trainer", "Workload", "get", "known", "register"]
