"""Built-in workloads; importing this package registers them."""

from . import (  # noqa: F401  (each registers its workloads)
    atari,
    bert,
    cart_pole,
    convnet,
    dcgan,
    dlrm,
    fast_neural_style,
    gnmt,
    image_loading,
    mask_rcnn,
    mila_simple,
    minigo,
    ncf,
    resnet,
    rnnt,
    ssd,
    ssd_mobilenet,
    super_resolution,
    tacotron2,
    transformer,
    transformer_xl,
    unet3d,
    waveglow,
    word_language_model,
)
from .registry import Quality, Setup, Trainer, Workload, get, known, register

__all__ = ["Quality", "Setup", "Trainer", "Workload", "get", "known", "register"]
