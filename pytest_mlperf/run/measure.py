"""The one timing loop every workload goes through.

Warm-up steps are run and discarded; then `repeat` blocks of `number` steps, each block timed with
`time.perf_counter_ns` between two device synchronisations. With `min_block_s` a block lasts at least about that long
whatever the host's speed: the steps per block are raised from `number` (the least) by the warm-up's fastest step
time, as timeit's autorange sizes its loops, so a fast host does not time blocks of milliseconds, all noise; a first
block under half that long (warm-up steps slower than the steady ones) becomes warm-up and sizes the blocks again.
Inside a block the only work besides the step itself is appending its (device-side) loss to a list; losses are
copied to the host and checked after the block's clock has stopped, so a non-finite loss is caught at block
granularity and reported with the exact step it appeared at.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..results.stats import Summary, summarize

#: the least wall time of a measured block by default (a system file's `min_block_s`): long enough that a block's
#: figure is not the noise of a few milliseconds (chosen on the CI machine: README, "How a test measures")
MIN_BLOCK_S = 0.5
MAX_RESIZES = 3  #: first blocks re-sized at most this many times (each then counts as warm-up)


class NonFiniteLoss(AssertionError):
    """The loss became NaN or infinite; the test fails naming the step."""

    def __init__(self, step: int, value: float, phase: str) -> None:
        super().__init__(f"loss became {value} at step {step} ({phase}); training diverged")
        self.step = step
        self.value = value


def finite_losses(losses: Sequence[Tensor], first_step: int, phase: Callable[[int], str]) -> list[float]:
    """Copy a block's losses to the host (after its clock stopped) and fail at the first non-finite one."""
    values = torch.stack(losses).float().cpu().tolist() if losses else []
    for offset, value in enumerate(values):
        if not math.isfinite(value):
            raise NonFiniteLoss(first_step + offset, value, phase(first_step + offset))
    return values


@dataclass(frozen=True)
class Plan:
    warmup: int
    repeat: int
    number: int  #: steps per block: the least, before `min_block_s`; in a Measurement, the number timed
    items_per_step: int  #: the global batch: items processed by one step on all devices
    min_block_s: float = 0.0  #: the least wall time of a block (0: `number` steps as given)

    def autoranged(self, step_ns: float) -> Plan:
        """The plan with enough steps per block for `min_block_s` at `step_ns` a step, never fewer than `number`."""
        if self.min_block_s <= 0 or step_ns <= 0 or not math.isfinite(step_ns):
            return self
        return dataclasses.replace(self, number=max(self.number, math.ceil(self.min_block_s * 1e9 / step_ns)))


@dataclass
class Measurement:
    plan: Plan
    block_ns: list[int] = field(default_factory=list)  #: wall time of each measured block
    losses: list[float] = field(default_factory=list)  #: every step's loss, warm-up included

    @property
    def rates(self) -> list[float]:
        """Items per second of each block."""
        items = self.plan.items_per_step * self.plan.number
        return [items * 1e9 / ns for ns in self.block_ns]

    @property
    def steps(self) -> int:
        return len(self.losses)

    @property
    def seconds(self) -> float:
        return sum(self.block_ns) / 1e9

    def summary(self) -> Summary:
        return summarize(self.rates)


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def measure(
    step: Callable[[], Tensor],
    plan: Plan,
    sync: Callable[[], None],
    before: Sequence[Tensor] = (),
    on_block: Callable[[int, int, float, float], None] | None = None,
    agree: Callable[[int], int] | None = None,
) -> Measurement:
    """Time `plan`'s blocks of `step`; `before` are the losses of steps already run (the FLOP-counting one), checked
    and counted first so that step numbers in messages and the quality budget include them. `on_block(k, blocks,
    items/s, seconds)` hears of each block once its clock has stopped (progress). With `plan.min_block_s` each warm-up
    step is timed on its own (between synchronisations) and the steps per block chosen from the fastest (without a
    warm-up step: `number` as given); `agree` makes data-parallel ranks, which must step together, settle on one
    number (the largest). The result's plan has the number timed."""
    result = Measurement(plan)

    def phase(step: int) -> str:
        if step < len(before):
            return "the FLOP-counting step before the warm-up"
        step -= len(before)
        if step < plan.warmup:
            return f"warm-up step {step + 1} of {plan.warmup}"
        return f"measured step {step - plan.warmup + 1}"

    def record(losses: Sequence[Tensor]) -> None:
        result.losses.extend(finite_losses(losses, len(result.losses), phase))

    record(before)
    fastest = math.inf
    warm: list[Tensor] = []
    for _ in range(plan.warmup):
        start = time.perf_counter_ns()
        warm.append(step())
        if plan.min_block_s > 0:
            sync()
            fastest = min(fastest, time.perf_counter_ns() - start)
    record(warm)
    sync()
    plan = plan.autoranged(fastest)
    if agree is not None:
        plan = dataclasses.replace(plan, number=agree(plan.number))
    result.plan = plan
    resized = 0
    while len(result.block_ns) < plan.repeat:
        block: list[Tensor] = []
        start = time.perf_counter_ns()
        for _ in range(plan.number):
            block.append(step())
        sync()
        ns = time.perf_counter_ns() - start
        if not result.block_ns and resized < MAX_RESIZES and plan.min_block_s > 0 and math.isfinite(fastest):
            number = _resized(plan, ns, agree)
            if number > plan.number:  # warm-up steps slower than the steady ones: this block was warm-up too
                plan = result.plan = dataclasses.replace(plan, warmup=plan.warmup + plan.number, number=number)
                record(block)
                resized += 1
                continue
        result.block_ns.append(ns)
        record(block)
        if on_block is not None:
            seconds = ns / 1e9
            on_block(len(result.block_ns), plan.repeat, plan.items_per_step * plan.number / seconds, seconds)
    return result


def _resized(plan: Plan, first_ns: int, agree: Callable[[int], int] | None) -> int:
    """The steps per block the first block's own pace asks for when it lasted under half of `min_block_s` (the
    warm-up's fastest step overestimated a step: first steps that build caches or kernels), else its number; agreed
    between data-parallel ranks, which all ask after their first block."""
    number = plan.number
    if first_ns < plan.min_block_s * 1e9 / 2:
        number = plan.autoranged(first_ns / plan.number).number
    return agree(number) if agree is not None else number
