"""A run's exit status is its verdict: 0 only when the run is ACCEPTED, 1 when a test failed, and EXIT_REJECTED when
pytest saw nothing fail but the run cannot be accepted (an inconclusive figure, a skip, a case of the earlier run that
did not run, a figure no target judged); `pytest-mlperf compare` exits 1 on a regression and 3 when inconclusive."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from helpers import baseline, rescaled, system

from pytest_mlperf.results.acceptance import EXIT_REJECTED

#: a toy entry whose figure clearly meets its target on any host: many blocks, a baseline far below any throughput
CLEAR = {"batch_size": 4, "baseline": baseline(1e-6)}


def toy(**precisions: dict) -> dict:
    return system(precisions=precisions or {"fp32": CLEAR}, repeat=10)


def test_an_accepted_run_exits_0(project) -> None:
    project.add_system(toy())
    result = project.run("--system=toy")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["acceptance: ACCEPTED*"])


def test_a_failed_test_exits_1(project) -> None:
    project.add_system(toy(fp32={"batch_size": 4, "baseline": baseline(1e12)}))
    assert project.run("--system=toy").ret == pytest.ExitCode.TESTS_FAILED


def test_a_figure_without_a_target_rejects_the_run(project) -> None:
    project.add_system(toy(fp32={"batch_size": 4}))
    result = project.run("--system=toy")
    result.assert_outcomes(passed=1)
    assert result.ret == EXIT_REJECTED
    result.stdout.fnmatch_lines(["acceptance: REJECTED*", "  toy-fp32-toy: no target: *"])


def test_an_inconclusive_figure_rejects_the_run_unless_it_only_warns(project) -> None:
    """Against an earlier run whose interval is enormous no comparison can be clear."""
    project.add_system(toy())
    project.run("--system=toy")
    earlier = json.loads((project.latest / "results.json").read_text())
    for record in earlier["records"]:
        record["ci_low"], record["ci_high"] = record["mean"] * 0.01, record["mean"] * 100
    (project.path / "earlier.json").write_text(json.dumps(earlier))
    result = project.run("--system=toy", "--compare=earlier.json")
    result.assert_outcomes(passed=1, warnings=1)
    assert result.ret == EXIT_REJECTED
    result.stdout.fnmatch_lines(["  toy-fp32-toy: inconclusive: *"])
    result = project.run("--system=toy", "--compare=earlier.json", "--inconclusive=warn")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["acceptance: ACCEPTED*"])


def test_a_case_of_the_earlier_run_that_did_not_run_rejects_the_run(project) -> None:
    project.add_system(toy(fp32=CLEAR, bf16=CLEAR))
    project.run("--system=toy")
    # far slower then: whatever the load now, fp32 is no regression and only the missing case can reject
    earlier = rescaled(project.latest / "results.json", project.path / "earlier.json", 1 / 1000)
    project.add_system(toy(fp32=CLEAR))  # bf16 dropped from the system file
    result = project.run("--system=toy", f"--compare={earlier}")
    result.assert_outcomes(passed=1)
    assert result.ret == EXIT_REJECTED
    result.stdout.fnmatch_lines([f"  toy-bf16-toy: missing: in the earlier run ({earlier}), not in this one"])


def test_a_skipped_test_rejects_the_run(project) -> None:
    """A system whose GPUs this host lacks: every test skips, so nothing was accepted."""
    project.add_system(system(kind="cuda", model="NVIDIA A100-SXM4-80GB", precisions={"fp32": CLEAR}))
    result = project.run("--system=toy")
    result.assert_outcomes(skipped=1)
    assert result.ret == EXIT_REJECTED


def test_compare_exits_1_on_a_regression(project, pytester: pytest.Pytester) -> None:
    project.add_system(toy())
    project.run("--system=toy")
    a = (project.latest / "results.json").resolve()
    b = rescaled(a, project.path / "b.json", 1 / 1000)
    script = shutil.which("pytest-mlperf", path=str(Path(sys.executable).parent))
    assert script is not None
    result = pytester.run(script, "compare", str(a), str(b))
    assert result.ret == 1
    result.stdout.fnmatch_lines(["regressions: toy-fp32-toy (slower)"])
