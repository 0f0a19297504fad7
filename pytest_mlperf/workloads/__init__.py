"""Built-in workloads; importing this package registers them."""

from . import (  # noqa: F401  (each registers its workloads)
    bert,
    convnet,
    dcgan,
    dlrm,
    gnmt,
    image_loading,
    mila_simple,
    ncf,
    resnet,
    super_resolution,
    transformer,
    word_language_model,
)
from .registry import Quality, Setup, Trainer, Workload, get, known, register

__all__ = ["Quality", "Setup", "Trainer", "Workload", "get", "known", "register"]
