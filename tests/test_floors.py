"""The CPU hosts' (cpu, 2xcpu) host-relative targets: every case is judged against one, and a build several times
slower than it should be fails its peak-fraction floor on any host (the floor scales with the peak measured in the
test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import REPO

from pytest_mlperf.config.matrix import expand
from pytest_mlperf.config.schema import load_system

HOSTS = ["cpu", "2xcpu"]  #: the systems of CPU hosts, whose floors were measured here


@pytest.mark.parametrize(("name", "task"), [("cpu", "training"), ("cpu", "inference"), ("2xcpu", "training")])
def test_every_cpu_case_has_a_peak_fraction_floor(name: str, task: str) -> None:
    """No case of a CPU host passes by completing: each performance case has a floor, each accuracy pass its
    target."""
    host = load_system(REPO / "systems" / f"{name}.yaml")
    cases = expand(task, [], [host])
    assert cases
    assert [c.id for c in cases if c.settings.floor is None] == []
    for case in cases:
        floor = case.settings.floor
        assert floor is not None and 0 < floor.value < 1 and floor.source
    if task == "inference":
        accuracy = expand(task, [], [host], accuracy=True)
        assert accuracy and all(c.system.spec.inference[c.benchmark].accuracy_target for c in accuracy)


@pytest.mark.parametrize("name", HOSTS)
def test_cpu_floors_are_the_recorded_runs_lowest_fraction_over_the_margin(name: str) -> None:
    """The system file states what benchmarks/cpu_floors.py derived from the recorded runs (fixtures/floors)."""
    recorded = json.loads((REPO / "fixtures" / "floors" / f"{name}.json").read_text())
    host = load_system(REPO / "systems" / f"{name}.yaml")
    cases = expand("training", [], [host]) + expand("inference", [], [host])
    assert {c.id for c in cases} == set(recorded["cases"])
    for case in cases:
        row = dict(recorded["cases"][case.id])
        floor = row.pop("floor")
        assert case.settings.floor is not None and case.settings.floor.value == floor, case.id
        assert 0.9 * min(row.values()) / recorded["margin"] <= floor <= min(row.values()) / recorded["margin"]


#: quick cases whose best recorded fraction is at most 6.4x their floor (fixtures/floors/cpu.json), so a build 10x
#: slower fails under any of the recorded conditions, one of them convolution-free
SLOWED = ("regression-fp32-cpu", "vae-fp32-cpu")


def test_a_build_ten_times_slower_fails_its_floor(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every training step made 10x slower in-process (benchmarks/slowdown.py) fails the shipped floor, at whatever
    speed this host runs: the floor is a fraction of the peak measured beside the run."""
    monkeypatch.setenv("PYTHONPATH", str(REPO / "benchmarks"))
    monkeypatch.setenv("MLPERF_SLOWDOWN", "0.9")  # throughput x 0.1
    monkeypatch.setenv("MLPERF_SLOWDOWN_WORKLOADS", ",".join(i.split("-")[0] for i in SLOWED))
    result = pytester.runpytest_subprocess(
        str(REPO / "suites"), f"--rootdir={REPO}", "-p", "no:cacheprovider", "-p", "slowdown", "--system=cpu",
        "-o", "mlperf_plots=false", "-o", "mlperf_between_sd=5", f"--mlperf-reports={tmp_path}",
        "-k", " or ".join(SLOWED),
    )  # fmt: skip
    result.assert_outcomes(failed=len(SLOWED))
    records = {r["id"]: r for r in json.loads((tmp_path / "latest" / "results.json").read_text())["records"]}
    for case in SLOWED:
        record = records[case]
        assert record["floor_status"] == "below", record["message"]
        assert record["quality_status"] == "reached"  # slow, not wrong: only the floor fails it
        assert record["peak_fraction"] < record["floor_fraction"]
    result.stdout.fnmatch_lines(["*regression-fp32-cpu*is below the floor*"])
