"""Summary statistics of per-block throughputs: mean, sample sd, range and a Student-t 95% confidence interval."""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    mean: float
    sd: float  #: sample standard deviation (n - 1); 0 for a single block
    min: float
    max: float
    count: int
    ci_low: float  #: 95% confidence interval of the mean; equal to the mean for a single block
    ci_high: float

    @property
    def sd_percent(self) -> float:
        return 100 * self.sd / self.mean if self.mean else math.nan


def summarize(values: list[float]) -> Summary:
    if not values:
        raise ValueError("no values to summarize")
    n = len(values)
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if n > 1 else 0.0
    half = student_t(n - 1) * sd / math.sqrt(n) if n > 1 else 0.0
    return Summary(mean, sd, min(values), max(values), n, mean - half, mean + half)


@functools.cache
def student_t(dof: int) -> float:
    """The two-sided CONFIDENCE quantile of Student's t; scipy is imported here, not at start-up, where it would cost
    every process (each rank, each container) most of a second."""
    from scipy import stats

    return float(stats.t.ppf((1 + CONFIDENCE) / 2, dof))
