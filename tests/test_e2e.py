"""End to end: the real ResNet-50 suite on the cpu presets, as a user runs it, and the files it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import REPO

from pytest_mlperf.results.verdict import Figure, side


def run_suite(pytester: pytest.Pytester, reports: Path, *args: str) -> pytest.RunResult:
    """The real suite on the cpu presets (the between-process term pinned: test_intervals runs the probe)."""
    return pytester.runpytest_subprocess(
        str(REPO / "suites"), f"--rootdir={REPO}", "-p", "no:cacheprovider", "--system=cpu",
        "-o", "mlperf_between_sd=5", f"--mlperf-reports={reports}", *args,
    )  # fmt: skip


def check_consistent(record: dict) -> None:
    """items/s = batch x iterations / time, per block, and the summary agrees with the blocks."""
    assert record["count"] == record["repeat"] == len(record["block_ns"]) == len(record["rates"])
    for rate, ns in zip(record["rates"], record["block_ns"], strict=True):
        assert rate == pytest.approx(record["global_batch"] * record["number"] / (ns / 1e9))
    assert record["mean"] == pytest.approx(sum(record["rates"]) / len(record["rates"]))
    assert record["min"] <= record["mean"] <= record["max"]
    assert record["ci_low"] <= record["mean"] <= record["ci_high"]
    assert record["seconds"] == pytest.approx(sum(record["block_ns"]) / 1e9)
    total = record["global_batch"] * record["number"] * record["repeat"]
    # equal items per block: the overall rate is the harmonic mean of the blocks' rates, at most their mean
    harmonic = len(record["rates"]) / sum(1 / rate for rate in record["rates"])
    assert total / record["seconds"] == pytest.approx(harmonic) and harmonic <= record["mean"] * (1 + 1e-9)
    assert len(record["losses"]) == 1 + record["warmup"] + record["number"] * record["repeat"]  # 1: FLOP counting


def test_resnet50_cpu_suite_writes_consistent_results(pytester: pytest.Pytester, tmp_path: Path) -> None:
    result = run_suite(pytester, tmp_path, "-m", "training and resnet and fp32")
    # The floor's verdict rests on this machine's peak, measured in the test (the verdict logic has its own tests):
    # here the run must complete, and a failure may only be the floor, consistent with the numbers.
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()
    latest = tmp_path / "latest"
    for name in ("results.csv", "results.json", "results.jsonl", "results.md", "pivot.csv", "report.html"):
        assert (latest / name).is_file(), name
    data = json.loads((latest / "results.json").read_text())
    (record,) = data["records"]
    assert record["id"] == "resnet50-fp32-cpu" and record["test"].endswith("test_train[resnet50-fp32-cpu]")
    assert record["baseline"] is None and record["baseline_status"] == "no baseline"  # a floor travels, a figure not
    floor = record["floor_fraction"] * record["peak_flops"] / record["flops_per_item"]
    assert record["floor"] == pytest.approx(floor) and record["floor_ratio"] == pytest.approx(record["mean"] / floor)
    measured = Figure(record["mean"], record["ci_low"], record["ci_high"])
    clear = side(measured, Figure.exact(floor), 0.0, lower_is_better=False)
    assert record["floor_status"] == {True: "met", False: "below", None: "inconclusive"}[clear]
    assert record["outcome"] == "passed" if clear is not False else "is below the floor" in record["message"]
    assert record["unit"] == "img/s" and record["device"].startswith("cpu")
    assert record["quality_metric"] == "top-1 accuracy" and record["quality_status"] == "reached"
    assert record["quality_value"] >= record["quality_target"] == 0.9
    check_consistent(record)
    assert data["run"]["systems"] == ["cpu"] and data["run"]["exitstatus"] == result.ret
    page = (latest / "report.html").read_text()
    assert "resnet50-fp32-cpu" in page and "pytest-mlperf results" in page
    # resources: the lease (the CPU, and why), the slice, the telemetry of the measured phase, the system information
    assert record["gpus"].startswith("the CPU: ") and record["cpus"] and record["memory_share_gb"] > 0
    samples = record["telemetry"]["samples"]
    assert samples and all(0 <= s["cpu_util"] <= 100 and s["rss_gb"] > 0 for s in samples)
    assert record["cpu_util_mean"] is not None and record["rss_gb_max"] > 0
    assert data["run"]["system_info"]["cpu_cores"] and "CPU governor" in page and "cpu_util_mean" in page


def test_cpu_suite_under_xdist_writes_one_table(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Two of the real suite's quick workloads (ResNet-50 runs single-process above), one per worker."""
    result = run_suite(pytester, tmp_path, "-m", "training and fp32 and (regression or vae)", "-n", "2")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()
    runs = [p for p in tmp_path.iterdir() if p.name != "latest"]
    assert len(runs) == 1
    records = json.loads((tmp_path / "latest" / "results.json").read_text())["records"]
    assert sorted(r["id"] for r in records) == ["regression-fp32-cpu", "vae-fp32-cpu"]
    assert {r["worker"] for r in records} == {"gw0", "gw1"}
    for record in records:
        check_consistent(record)
        # a failure here can only be the baseline, measured with both cores: each worker had one
        assert record["outcome"] == "passed" or "is below the target" in record["message"]
