"""Judging a measured figure against a baseline and against an earlier run: a throughput (higher is better), or an
inference latency (lower is better)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config.schema import Baseline, MetricBaseline
from ..run.quality import QualityResult

MET, BELOW, ABOVE, NO_BASELINE = "met", "below", "above", "no baseline"
OK, SLOWER, NO_EARLIER = "ok", "slower", "no earlier run"
REACHED, NOT_REACHED = "reached", "not reached"


@dataclass(frozen=True)
class Verdict:
    status: str
    ratio: float | None  #: measured / reference
    message: str

    @property
    def failed(self) -> bool:
        return self.status in (BELOW, ABOVE, SLOWER, NOT_REACHED)


def against_baseline(
    mean: float, unit: str, baseline: Baseline | MetricBaseline | None, lower_is_better: bool = False
) -> Verdict:
    """Fails when the mean is below baseline x (1 - tolerance), or for a latency above baseline x (1 + tolerance); a
    missing baseline never counts as met."""
    if baseline is None:
        return Verdict(NO_BASELINE, None, "no baseline for this benchmark, precision and system")
    ratio = mean / baseline.value
    if lower_is_better:
        target, sign = baseline.value * (1 + baseline.tolerance), "+"
        status = MET if mean <= target else ABOVE
    else:
        target, sign = baseline.value * (1 - baseline.tolerance), "-"
        status = MET if mean >= target else BELOW
    relation = "meets" if status == MET else f"is {status}"
    return Verdict(
        status,
        ratio,
        f"measured {mean:.4g} {unit} {relation} the target {target:.4g} {unit} "
        f"(baseline {baseline.value:.4g} {unit} {sign} {baseline.tolerance:.0%}); ratio {ratio:.3f}; "
        f"baseline source: {baseline.source}",
    )


def against_earlier(
    mean: float, unit: str, earlier: float | None, tolerance: float, source: str, lower_is_better: bool = False
) -> Verdict:
    """Regression gate: fails when slower than the earlier run by more than `tolerance` (for a latency: higher)."""
    if earlier is None:
        return Verdict(NO_EARLIER, None, f"no matching result in {source}")
    ratio = mean / earlier
    status = OK if (ratio <= 1 + tolerance if lower_is_better else ratio >= 1 - tolerance) else SLOWER
    change = f"{ratio - 1:+.1%}"
    relation = "within" if status == OK else "slower than allowed by"
    return Verdict(
        status,
        ratio,
        f"measured {mean:.4g} {unit} vs {earlier:.4g} {unit} in {source}: {change}, "
        f"{relation} --tolerance {tolerance:.0%}",
    )


@dataclass(frozen=True)
class Judge:
    """What a case's figure is judged against: its baseline and, with --compare (`earlier_source` set), the earlier
    run's figure. The test's failure and the Record's columns come from this one judgement."""

    baseline: Baseline | MetricBaseline | None
    earlier: float | None = None
    tolerance: float = 0.0
    earlier_source: str = ""

    def __call__(self, mean: float, unit: str, lower_is_better: bool = False) -> tuple[Verdict, Verdict | None]:
        """The verdict against the baseline, and against the earlier run (None without --compare)."""
        base = against_baseline(mean, unit, self.baseline, lower_is_better)
        if not self.earlier_source:
            return base, None
        return base, against_earlier(mean, unit, self.earlier, self.tolerance, self.earlier_source, lower_is_better)


def against_quality(result: QualityResult) -> Verdict:
    """Fails when the synthetic task's quality target was not reached within the workload's step budget."""
    status = REACHED if result.reached else NOT_REACHED
    relation = "reached" if result.reached else "did not reach"
    return Verdict(
        status,
        None,
        f"{result.metric} {result.value:.4g} {relation} the target {result.target:.4g} in {result.steps} steps",
    )
