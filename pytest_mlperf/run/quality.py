"""After the throughput blocks, keep training until the workload's quality target is reached (or its step budget
is spent), evaluating every few steps, so every test asserts more than speed."""

from __future__ import annotations

import time
from dataclasses import dataclass

from torch import Tensor

from ..workloads.registry import Quality, Trainer
from .measure import finite_losses


@dataclass(frozen=True)
class QualityResult:
    metric: str
    value: float
    target: float
    steps: int  #: training steps when it was reached (or the budget, when not)
    seconds: float  #: time spent converging after the measured blocks, evaluations included
    reached: bool
    time_to_target: float | None = None  #: seconds from the first touch of the training data, when reached


def converge(trainer: Trainer, quality: Quality, steps_done: int) -> QualityResult:
    start = time.perf_counter()
    value, steps = trainer.evaluate(), steps_done
    while not quality.reached(value) and steps < quality.max_steps:
        n = min(quality.eval_every, quality.max_steps - steps)
        losses: list[Tensor] = [trainer.step() for _ in range(n)]
        finite_losses(losses, steps, lambda _: "while converging to the quality target")
        steps += n
        value = trainer.evaluate()
    elapsed = time.perf_counter() - start
    return QualityResult(quality.metric, value, quality.target, steps, elapsed, quality.reached(value))
