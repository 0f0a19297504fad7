"""Built-in workloads; importing this package registers them."""

from . import resnet  # noqa: F401  (registers resnet50)
from .registry import Workload, get, known, register

__all__ = ["Workload", "get", "known", "register"]
