"""Judging a measured figure against its targets: a baseline (an absolute figure for the system), a floor stated as a
fraction of the device's peak FLOP/s (which travels between hosts of different speed), and an earlier run. The figure
is a throughput (higher is better) or an inference latency (lower is better).

A figure carries its 95% confidence interval, and so may the reference (an earlier run's): a verdict is clear only
when the figure and its whole interval agree on the same side of the target. Otherwise it is inconclusive, which a
test reports (and `--rerun-inconclusive` answers with more runs) rather than passing or failing on noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from ..config.schema import Baseline, MetricBaseline, PeakFraction
from ..run.flops import Work
from ..run.quality import QualityResult
from .stats import Summary

MET, BELOW, ABOVE, NO_BASELINE = "met", "below", "above", "no baseline"
NO_FLOOR, NO_ROOF = "no floor", "no roof"  #: no peak-fraction floor; one declared but no FLOPs or peak to judge it
OK, SLOWER, NO_EARLIER = "ok", "slower", "no earlier run"
INCONCLUSIVE = "inconclusive"
REACHED, NOT_REACHED = "reached", "not reached"


@dataclass(frozen=True)
class Figure:
    """A figure and its 95% confidence interval; an exact one (a published baseline, a single reading) has
    low == high == value."""

    value: float
    low: float
    high: float

    @classmethod
    def exact(cls, value: float) -> Figure:
        return cls(value, value, value)

    @classmethod
    def of(cls, summary: Summary) -> Figure:
        return cls(summary.mean, summary.ci_low, summary.ci_high)

    def describe(self, unit: str) -> str:
        interval = f" (95% CI {self.low:.4g} to {self.high:.4g})" if self.low != self.high else ""
        return f"{self.value:.4g}{f' {unit}' if unit else ''}{interval}"


@dataclass(frozen=True)
class Verdict:
    status: str
    ratio: float | None  #: measured / reference
    message: str

    @property
    def failed(self) -> bool:
        return self.status in (BELOW, ABOVE, SLOWER, NOT_REACHED)

    @property
    def inconclusive(self) -> bool:
        return self.status == INCONCLUSIVE


def side(measured: Figure, reference: Figure, tolerance: float, lower_is_better: bool) -> bool | None:
    """True when `measured` clearly meets `reference` within `tolerance`, False when it clearly misses it, None when
    the intervals straddle the threshold. Clear means the figure and the whole of its interval are on one side of the
    threshold, and of the whole threshold interval the reference's own uncertainty gives."""
    if lower_is_better:
        scale = 1 + tolerance
        meets = measured.value <= reference.value * scale and measured.high <= reference.low * scale
        misses = measured.value > reference.value * scale and measured.low > reference.high * scale
    else:
        scale = 1 - tolerance
        meets = measured.value >= reference.value * scale and measured.low >= reference.high * scale
        misses = measured.value < reference.value * scale and measured.high < reference.low * scale
    return True if meets else False if misses else None


def against_baseline(
    measured: Figure, unit: str, baseline: Baseline | MetricBaseline | None, lower_is_better: bool = False
) -> Verdict:
    """Fails when the figure is clearly below baseline x (1 - tolerance), or for a latency above baseline x
    (1 + tolerance); a missing baseline never counts as met."""
    if baseline is None:
        return Verdict(NO_BASELINE, None, "no baseline for this benchmark, precision and system")
    ratio = measured.value / baseline.value
    clear = side(measured, Figure.exact(baseline.value), baseline.tolerance, lower_is_better)
    missed = ABOVE if lower_is_better else BELOW
    status = MET if clear else missed if clear is False else INCONCLUSIVE
    sign = "+" if lower_is_better else "-"
    target = baseline.value * (1 + baseline.tolerance if lower_is_better else 1 - baseline.tolerance)
    relation = {MET: "meets", INCONCLUSIVE: "is inconclusive against"}.get(status, f"is {status}")
    return Verdict(
        status,
        ratio,
        f"measured {measured.describe(unit)} {relation} the target {target:.4g} {unit} "
        f"(baseline {baseline.value:.4g} {unit} {sign} {baseline.tolerance:.0%}); ratio {ratio:.3f}; "
        f"baseline source: {baseline.source}",
    )


@dataclass(frozen=True)
class Roof:
    """What turns a fraction of the device's peak into a figure in the metric's unit: the counted FLOPs of one item,
    the peak FLOP/s of the devices that ran it, and for a latency the items one query carries."""

    work: Work
    items_per_query: int = 1  #: a latency metric's items (MultiStream: samples per query)

    def threshold(self, fraction: float, lower_is_better: bool) -> float | None:
        """The throughput (items/s) at `fraction` of the peak, or for a latency the milliseconds a query takes at it;
        None without FLOPs or a peak."""
        work = self.work
        if not work.peak_flops or not work.flops_per_item:
            return None
        rate = fraction * work.peak_flops / work.flops_per_item
        return 1000 * self.items_per_query / rate if lower_is_better else rate


def against_floor(
    measured: Figure, unit: str, floor: PeakFraction | None, roof: Roof | None, lower_is_better: bool = False
) -> Verdict:
    """Fails when the figure is clearly below the floor (for a latency: above it), the floor being the figure at which
    the run would reach `floor.value` of the device's peak FLOP/s (measured on a CPU under the run's own conditions,
    datasheet on a GPU)."""
    if floor is None:
        return Verdict(NO_FLOOR, None, "no peak-fraction floor for this benchmark, precision and system")
    threshold = roof.threshold(floor.value, lower_is_better) if roof else None
    if roof is None or threshold is None:
        why = roof.work.peak_source if roof and not roof.work.peak_flops else "no FLOPs counted for this result"
        return Verdict(NO_ROOF, None, f"the peak-fraction floor {floor.value:g} cannot be judged: {why}")
    work = roof.work
    clear = side(measured, Figure.exact(threshold), 0.0, lower_is_better)
    missed = ABOVE if lower_is_better else BELOW
    status = MET if clear else missed if clear is False else INCONCLUSIVE
    relation = {MET: "meets", INCONCLUSIVE: "is inconclusive against"}.get(status, f"is {status}")
    ratio = measured.value / threshold
    return Verdict(
        status,
        ratio,
        f"measured {measured.describe(unit)} {relation} the floor {threshold:.4g} {unit} "
        f"({floor.value:g} of {work.peak_flops:.4g} {work.unit}/s peak at {work.flops_per_item:.4g} {work.unit} an "
        f"item; peak: {work.peak_source}); ratio {ratio:.3f}; floor source: {floor.source}",
    )


def ratio_interval(measured: Figure, earlier: Figure) -> Figure:
    """measured / earlier with its 95% interval: each figure's relative standard error read off its own 95% interval
    (a normal approximation, conservative for the t-intervals of few values), combined on the log scale (the delta
    method). Two exact figures give an exact ratio. Weighing both errors once is what a two-sample comparison does;
    requiring the two intervals to be apart instead would double-count them and miss real regressions."""
    ratio = measured.value / earlier.value
    spread = Z95 * math.hypot(_relative_se(measured), _relative_se(earlier))
    if spread > MAX_LOG_SPREAD:  # an interval of many orders of magnitude: nothing can be said
        return Figure(ratio, 0.0, math.inf)
    return Figure(ratio, ratio * math.exp(-spread), ratio * math.exp(spread))


MAX_LOG_SPREAD = 700.0  #: e to this is near the largest float


Z95 = 1.959963984540054  #: the two-sided 95% quantile of the normal distribution


def _relative_se(figure: Figure) -> float:
    return (figure.high - figure.low) / (2 * Z95 * figure.value)


def against_earlier(
    measured: Figure, unit: str, earlier: Figure | None, tolerance: float, source: str, lower_is_better: bool = False
) -> Verdict:
    """Regression gate: fails when clearly slower than the earlier run by more than `tolerance` (for a latency:
    higher), i.e. when the whole 95% interval of the ratio of the two figures is beyond 1 -/+ tolerance; ok when it
    is whole on the good side; otherwise inconclusive."""
    if earlier is None:
        return Verdict(NO_EARLIER, None, f"no matching result in {source}")
    what = f"measured {measured.describe(unit)} vs {earlier.describe(unit)} in {source}"
    return on_ratio(ratio_interval(measured, earlier), tolerance, what, lower_is_better)


def on_ratio(ratio: Figure, tolerance: float, what: str, lower_is_better: bool = False) -> Verdict:
    """The gate's verdict on a ratio later / earlier with its 95% interval: slower when the whole interval is beyond
    1 -/+ tolerance, ok when it is whole on the good side, else inconclusive."""
    clear = side(ratio, Figure.exact(1.0), tolerance, lower_is_better)
    status = OK if clear else SLOWER if clear is False else INCONCLUSIVE
    relation = {OK: "within", SLOWER: "slower than allowed by"}.get(status, "inconclusive against")
    return Verdict(status, ratio.value, f"{what}: ratio {ratio.describe('')}, {relation} --tolerance {tolerance:.0%}")


@dataclass(frozen=True)
class Verdicts:
    """A figure's verdicts against each of its targets."""

    baseline: Verdict
    floor: Verdict
    earlier: Verdict | None  #: None without --compare

    def __iter__(self) -> Iterator[Verdict]:
        return iter(v for v in (self.baseline, self.floor, self.earlier) if v is not None)

    @property
    def untargeted(self) -> bool:
        """Nothing judged the figure: no baseline, no floor that could be judged, no earlier run."""
        return all(v.status in UNJUDGED for v in self)


UNJUDGED = (NO_BASELINE, NO_FLOOR, NO_ROOF, NO_EARLIER)


@dataclass(frozen=True)
class Judge:
    """What a case's figure is judged against: its baseline, its peak-fraction floor and, with --compare
    (`earlier_source` set), the earlier run's figure. The test's failure and the Record's columns come from this one
    judgement."""

    baseline: Baseline | MetricBaseline | None
    floor: PeakFraction | None = None
    earlier: Figure | None = None
    tolerance: float = 0.0
    earlier_source: str = ""

    def __call__(
        self, measured: Figure, unit: str, lower_is_better: bool = False, roof: Roof | None = None
    ) -> Verdicts:
        base = against_baseline(measured, unit, self.baseline, lower_is_better)
        floor = against_floor(measured, unit, self.floor, roof, lower_is_better)
        if not self.earlier_source:
            return Verdicts(base, floor, None)
        gate = against_earlier(measured, unit, self.earlier, self.tolerance, self.earlier_source, lower_is_better)
        return Verdicts(base, floor, gate)


def against_quality(result: QualityResult) -> Verdict:
    """Fails when the synthetic task's quality target was not reached within the workload's step budget."""
    status = REACHED if result.reached else NOT_REACHED
    relation = "reached" if result.reached else "did not reach"
    return Verdict(
        status,
        None,
        f"{result.metric} {result.value:.4g} {relation} the target {result.target:.4g} in {result.steps} steps",
    )
