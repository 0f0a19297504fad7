"""The acceptance verdict, and the acceptance report as a reader's browser shows it (headless Chromium)."""

from __future__ import annotations

import pytest
from helpers import baseline, record, system
from PIL import Image

from pytest_mlperf.results.acceptance import ACCEPTED, EXIT_REJECTED, REJECTED, decide, exit_status, matrix


def test_accepted_only_when_every_test_passed_clearly_against_a_target() -> None:
    passed = record("resnet50", outcome="passed", baseline_status="met")
    floored = record("bert", outcome="passed", baseline_status="no baseline", floor_status="met")
    accuracy = record("bert", outcome="passed", mode="accuracy")  # judged on accuracy, not a figure
    verdict = decide([passed, floored, accuracy], {"exitstatus": 0})
    assert verdict.verdict == ACCEPTED and not verdict.reasons
    for spoiler, why in [
        (record("ssd", outcome="failed", message="Failed: ssd-amp-a100: measured 1 img/s is below"), "failed: ssd"),
        (record("ssd", outcome="error", message="dataset broken"), "error: dataset broken"),
        (record("ssd", outcome="skipped", message="coco missing"), "skipped: coco missing"),
        (record("ssd", outcome="passed", earlier_status="inconclusive"), "inconclusive: its 95% interval straddles"),
        (record("ssd", outcome="passed", floor_status="inconclusive"), "inconclusive: its 95% interval straddles"),
        (record("ssd", outcome="passed", baseline_status="no baseline", floor_status="no floor"), "no target"),
        (record("ssd", outcome="passed", baseline_status="no baseline", floor_status="no roof"), "no target"),
    ]:
        verdict = decide([passed, spoiler])
        assert verdict.verdict == REJECTED and verdict.reasons[0][0] == "ssd-amp-a100"
        assert verdict.reasons[0][1].startswith(why), verdict.reasons
        assert exit_status(verdict, pytest.ExitCode.OK) == EXIT_REJECTED
        assert exit_status(verdict, pytest.ExitCode.TESTS_FAILED) == pytest.ExitCode.TESTS_FAILED
    assert decide([]).reasons == [("", "no test ran")]
    assert decide([passed], {"exitstatus": pytest.ExitCode.INTERRUPTED}).verdict == REJECTED
    assert exit_status(decide([passed]), pytest.ExitCode.OK) == pytest.ExitCode.OK
    missing = decide([passed], {"missing": ["ncf-amp-a100"], "compare": "old/results.json"})
    assert missing.reasons == [("ncf-amp-a100", "missing: in the earlier run (old/results.json), not in this one")]


def test_inconclusive_figures_only_warn_when_the_run_says_so() -> None:
    unclear = record("ssd", outcome="passed", baseline_status="inconclusive")
    verdict = decide([unclear], {"inconclusive": "warn"})
    assert verdict.verdict == ACCEPTED and verdict.notes[0].startswith("1 tests were inconclusive")


def test_the_matrix_is_benchmark_by_precision_per_system() -> None:
    records = [
        record("resnet50", precision="fp32", outcome="passed", baseline_status="met", baseline_ratio=1.2),
        record("resnet50", precision="amp", outcome="failed"),
        record("resnet50", precision="amp", system="v100", outcome="skipped", mean=None),
        record("bert", precision="amp", outcome="passed", earlier_status="inconclusive"),
    ]
    systems = matrix(records)
    rows, columns, cells = systems["a100"]
    assert rows == ["resnet50", "bert"] and columns == ["fp32", "amp"]
    assert cells[("resnet50", "fp32")] == ("passed", "1000 img/s (1.20x)")
    assert cells[("resnet50", "amp")][0] == "failed" and cells[("bert", "amp")][0] == "inconclusive"
    assert ("bert", "fp32") not in cells and systems["v100"][2][("resnet50", "amp")] == ("skipped", "")


def test_the_acceptance_report_in_a_browser(project, browser) -> None:
    """A real run (one test passes, one misses its baseline) opened in headless Chromium: verdict, matrix and plots
    are shown without a console error; the screenshot stays in the run folder for a person to look at."""
    project.add_system(
        system(
            precisions={
                "fp32": {"batch_size": 4, "baseline": baseline(1.0)},
                "bf16": {"batch_size": 4, "baseline": baseline(1e12)},
            },
            repeat=10,  # toy blocks last milliseconds: enough of them that the interval is clear of the target
            number=200,
        )
    )
    project.run("--system=toy", "-o", "mlperf_plots=true").assert_outcomes(passed=1, failed=1)
    run = project.latest.resolve()
    page = browser.open(run / "acceptance.html")
    assert page.console_errors == []
    assert page.visible("#verdict") and page.text("#verdict h1") == "REJECTED"
    assert "toy-bf16-toy failed: toy-bf16-toy on cpu" in page.text("#verdict")
    assert page.visible("table.matrix td.passed") and page.visible("table.matrix td.failed")
    assert page.visible("#plots img") and page.images_loaded("#plots img")
    assert page.images_loaded("#details img")  # each test's blocks and telemetry, embedded
    assert "GPUs" in page.text("#system") and "--system=toy" in page.text("#system")
    shot = page.screenshot(run / "acceptance.png")
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.width >= 1000 and image.height >= 800
    # pytest-html's report opens with the same verdict and matrix, and its scripts raise nothing
    html = browser.open(run / "report.html")
    assert html.console_errors == []
    assert html.visible("#verdict") and html.text("#verdict h1") == "REJECTED"
    assert html.visible("table.matrix td.failed") and html.images_loaded("img")


def test_report_files_of_a_run(project) -> None:
    """Beside the tables: the run's plots and each test's as PNG, the acceptance report, and MLPerf's logs."""
    project.add_system(system(precisions={"fp32": {"batch_size": 4, "baseline": baseline(1.0)}}))
    project.run("--system=toy", "--runs=2", "-o", "mlperf_plots=true").assert_outcomes(passed=1)
    run = project.latest.resolve()
    plots = {p.name for p in (run / "plots").iterdir()}
    assert {"versus_baseline.png", "toy-fp32-toy.blocks.png", "toy-fp32-toy.telemetry.png"} <= plots
    assert sorted(p.name for p in (run / "mllog" / "toy-fp32-toy").iterdir()) == ["result_0.txt", "result_1.txt"]
    md = (run / "results.md").read_text()
    assert md.startswith("# Acceptance: ") and "| sd% 80th percentile |" in md
    project.run("--system=toy")  # with mlperf_plots = false (the project's ini): no plots at all
    assert not (project.latest / "plots").exists()
