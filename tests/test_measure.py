"""The timing loop, the statistics and the verdicts, as plain functions."""

from __future__ import annotations

import math

import pytest
import torch

from pytest_mlperf.config.schema import Baseline
from pytest_mlperf.results.stats import summarize
from pytest_mlperf.results.verdict import BELOW, MET, NO_BASELINE, OK, SLOWER, against_baseline, against_earlier
from pytest_mlperf.run.measure import Measurement, NonFiniteLoss, Plan, measure
from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.training import prepare
from pytest_mlperf.workloads.registry import Setup


class CountingStep:
    def __init__(self, nan_at: int = -1) -> None:
        self.calls = 0
        self.nan_at = nan_at

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        return torch.tensor(math.nan if self.calls - 1 == self.nan_at else 1.0 / self.calls)


def test_measure_runs_warmup_and_blocks_and_syncs_at_block_ends() -> None:
    step, syncs = CountingStep(), []
    result = measure(step, Plan(warmup=3, repeat=4, number=5, items_per_step=8), sync=lambda: syncs.append(step.calls))
    assert step.calls == 3 + 4 * 5
    assert syncs == [3, 8, 13, 18, 23]  # after warm-up, then at the end of each block
    assert len(result.block_ns) == 4 and all(ns > 0 for ns in result.block_ns)
    assert len(result.losses) == 23 and result.losses[0] == 1.0
    for rate, ns in zip(result.rates, result.block_ns, strict=True):
        assert rate == pytest.approx(8 * 5 / (ns / 1e9))


@pytest.mark.parametrize("nan_at, where", [(1, r"step 1 \(warm-up step 2 of 3\)"), (9, r"step 9 \(measured step 7\)")])
def test_non_finite_loss_names_the_step(nan_at: int, where: str) -> None:
    with pytest.raises(NonFiniteLoss, match=rf"loss became nan at {where}; training diverged"):
        measure(CountingStep(nan_at), Plan(warmup=3, repeat=3, number=4, items_per_step=1), sync=lambda: None)


def test_summary_statistics() -> None:
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert (s.mean, s.min, s.max, s.count) == (2.5, 1.0, 4.0, 4)
    assert s.sd == pytest.approx(1.2909944)
    half = 3.1824463 * 1.2909944 / 2  # t(0.975, 3 degrees of freedom)
    assert (s.ci_low, s.ci_high) == pytest.approx((2.5 - half, 2.5 + half))
    assert s.sd_percent == pytest.approx(51.639777)
    assert all(type(v) in (float, int) for v in vars(s).values())  # plain numbers: xdist serialises them
    one = summarize([5.0])
    assert (one.sd, one.ci_low, one.ci_high) == (0.0, 5.0, 5.0)


def test_measurement_summary_is_of_block_rates() -> None:
    m = Measurement(Plan(warmup=0, repeat=2, number=10, items_per_step=4), block_ns=[1_000_000_000, 2_000_000_000])
    assert m.rates == [40.0, 20.0]
    assert m.summary().mean == 30.0
    assert m.seconds == 3.0


BASE = Baseline(throughput=100.0, unit="img/s", tolerance=0.1, source="Lambda v0 table")


@pytest.mark.parametrize("mean, status", [(90.0, MET), (89.99, BELOW), (150.0, MET), (10.0, BELOW)])
def test_against_baseline(mean: float, status: str) -> None:
    verdict = against_baseline(mean, "img/s", BASE)
    assert verdict.status == status and verdict.failed == (status == BELOW)
    assert verdict.ratio == pytest.approx(mean / 100)
    assert "target 90 img/s" in verdict.message and "source: Lambda v0 table" in verdict.message


def test_missing_baseline_is_never_met() -> None:
    verdict = against_baseline(1e9, "img/s", None)
    assert verdict.status == NO_BASELINE and verdict.ratio is None and not verdict.failed


@pytest.mark.parametrize("mean, status", [(95.0, OK), (94.9, SLOWER), (120.0, OK)])
def test_against_earlier(mean: float, status: str) -> None:
    verdict = against_earlier(mean, "img/s", 100.0, 0.05, "old.json")
    assert verdict.status == status and verdict.failed == (status == SLOWER)
    assert "old.json" in verdict.message and "--tolerance 5%" in verdict.message


def test_prepare_compiles_in_place_when_asked() -> None:
    cpu = torch.device("cpu")
    for compile in (False, True):
        model = torch.nn.Linear(2, 2)
        assert prepare(model, Setup({}, 1, cpu, resolve("fp32", cpu), compile=compile)) is model
        assert (model._compiled_call_impl is not None) == compile


def test_latency_verdicts_are_lower_is_better() -> None:
    from pytest_mlperf.config.schema import MetricBaseline
    from pytest_mlperf.results.verdict import ABOVE

    p90 = MetricBaseline(value=10.0, unit="ms", tolerance=0.1, source="test")
    assert against_baseline(10.9, "ms", p90, lower_is_better=True).status == MET
    missed = against_baseline(11.2, "ms", p90, lower_is_better=True)
    assert (
        missed.status == ABOVE
        and missed.failed
        and "is above the target 11 ms (baseline 10 ms + 10%)" in (missed.message)
    )
    assert against_earlier(10.4, "ms", 10.0, 0.05, "old.json", lower_is_better=True).status == OK
    assert against_earlier(10.6, "ms", 10.0, 0.05, "old.json", lower_is_better=True).status == SLOWER
    assert against_earlier(9.0, "ms", 10.0, 0.05, "old.json", lower_is_better=True).status == OK
