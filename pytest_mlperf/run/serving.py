"""Serving a trained classifier to LoadGen: train it once, then answer queries with its top-1 class ids.

Inference needs a model that has learnt something, or accuracy against the FP32 reference means nothing: the
training workload's trainer (any `Supervised` classifier) is built in fp32 and trained to its synthetic quality
target, once per session per (benchmark, preset), and every precision serves a copy of that one model.

- fp32: the trained model as it is.
- bf16: the same model under bfloat16 autocast.
- int8: `torch.ao.quantization.quantize_dynamic` of its Linear and LSTM layers (int8 weights, activations quantised
  on the fly), CPU only. For a convolutional network such as ResNet-50 that is the final fully connected layer only:
  the convolutions stay fp32, so the speed-up is small and the accuracy loss too.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..workloads.registry import Setup, Workload
from .precision import resolve
from .quality import QualityResult, converge
from .training import forward

#: the training batch of the model that is served: small, so the cpu presets converge in seconds
TRAIN_BATCH = 16
#: the fraction of the FP32 model's accuracy each precision must keep: MLPerf's ResNet-50 target (99% of top-1)
ACCURACY_TARGET = 0.99


@dataclass(frozen=True)
class Trained:
    """A classifier trained to its quality target, with the held-out samples it is served on."""

    model: nn.Module  #: fp32, eval mode
    inputs: Tensor  #: held-out samples, stacked on the first dimension
    labels: Tensor  #: their classes
    quality: QualityResult


#: (benchmark, preset, device) -> the trained fp32 model, its quality, and how many batches its held-out set has
_MODELS: dict[tuple[str, str, str], tuple[nn.Module, QualityResult, int]] = {}
_SAMPLES: dict[tuple[str, str, str, int], tuple[Tensor, Tensor]] = {}


def trained(workload: Workload, preset: str, device: torch.device, samples: int) -> Trained:
    """The workload's model trained in fp32 to its quality target, once per process per (benchmark, preset, device)
    so that every scenario and precision serves the same model, with `samples` held-out samples. Raises
    RuntimeError when the target is not reached: serving an untrained model makes every accuracy check a coin toss."""
    key = (workload.name, preset, str(device))
    if key not in _MODELS:
        trainer = workload.build(Setup(workload.presets[preset], TRAIN_BATCH, device, resolve("fp32", device)))
        quality = converge(trainer, workload.quality, 0)
        if not quality.reached:
            raise RuntimeError(
                f"{workload.name} ({preset}) did not reach {quality.metric} {quality.target} in {quality.steps} "
                f"steps (got {quality.value:.4g}); there is no trained model to serve"
            )
        _MODELS[key] = trainer.model.eval(), quality, len(list(trainer.held_out))  # type: ignore[attr-defined]
    model, quality, held_batches = _MODELS[key]
    if (*key, samples) not in _SAMPLES:
        _SAMPLES[(*key, samples)] = _held_out(workload, preset, device, math.ceil(samples / held_batches), samples)
    return Trained(model, *_SAMPLES[(*key, samples)], quality)


def _held_out(workload: Workload, preset: str, device: torch.device, batch: int, samples: int) -> tuple[Tensor, Tensor]:
    """`samples` distinct held-out samples of the training task: a trainer is built (not trained) with a batch that
    makes its held-out set that large, and only that set is kept. Distinct samples matter: cycling 32 of them through
    256 makes every flipped answer count 8 times, and a 99% accuracy target meaningless. (A workload whose held-out
    set does not grow with the batch gives fewer; `Classifier` then cycles through them.)"""
    setup = Setup(workload.presets[preset], batch, device, resolve("fp32", device))
    held = list(workload.build(setup).held_out)  # type: ignore[attr-defined]  (Supervised's)
    inputs, labels = torch.cat([x for x, _ in held]), torch.cat([y for _, y in held])
    return inputs[:samples], labels[:samples]


def served(
    model: nn.Module, precision: str, device: torch.device
) -> tuple[nn.Module, Callable[[], contextlib.AbstractContextManager[Any]]]:
    """The model to serve in `precision` and the context each prediction runs in (autocast for bf16)."""
    if precision == "fp32":
        return model, contextlib.nullcontext
    if precision == "bf16":
        return model, lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError(f"int8 dynamic quantization runs on the CPU only, not {device}")
        with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices (Deprecation- and UserWarning)
            warnings.filterwarnings("ignore", ".*deprecated")
            quantized = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(model), {nn.Linear, nn.LSTM}, dtype=torch.qint8
            )
        return quantized.eval(), contextlib.nullcontext
    raise ValueError(f"precision {precision!r} cannot be served; expected fp32, bf16 or int8")


@dataclass(frozen=True)
class Classifier:
    """LoadGen's `predict`: the top-1 class id (int32, as MLPerf's ResNet-50 accuracy log holds) of each sample,
    sample i being held-out input i modulo their count (a QSL larger than the held-out set cycles through it)."""

    model: nn.Module
    inputs: Tensor
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext

    def __call__(self, indices: list[int]) -> np.ndarray:
        rows = torch.tensor(indices, device=self.inputs.device) % len(self.inputs)
        with torch.inference_mode(), self.context():
            logits = forward(self.model, self.inputs[rows])
        return logits.argmax(-1).to(device="cpu", dtype=torch.int32).numpy()


def predict_all(predict: Classifier, count: int, batch: int) -> np.ndarray:
    """Outputs for QSL samples 0..count-1, `batch` at a time, without LoadGen."""
    return np.concatenate([predict(list(range(at, min(at + batch, count)))) for at in range(0, count, batch)])


def logged_classes(outputs: dict[int, bytes], count: int) -> np.ndarray:
    """The int32 class id LoadGen logged for each of samples 0..count-1 (an accuracy pass logs every one)."""
    missing = [i for i in range(count) if len(outputs.get(i, b"")) != 4]
    if missing:
        raise ValueError(f"the accuracy log lacks a 4-byte class id for {len(missing)} samples, e.g. {missing[:5]}")
    return np.frombuffer(b"".join(outputs[i] for i in range(count)), np.int32)


def labels_of(trained: Trained, count: int) -> np.ndarray:
    """The class of each of `count` QSL samples (cycling, as `Classifier` does)."""
    labels = trained.labels.cpu().numpy()
    return labels[np.arange(count) % len(labels)]


def top1(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float((predictions == labels).mean())


@dataclass(frozen=True)
class Accuracy:
    """Top-1 of the served model over every sample, as LoadGen logged its answers, against the FP32 model's."""

    value: float
    reference: float  #: the FP32 model's top-1 on the same samples, computed directly
    samples: int
    target: float = ACCURACY_TARGET

    @property
    def ratio(self) -> float:
        return self.value / self.reference if self.reference else float("nan")

    @property
    def met(self) -> bool:
        return self.value >= self.target * self.reference
