"""FLOPs of one training step, counted by PyTorch's `FlopCounterMode` rather than estimated from a formula per model.

The counter knows matmuls, convolutions and attention, forward and backward (elementwise work is not counted, as in
every published "model FLOPs" figure). It has no formula for the fused recurrent kernels `nn.LSTM` dispatches to
(oneDNN's `mkldnn_rnn_layer` on CPUs, cuDNN's `_cudnn_rnn` on GPUs), which would count GNMT's or the word language
model's LSTMs as free: `RNN_FORMULAS` adds them, 2 FLOPs per multiply-add of each gate matrix with each input and
hidden vector, and twice that for the backward pass (gradients of the inputs and of the weights).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from torch.ops import aten
from torch.utils.flop_counter import FlopCounterMode

from ..resources.peaks import Peak

Shape = Sequence[int]
T = TypeVar("T")


def _rnn_forward(input: Shape, weights: Sequence[Shape]) -> int:
    """2 x (time x batch) x the gate matrices' elements. `input` is (T, B, I), (B, T, I), or packed (sum of lengths, I);
    every layer and direction sees as many time steps as the input."""
    steps = math.prod(input[:-1])
    return 2 * steps * sum(math.prod(w) for w in weights if len(w) == 2)


def _mkldnn_rnn_layer(input: Shape, w_ih: Shape, w_hh: Shape, *args: Any, **kwargs: Any) -> int:
    return _rnn_forward(input, (w_ih, w_hh))


def _mkldnn_rnn_layer_backward(input: Shape, w_ih: Shape, w_hh: Shape, *args: Any, **kwargs: Any) -> int:
    return 2 * _rnn_forward(input, (w_ih, w_hh))


def _cudnn_rnn(input: Shape, weights: Sequence[Shape], *args: Any, **kwargs: Any) -> int:
    return _rnn_forward(input, weights)


def _cudnn_rnn_backward(input: Shape, weights: Sequence[Shape], *args: Any, **kwargs: Any) -> int:
    return 2 * _rnn_forward(input, weights)


#: Formulas (over argument shapes, as FlopCounterMode's own) for the recurrent kernels it does not know.
RNN_FORMULAS: dict[Any, Callable[..., int]] = {
    aten.mkldnn_rnn_layer: _mkldnn_rnn_layer,
    aten.mkldnn_rnn_layer_backward: _mkldnn_rnn_layer_backward,
    aten._cudnn_rnn: _cudnn_rnn,
    aten._cudnn_rnn_backward: _cudnn_rnn_backward,
}


@dataclass(frozen=True)
class Work:
    """The arithmetic behind a throughput: counted FLOPs per item and the roof of the devices that ran them. A
    workload that does no arithmetic counts its own `unit` instead (the data loader: decoded images, against the
    host's own decoding rate)."""

    flops_per_item: float
    peak_flops: float | None  #: FLOP/s (`unit`s per s) of all the devices of the run; None where no peak is known
    peak_source: str
    unit: str = "FLOP"


def lower_roof(work: Work, now: Peak | None, devices: int) -> Work:
    """`work` against the lower of its roof and `now`, the same roof measured again after the run: a host whose load
    grew during the run is judged against the roof it had at its busiest (a datasheet's is the same both times; a
    workload's own unit keeps its own roof)."""
    if now is None or work.peak_flops is None or work.unit != "FLOP" or now.flops * devices >= work.peak_flops:
        return work
    return dataclasses.replace(work, peak_flops=now.flops * devices, peak_source=f"{now.source}, after the run")


def counted(step: Callable[[], T]) -> tuple[T, int]:
    """Run `step` under the counter: what it returns (a training step's loss) and the FLOPs it took (a training
    step's forward, backward and optimizer matmuls; a forward pass's alone)."""
    with FlopCounterMode(display=False, custom_mapping=RNN_FORMULAS) as counter:
        result = step()
    return result, counter.get_total_flops()
