"""Summary statistics: of one run's per-block throughputs (mean, sample sd, range, Student-t 95% confidence interval),
and of repeated runs (the same, around a trimmed mean), and the suite-level figures of Mila's report."""

from __future__ import annotations

import dataclasses
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


def summarize(values: list[float], trim: bool = False) -> Summary:
    """With `trim` (repeated runs), `mean` is the trimmed mean; sd and the interval still rest on every value, so an
    outlying run widens the interval it cannot move the figure out of."""
    if not values:
        raise ValueError("no values to summarize")
    n = len(values)
    mean = trimmed_mean(values) if trim else statistics.fmean(values)
    sd = statistics.stdev(values) if n > 1 else 0.0
    half = student_t(n - 1) * sd / math.sqrt(n) if n > 1 else 0.0
    center = statistics.fmean(values)
    return Summary(mean, sd, min(values), max(values), n, center - half, center + half)


def widen(summary: Summary, between_sd_pct: float) -> Summary:
    """One process's summary with its interval widened by the noise between processes: a process's figure strays
    from the host's by a process-wide offset (sd `between_sd_pct` % of the mean, taken as known: a normal quantile)
    besides the sampling error of its blocks (the Student-t half-width), and the two independent errors add in
    quadrature: half = sqrt(blocks_half^2 + (z * between_sd)^2). The figure and its sd stay the blocks'."""
    centre, half = (summary.ci_low + summary.ci_high) / 2, (summary.ci_high - summary.ci_low) / 2
    between = statistics.NormalDist().inv_cdf((1 + CONFIDENCE) / 2) * between_sd_pct / 100 * abs(summary.mean)
    wide = math.hypot(half, between)
    return dataclasses.replace(summary, ci_low=centre - wide, ci_high=centre + wide)


TRIM_FROM = 4  #: repeated runs from which the fastest and slowest are dropped (Mila's report needs at least 4 runs)


def trimmed_mean(values: list[float]) -> float:
    """The mean without the lowest and highest value once there are TRIM_FROM or more: Mila's report over run_10, and
    MLPerf's olympic average of time to quality (where a run that never converged counts as infinitely slow, so it
    is the one dropped)."""
    kept = sorted(values)[1:-1] if len(values) >= TRIM_FROM else list(values)
    return statistics.fmean(kept)


def quantile(values: list[float], q: float) -> float:
    """The q-quantile with linear interpolation (numpy's default), as Mila's report takes sd%'s 80th percentile."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@functools.cache
def student_t(dof: int) -> float:
    """The two-sided CONFIDENCE quantile of Student's t; scipy is imported here, not at start-up, where it would cost
    every process (each rank, each container) most of a second."""
    from scipy import stats

    return float(stats.t.ppf((1 + CONFIDENCE) / 2, dof))
