"""What repeated runs of one case amount to (`--runs N`, and the reruns of an inconclusive verdict): one figure with
its interval, and one time to quality; and what that interval rests on."""

from __future__ import annotations

import dataclasses
import math

from ..run.probe import Between
from ..run.quality import QualityResult
from .stats import Summary, summarize, trimmed_mean, widen


def across_runs(runs: list[Summary], between: Between | None = None) -> Summary:
    """A single run's own summary (of its blocks), its interval widened by the host's `between`-process sd when that
    is known; of several, the summary of the runs' figures around their trimmed mean: run-to-run spread (of runs in
    fresh processes) is what a repeated benchmark's interval must show, not the blocks' within one run."""
    if not runs:
        raise ValueError("no runs to summarize")
    if len(runs) > 1:
        return summarize([r.mean for r in runs], trim=True)
    if between is None or between.sd_pct is None:
        return runs[0]
    return widen(runs[0], between.sd_pct)


def training_interval(runs: int, between: Between | None) -> str:
    """What a training figure's interval rests on, for its record and its verdict's message."""
    if runs > 1:
        return f"the spread of {runs} runs, each in a fresh process"
    if between is None:
        return "the blocks of one process only"
    if between.sd_pct is None:
        return f"the blocks of one process only ({between.source})"
    return f"the blocks of one process, widened by a between-process sd of {between.sd_pct:.2g}% ({between.source})"


def across_loadgen_runs(values: list[float], between: Between | None) -> Summary:
    """The official metric of LoadGen runs, each in a process of its own (the first in the test's): as
    `across_runs`, one run's interval being the host's between-process sd alone (one run has no other)."""
    return across_runs([summarize([v]) for v in values], between)


def loadgen_interval(runs: int, between: Between | None) -> str:
    """What an inference figure's interval rests on, for its record and its verdict's message."""
    if runs > 1:
        return f"the spread of {runs} LoadGen runs, each in a process of its own"
    if between is None or between.sd_pct is None:
        why = f" ({between.source})" if between else ""
        return f"one LoadGen run: no interval{why}"
    return f"one LoadGen run, widened by a between-process sd of {between.sd_pct:.2g}% ({between.source})"


def quality_across_runs(runs: list[QualityResult]) -> QualityResult:
    """MLPerf's olympic scoring of time to quality: a run that never reached the target counts as infinitely slow,
    the slowest and fastest are dropped (from TRIM_FROM runs), the rest averaged; reached only when that average is
    finite. The value is the runs' mean, the steps the most any run took."""
    if len(runs) == 1:
        return runs[0]
    times = [r.time_to_target if r.reached and r.time_to_target is not None else math.inf for r in runs]
    olympic = trimmed_mean(times)
    reached = math.isfinite(olympic)
    return dataclasses.replace(
        runs[0],
        value=sum(r.value for r in runs) / len(runs),
        steps=max(r.steps for r in runs),
        seconds=sum(r.seconds for r in runs),
        reached=reached,
        time_to_target=olympic if reached else None,
    )
