"""Results tables and HTML: written on the controller, one row per test, kept when a run crashes or is interrupted."""

from __future__ import annotations

import csv
import json
import os
import statistics

import pytest
import torch
import yaml
from helpers import baseline, system

PRECISIONS = {"fp32": {"batch_size": 4}, "bf16": {"batch_size": 4}}


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tables_have_one_row_per_test(project) -> None:
    project.add_system(
        system(precisions={"fp32": {"batch_size": 4, "baseline": baseline(1.0)}, "bf16": {"batch_size": 4}})
    )
    project.add_system(system("gpu", kind="cuda", model="NVIDIA A100-SXM4-80GB"))
    result = project.run("--system=toy,gpu")
    result.assert_outcomes(passed=2, skipped=1)
    latest = project.latest
    assert latest.is_symlink() and (latest / "report.html").is_file()
    rows = {r["id"]: r for r in read_csv(latest / "results.csv")}
    assert set(rows) == {"toy-fp32-toy", "toy-bf16-toy", "toy-fp32-gpu"}
    assert rows["toy-fp32-toy"]["baseline_status"] == "met"
    assert rows["toy-bf16-toy"]["baseline_status"] == "no baseline"
    assert rows["toy-fp32-gpu"]["outcome"] == "skipped" and rows["toy-fp32-gpu"]["mean"] == ""
    records = project.results()
    assert len(records) == 3
    fp32 = next(r for r in records if r["id"] == "toy-fp32-toy")
    assert fp32["unit"] == "samples/s" and fp32["global_batch"] == 4 and fp32["count"] == 3
    assert fp32["torch"] and fp32["python"] and fp32["host"]
    md = (latest / "results.md").read_text()
    assert "| toy-bf16-toy" in md and "no baseline" in md and "# Throughput by system" in md
    pivot = read_csv(latest / "pivot.csv")
    assert [row["system"] for row in pivot] == ["toy", "gpu"]  # in the order of --system
    assert list(pivot[0])[1:] == ["toy-fp32 (samples/s)", "toy-bf16 (samples/s)"]
    assert pivot[1]["toy-fp32 (samples/s)"] == ""  # skipped: empty, never a number
    page = (latest / "report.html").read_text()
    assert "pytest-mlperf results" in page and "toy-bf16-toy" in page and "no baseline" in page
    # the system information: in results.json's run, and in the HTML report's environment table
    info = json.loads((latest / "results.json").read_text())["run"]["system_info"]
    assert info["torch"] == torch.__version__ and info["cpu_cores"] == str(os.cpu_count())
    assert "Transparent huge pages" in page and "CPU governor" in page and info["kernel"] in page


def test_baseline_miss_fails_with_the_figures(project) -> None:
    project.add_system(system(precisions={"fp32": {"batch_size": 4, "baseline": baseline(1e12, tolerance=0.2)}}))
    result = project.run("--system=toy")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*toy-fp32-toy on cpu (* threads): measured * is below the target 8e+11 samples/s "
            "(baseline 1e+12 samples/s - 20%); ratio 0.000; baseline source: test fixture*"
        ]
    )
    (row,) = project.results()
    assert row["outcome"] == "failed" and row["baseline_status"] == "below" and "is below the target" in row["message"]


def test_nan_loss_fails_naming_the_step(project) -> None:
    # blocks of exactly `number` steps (min_block_s 0): how many steps a block takes must not depend on the host's
    # speed, or the NaN step falls in warm-up on one host and in a measured block on another
    project.add_system(system(preset="nan", warmup=2, repeat=3, number=2, min_block_s=0))
    result = project.run("--system=toy")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*toy-fp32-toy: loss became nan at step 6 (measured step 4); training diverged*"])
    (row,) = project.results()
    assert row["mean"] is None and "step 6" in row["message"]


def test_quality_not_reached_fails_with_the_metric(project) -> None:
    project.add_system(system(preset="stuck"))
    result = project.run("--system=toy")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*toy-fp32-toy on cpu*: MSE * did not reach the target 0.5 in 400 steps*"])
    (row,) = project.results()
    assert row["quality_status"] == "not reached" and row["quality_steps"] == 400 and row["mean"] is not None


def test_compare_fails_regressions_matched_by_case_not_node_id(project) -> None:
    project.add_system(system(precisions=PRECISIONS))
    project.run("--system=toy").assert_outcomes(passed=2)
    earlier = json.loads((project.latest / "results.json").read_text())
    for record in earlier["records"]:
        record["test"] = "some/other_file.py::test_renamed[x]"
        scale = 1000 if record["precision"] == "fp32" else 1 / 1000  # far faster then: a clear regression now
        for figure in ("mean", "ci_low", "ci_high"):  # or far slower: whatever the load now, no regression
            record[figure] *= scale
    (project.path / "earlier.json").write_text(json.dumps(earlier))
    result = project.run("--system=toy", "--compare=earlier.json", "--tolerance=0.5")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*toy-fp32-toy on cpu*: measured * vs * in earlier.json: ratio 0.00*, slower than allowed by*"]
    )
    rows = {r["id"]: r for r in project.results()}
    assert rows["toy-fp32-toy"]["earlier_status"] == "slower"
    assert rows["toy-bf16-toy"]["earlier_status"] == "ok"
    comparison = (project.latest / "comparison.md").read_text()
    assert "| toy-fp32-toy | samples/s |" in comparison and "1 ok, 1 failed in B" in comparison  # it failed here


def test_runs_judge_the_trimmed_mean_of_the_runs(project) -> None:
    project.add_system(system(precisions={"fp32": {"batch_size": 4, "baseline": baseline(1.0)}}))
    result = project.run("--system=toy", "--runs=4")
    result.assert_outcomes(passed=1)
    (row,) = project.results()
    means = row["run_means"]
    assert row["runs"] == 4 and len(means) == 4 and row["count"] == 4 and len(row["rates"]) == 4 * 3
    assert row["mean"] == pytest.approx(sum(sorted(means)[1:-1]) / 2)  # without the fastest and slowest run
    assert row["sd_pct"] == pytest.approx(100 * statistics.stdev(means) / row["mean"])  # run-to-run spread
    assert row["ci_low"] < statistics.fmean(means) < row["ci_high"]
    # fresh processes of a toy vary with the machine's load: the verdict follows the interval, whichever it is
    assert row["baseline_status"] == ("met" if row["ci_low"] >= 0.9 else "inconclusive")
    assert row["quality_status"] == "reached" and row["interval"] == "the spread of 4 runs, each in a fresh process"
    statistics_lines = ["every benchmark produced a result: 1 of 1 (pass)", "sd% 80th percentile: *sd% across runs"]
    result.stdout.fnmatch_lines(statistics_lines)  # the suite statistics close the terminal summary


def test_an_inconclusive_verdict_reruns_then_warns(project) -> None:
    """Against an earlier run whose interval is enormous no verdict can be clear: the test reruns its case as often as
    --rerun-inconclusive allows, then passes with a warning, its status inconclusive."""
    project.add_system(system())
    project.run("--system=toy").assert_outcomes(passed=1)
    earlier = json.loads((project.latest / "results.json").read_text())
    earlier["records"][0].update(ci_low=0.0, ci_high=1e12)
    (project.path / "earlier.json").write_text(json.dumps(earlier))
    result = project.run("--system=toy", "--compare=earlier.json", "--rerun-inconclusive=2")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*Inconclusive: toy-fp32-toy: measured * (95% CI * to *) vs * inconclusive against*"])
    (row,) = project.results()
    assert row["earlier_status"] == "inconclusive" and row["runs"] == 3 and len(row["run_means"]) == 3


def test_runs_must_be_positive(project) -> None:
    project.add_system(system())
    result = project.run("--system=toy", "--runs=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--runs must be at least 1*got 0*"])


def test_compare_without_a_match_says_so(project) -> None:
    project.add_system(system())
    (project.path / "earlier.json").write_text(json.dumps({"run": {}, "records": []}))
    project.run("--system=toy", "--compare=earlier.json").assert_outcomes(passed=1)
    (row,) = project.results()
    assert row["earlier_status"] == "no earlier run"


def test_xdist_writes_one_table_on_the_controller(project) -> None:
    project.add_system(system(precisions={p: {"batch_size": 4} for p in ("fp32", "bf16", "amp")}))
    project.add_system(system("other", precisions=PRECISIONS))
    result = project.run("--system=toy,other", "-n", "2", "--progress=on", "--progress-every=0")
    result.assert_outcomes(passed=5)
    # the workers' progress, printed by the controller (which owns the terminal): at least each worker's last line,
    # which its final sweep finds however fast the tests ran
    result.stdout.fnmatch_lines(["[[]progress gw?[]] toy-*: block 3 of 3, * samples/s, ETA 0 s"])
    runs = [p for p in (project.path / "reports").iterdir() if p.name != "latest"]
    assert len(runs) == 1
    records = project.results()
    assert len(records) == 5 and {r["worker"] for r in records} == {"gw0", "gw1"}
    assert all(r["threads"] == 1 for r in records)  # each of 2 workers gets its share of this 2-core machine
    assert len(read_csv(project.latest / "results.csv")) == 5


def test_rows_survive_an_interrupted_run(project) -> None:
    project.add_system(system(precisions=PRECISIONS))
    project.pytester.makepyfile(
        test_zz_interrupt="""
        def test_ctrl_c():
            raise KeyboardInterrupt
        """
    )
    result = project.run_subprocess("--system=toy")  # in-process, pytester would re-raise the Ctrl-C here
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert {r["id"] for r in project.results()} == {"toy-fp32-toy", "toy-bf16-toy"}
    assert json.loads((project.latest / "results.json").read_text())["run"]["exitstatus"] == 2


def test_rows_survive_a_crashed_process(project) -> None:
    project.add_system(system(precisions=PRECISIONS))
    project.pytester.makepyfile(
        test_zz_crash="""
        import os

        def test_crash():
            os._exit(3)
        """
    )
    result = project.run_subprocess("--system=toy")
    assert result.ret == 3
    (run,) = (p for p in (project.path / "reports").iterdir() if p.name != "latest")
    assert not (run / "results.json").exists()  # the process died before the session's end
    assert {r["id"] for r in read_csv(run / "results.csv")} == {"toy-fp32-toy", "toy-bf16-toy"}
    assert len((run / "results.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("systems", [None, "", "cpu"])
def test_session_without_mlperf_tests_leaves_no_reports(pytester: pytest.Pytester, systems: str | None) -> None:
    """pytest-mlperf is loaded in every session of its venv: without mlperf tests it must change nothing."""
    if systems is not None:
        (pytester.path / "systems").mkdir()
    if systems:
        (pytester.path / "systems" / "cpu.yaml").write_text(yaml.safe_dump(system("cpu", benchmark="resnet50")))
    pytester.makepyfile("def test_plain(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()
    assert "Generated html report" not in result.stdout.str()


def test_mlperf_test_without_usable_systems_fails_to_collect_clearly(project) -> None:
    result = project.run()  # systems/ is empty: auto-detection finds no 'cpu' system
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*pytest-mlperf: --system=auto: no GPU here and no 'cpu' system file; pass --system=NAME"]
    )


def test_users_html_path_is_kept(project) -> None:
    project.add_system(system())
    project.run("--system=toy", "--html=mine.html").assert_outcomes(passed=1)
    assert "pytest-mlperf results" in (project.path / "mine.html").read_text()
    assert not (project.latest / "report.html").exists() and (project.latest / "results.csv").exists()


def test_progress_lines_between_pytests_own(project) -> None:
    project.add_system(system())
    result = project.run("--system=toy", "--progress=on", "--progress-every=0")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["[[]progress[]] toy-fp32-toy: block 1 of 3, * samples/s, ETA * s", "*block 3 of 3*ETA 0 s", "*1 passed*"]
    )
    assert "[progress]" not in project.run("--system=toy").stdout.str()  # auto: not a terminal here
