"""Serving a trained model to LoadGen: train it once, then answer queries as the workload's `Serving` says.

Inference needs a model that has learnt something, or accuracy against the FP32 reference means nothing: the
training workload's trainer (any `Supervised` one) is built in fp32 and trained to its synthetic quality target,
once per session per (benchmark, preset), and every precision serves a copy of that one model. Its answers (what
LoadGen logs, e.g. ResNet-50's top-1 class id, BERT's answer span) are scored with the workload's metric.

- fp32: the trained model as it is.
- fp16, bf16: the same model under float16 or bfloat16 autocast (fp16 on CUDA only).
- int8: `torch.ao.quantization.quantize_dynamic` of its Linear and LSTM layers (int8 weights, activations quantised
  on the fly), CPU only. For a convolutional network such as ResNet-50 that is the final fully connected layer only
  (the convolutions stay fp32, so the speed-up is small and the accuracy loss too); for BERT, nearly every layer.
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

from ..resources.peaks import peak
from ..workloads.registry import Preset, Serving, Setup, Workload
from .flops import Work, counted
from .precision import Precision, resolve
from .quality import QualityResult, converge
from .training import forward

Inputs = Tensor | tuple[Tensor, ...]  #: a batch's model inputs, sample-major


def rows(value: Inputs, index: Tensor) -> Inputs:
    """The samples `index` of a tensor or of each tensor of a tuple."""
    return tuple(v[index] for v in value) if isinstance(value, tuple) else value[index]


def stacked(parts: list[Inputs]) -> Inputs:
    """Batches (tensors, or tuples of tensors) joined sample-wise."""
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(column) for column in zip(*parts, strict=True))
    return torch.cat(parts)  # type: ignore[arg-type]


def size(value: Inputs) -> int:
    return len(value[0]) if isinstance(value, tuple) else len(value)


@dataclass(frozen=True)
class Trained:
    """A model trained to its quality target, with the held-out samples it is served on."""

    model: nn.Module  #: fp32, eval mode
    inputs: Inputs  #: held-out samples, stacked on the first dimension
    labels: Inputs  #: their targets
    quality: QualityResult


#: (benchmark, preset, device, training batch) -> the trained fp32 model, its quality, and how many batches its
#: held-out set has
_MODELS: dict[tuple[str, str, str, int], tuple[nn.Module, QualityResult, int]] = {}
_SAMPLES: dict[tuple[str, str, str, int, int], tuple[Inputs, Inputs]] = {}


def trained(workload: Workload, preset: str, device: torch.device, batch: int, samples: int) -> Trained:
    """The workload's model trained in fp32 at `batch` to its quality target, once per process per (benchmark,
    preset, device, batch) so that every scenario and precision serves the same model, with `samples` held-out
    samples. Raises RuntimeError when the target is not reached: serving an untrained model makes every accuracy
    check a coin toss."""
    key = (workload.name, preset, str(device), batch)
    if key not in _MODELS:
        trainer = workload.build(Setup(workload.presets[preset], batch, device, resolve("fp32", device)))
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


def _held_out(workload: Workload, preset: str, device: torch.device, batch: int, samples: int) -> tuple[Inputs, Inputs]:
    """`samples` distinct held-out samples of the training task: a trainer is built (not trained) with a batch that
    makes its held-out set that large, and only that set is kept. Distinct samples matter: cycling 32 of them through
    256 makes every flipped answer count 8 times, and a 99% accuracy target meaningless. (A workload whose held-out
    set does not grow with the batch gives fewer; `Answerer` then cycles through them.)"""
    setup = Setup(workload.presets[preset], batch, device, resolve("fp32", device))
    held = list(workload.build(setup).held_out)  # type: ignore[attr-defined]  (Supervised's)
    first = torch.arange(samples, device=device)
    inputs, labels = stacked([x for x, _ in held]), stacked([y for _, y in held])
    return rows(inputs, first[: size(inputs)]), rows(labels, first[: size(labels)])


def served(
    model: nn.Module, precision: str, device: torch.device
) -> tuple[nn.Module, Callable[[], contextlib.AbstractContextManager[Any]]]:
    """The model to serve in `precision` and the context each prediction runs in (autocast for bf16)."""
    if precision == "fp32":
        return model, contextlib.nullcontext
    if precision in ("fp16", "bf16"):
        low = torch.float16 if precision == "fp16" else torch.bfloat16
        return model, lambda: torch.autocast(device.type, dtype=low)
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError(f"int8 dynamic quantization runs on the CPU only, not {device}")
        with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices (Deprecation- and UserWarning)
            warnings.filterwarnings("ignore", ".*deprecated")
            quantized = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(model), {nn.Linear, nn.LSTM}, dtype=torch.qint8
            )
        if not any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in quantized.modules()):
            # e.g. a convolutional network without a Linear head, or a bare Linear (only submodules are swapped):
            # serving it as "int8" would time the fp32 model under another name
            raise ValueError(
                f"int8: dynamic quantization found no Linear or LSTM layer to convert in {type(model).__name__}"
            )
        return quantized.eval(), contextlib.nullcontext
    raise ValueError(f"precision {precision!r} cannot be served; expected fp32, fp16, bf16 or int8")


@dataclass(frozen=True)
class Answerer:
    """LoadGen's `predict`: the workload's answer to each sample (a fixed-size row, what the accuracy log holds),
    sample i being held-out input i modulo their count (a QSL larger than the held-out set cycles through it)."""

    model: nn.Module
    inputs: Inputs
    serving: Serving
    preset: Preset  #: the model's, which the answer may need (e.g. BERT's question length)
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext

    def __call__(self, indices: list[int]) -> np.ndarray:
        index = torch.tensor(indices, device=_device(self.inputs)) % size(self.inputs)
        with torch.inference_mode(), self.context():
            outputs = forward(self.model, rows(self.inputs, index))
        return self.serving.answer(outputs, self.preset).to(device="cpu", dtype=self.serving.dtype).numpy()


def _device(value: Inputs) -> torch.device:
    return value[0].device if isinstance(value, tuple) else value.device


def answering(
    workload: Workload, preset: str, options: Preset, device: torch.device, batch: int, samples: int, precision: str
) -> tuple[Trained, Answerer]:
    """The workload's model `trained` at `batch` with `samples` held-out samples, and LoadGen's predict serving it
    in `precision` (`options`: the preset as the case runs it). Raises RuntimeError (the model did not reach its
    target) or ValueError (the precision is not served on the device)."""
    assert workload.serving is not None  # only a served workload has inference cases
    model = trained(workload, preset, device, batch, samples)
    served_model, context = served(model.model, precision, device)
    return model, Answerer(served_model, model.inputs, workload.serving, options, context)


def served_math(precision: str, device: torch.device) -> Precision:
    """The math whose peak a served precision is held to: int8's is float32's, as dynamic quantization leaves
    convolutions and activations in float32."""
    return resolve("fp32" if precision == "int8" else precision, device)


def work(model: Trained, precision: str, device: torch.device, batch: int, devices: int = 1) -> Work:
    """The arithmetic of serving `model`: FLOPs of one sample's forward pass of the FP32 model, counted on a `batch`
    (the same figure in every precision: the work is the model's; int8's quantized layers are invisible to the
    counter), against the roof of the `devices` for the precision's math (int8: float32's, as dynamic quantization
    leaves convolutions and activations in float32)."""
    index = torch.arange(batch, device=_device(model.inputs)) % size(model.inputs)
    with torch.inference_mode():
        flops = counted(lambda: forward(model.model, rows(model.inputs, index)))[1]
    roof = peak(device, served_math(precision, device))
    if roof is None:
        return Work(flops / batch, None, "no peak known for this device")
    return Work(flops / batch, roof.flops * devices, roof.source)


def predict_all(predict: Answerer, count: int, batch: int) -> np.ndarray:
    """Answers for QSL samples 0..count-1, `batch` at a time, without LoadGen."""
    return np.concatenate([predict(list(range(at, min(at + batch, count)))) for at in range(0, count, batch)])


def logged_answers(outputs: dict[int, bytes], like: np.ndarray) -> np.ndarray:
    """The answer LoadGen logged for each of samples 0..len(like)-1 (an accuracy pass logs every one), shaped as
    `like`, the same samples' answers computed directly (its dtype and per-sample shape: an answer's size may depend
    on the preset, e.g. a segmentation's volume)."""
    count, width = len(like), like[0].nbytes
    missing = [i for i in range(count) if len(outputs.get(i, b"")) != width]
    if missing:
        raise ValueError(f"the accuracy log lacks a {width}-byte answer for {len(missing)} samples, e.g. {missing[:5]}")
    return np.frombuffer(b"".join(outputs[i] for i in range(count)), like.dtype).reshape(like.shape).copy()


def labels_of(trained: Trained, count: int) -> Inputs:
    """The target of each of `count` QSL samples (cycling, as `Answerer` does)."""
    index = torch.arange(count) % size(trained.labels)
    return rows(trained.labels, index.to(_device(trained.labels)))


@dataclass(frozen=True)
class Accuracy:
    """The workload's metric of the served model over every sample, as LoadGen logged its answers, against the FP32
    model's."""

    metric: str
    value: float
    reference: float  #: the FP32 model's on the same samples, computed directly
    samples: int
    target: float  #: the fraction of `reference` to keep (the system file's accuracy_target)

    @property
    def ratio(self) -> float:
        return self.value / self.reference if self.reference else float("nan")

    @property
    def met(self) -> bool:
        return self.value >= self.target * self.reference
