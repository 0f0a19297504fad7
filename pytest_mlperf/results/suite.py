"""Suite-level statistics, as Mila's report closes its table: did every benchmark produce a result, is the spread of
repeated runs small (the 80th percentile of sd% across tests), and how far above their targets the results are on
average."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .record import Record
from .stats import quantile

SD_LIMIT = 5.0  #: default limit, in percent, of the 80th percentile of sd% (ini mlperf_sd_limit)


@dataclass(frozen=True)
class Statistic:
    name: str
    value: str
    passed: bool | None  #: None: nothing to judge (e.g. no test has a baseline)
    note: str = ""


def statistics_of(records: Sequence[Record], sd_limit: float = SD_LIMIT) -> list[Statistic]:
    """The three figures of Mila's report over a run's performance tests (an inference accuracy pass has no spread
    and no throughput target)."""
    measured = [r for r in records if r.mode != "accuracy"]
    missing = [r.id for r in measured if r.mean is None or r.outcome in ("error", "skipped")]
    produced = Statistic(
        "every benchmark produced a result",
        f"{len(measured) - len(missing)} of {len(measured)}",
        not missing and bool(measured),
        ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""),
    )
    spreads = [r.sd_pct for r in measured if r.sd_pct is not None and r.count and r.count > 1]
    spread = (
        Statistic(
            "sd% 80th percentile",
            f"{quantile(spreads, 0.8):.2f}%",
            quantile(spreads, 0.8) < sd_limit,
            f"under {sd_limit:g}%; sd% across {'runs' if any(r.runs > 1 for r in measured) else 'blocks'}",
        )
        if spreads
        else Statistic("sd% 80th percentile", "", None, "no test with more than one block or run")
    )
    diffs = [d for d in map(_diff, measured) if d is not None]
    performance = (
        Statistic(
            "mean difference from targets",
            f"{statistics.fmean(diffs):+.2%}",
            statistics.fmean(diffs) >= 0,
            f"over {len(diffs)} tests with a target: the baseline less its tolerance, else the peak-fraction floor",
        )
        if diffs
        else Statistic("mean difference from targets", "", None, "no test has a target")
    )
    return [produced, spread, performance]


def _diff(r: Record) -> float | None:
    """How far the figure is past its target (the baseline less its tolerance, else the floor), as a fraction:
    positive is better, for latencies too; None without a figure or a target."""
    if r.mean is None:
        return None
    if r.baseline is not None and r.tolerance is not None:
        target = r.baseline * (1 + r.tolerance if r.lower_is_better else 1 - r.tolerance)
    elif r.floor is not None:
        target = r.floor
    else:
        return None
    return target / r.mean - 1 if r.lower_is_better else r.mean / target - 1
