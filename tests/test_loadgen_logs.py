"""The LoadGen log parser against real LoadGen output recorded in fixtures/loadgen (see its README)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pytest_mlperf.results.loadgen_logs import (
    DETAIL,
    SUMMARY,
    LoadgenLogError,
    accuracy_outputs,
    parse_logs,
    summary_fields,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "loadgen"


def early_stopping_estimate_ns(folder: str, percentile: str) -> int:
    """The early-stopping estimate as the summary prints it, read independently of the parser."""
    summary = (FIXTURES / folder / SUMMARY).read_text()
    (value,) = re.findall(rf"Early stopping {re.escape(percentile)}th percentile estimate: (\d+)", summary)
    return int(value)


@pytest.mark.parametrize(
    ("folder", "scenario", "validity", "failed"),
    [
        ("offline-valid", "offline", "VALID", ()),
        ("offline-short", "offline", "INVALID", ("min duration",)),
        ("server-valid", "server", "VALID", ()),
        ("server-overloaded", "server", "INVALID", ("early stopping", "latency constraint")),
        ("singlestream-valid", "singlestream", "VALID", ()),
        ("singlestream-short", "singlestream", "INVALID", ("min duration",)),
        ("multistream-valid", "multistream", "VALID", ()),
    ],
)
def test_verdict_and_failed_checks(folder: str, scenario: str, validity: str, failed: tuple[str, ...]) -> None:
    result = parse_logs(FIXTURES / folder)
    assert (result.scenario, result.mode, result.validity, result.failed_checks) == (
        scenario,
        "performance",
        validity,
        failed,
    )
    assert result.valid == (validity == "VALID")
    assert result.message.startswith(f"LoadGen {scenario} performance: {validity}")
    for check in failed:
        assert f"{check} not met" in result.message
    assert bool(result.errors) == (folder == "singlestream-short")  # the one run that ran out of queries
    latency = result.latency_ms
    assert latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p99.9"] <= latency["max"]


@pytest.mark.parametrize(("folder", "label"), [("offline-valid", "Samples per second"),
                                               ("server-overloaded", "Completed samples per second")])  # fmt: skip
def test_throughput_metric_matches_the_summary(folder: str, label: str) -> None:
    metric = parse_logs(FIXTURES / folder).metric
    assert metric is not None
    assert (metric.unit, metric.lower_is_better) == ("samples/s", False)
    assert metric.value == pytest.approx(float(summary_fields(FIXTURES / folder / SUMMARY)[label]), rel=1e-4)


@pytest.mark.parametrize(("folder", "percentile"), [("singlestream-valid", "90.0"), ("multistream-valid", "99.0")])
def test_latency_metric_is_the_early_stopping_estimate_in_ms(folder: str, percentile: str) -> None:
    metric = parse_logs(FIXTURES / folder).metric
    assert metric is not None
    assert metric.name.startswith(f"p{float(percentile):g} ") and (metric.unit, metric.lower_is_better) == ("ms", True)
    # MultiStream logs it as early_stopping_latency_ms, but in ns: a 1 ms-per-call SUT must read as ms, not s
    assert metric.value == pytest.approx(early_stopping_estimate_ns(folder, percentile) / 1e6)
    assert 1.0 <= metric.value < 100


def test_effective_settings_are_what_loadgen_used() -> None:
    result = parse_logs(FIXTURES / "server-valid")
    assert result.effective["target_qps"] == 500
    assert result.effective["min_duration_ms"] == 1000 and result.effective["min_query_count"] == 500
    assert result.latency_bound_ms == 50
    assert result.latency_ms["p99"] < result.latency_bound_ms
    assert result.query_count >= 500


def test_invalid_messages_say_why() -> None:
    short = parse_logs(FIXTURES / "offline-short").message
    assert "min duration not met (needs 1000 ms)" in short and "Increase expected QPS" in short
    overloaded = parse_logs(FIXTURES / "server-overloaded")
    assert f"bound {overloaded.latency_bound_ms:.4g} ms" in overloaded.message
    assert overloaded.latency_ms["p99"] > overloaded.latency_bound_ms


def test_loadgen_errors_are_reported() -> None:
    result = parse_logs(FIXTURES / "singlestream-short")
    (error,) = result.errors
    assert error.startswith("Ending early: Ran out of generated queries")
    assert f"LoadGen error: {error}" in result.message
    assert result.metric is not None  # the early-stopping estimate is still logged: 101 queries are enough for p90


def test_accuracy_run_has_no_verdict_and_every_sample_output() -> None:
    folder = FIXTURES / "offline-accuracy"
    result = parse_logs(folder)
    assert (result.mode, result.validity, result.metric, result.valid) == ("accuracy", None, None, False)
    outputs = accuracy_outputs(folder / "mlperf_log_accuracy.json")
    spec = importlib.util.spec_from_file_location("record", FIXTURES / "record.py")
    assert spec is not None and spec.loader is not None
    record = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(record)
    expected = record.SAMPLES @ record.WEIGHTS  # what the recorded SUT answered, recomputed
    assert sorted(outputs) == list(range(len(expected)))
    got = np.stack([np.frombuffer(outputs[i], np.float32) for i in sorted(outputs)])
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_accuracy_duplicates_must_agree(tmp_path: Path) -> None:
    path = tmp_path / "mlperf_log_accuracy.json"
    entries = [{"seq_id": 0, "qsl_idx": 3, "data": "0A0B"}, {"seq_id": 1, "qsl_idx": 3, "data": "0A0B"}]
    path.write_text(json.dumps(entries))
    assert accuracy_outputs(path) == {3: b"\x0a\x0b"}
    entries[1]["data"] = "0A0C"
    path.write_text(json.dumps(entries))
    with pytest.raises(LoadgenLogError, match="sample 3 was logged twice with different outputs"):
        accuracy_outputs(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[{", "malformed JSON"),
        ('{"qsl_idx": 1}', "expected a JSON list"),
        ('[{"seq_id": 0, "data": "00"}]', "needs an integer 'qsl_idx' and hex 'data'"),
        ('[{"seq_id": 0, "qsl_idx": 1, "data": "zz"}]', "needs an integer 'qsl_idx' and hex 'data'"),
    ],
)
def test_malformed_accuracy_log(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(text)
    with pytest.raises(LoadgenLogError, match=match) as error:
        accuracy_outputs(path)
    assert str(path) in str(error.value)


def copy_fixture(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


@pytest.mark.parametrize("missing", [DETAIL, SUMMARY])
def test_missing_file_is_named(tmp_path: Path, missing: str) -> None:
    folder = copy_fixture("offline-valid", tmp_path)
    (folder / missing).unlink()
    with pytest.raises(LoadgenLogError, match=re.escape(f"{folder / missing}: missing")):
        parse_logs(folder)


def test_missing_accuracy_log_is_named(tmp_path: Path) -> None:
    with pytest.raises(LoadgenLogError, match=re.escape("mlperf_log_accuracy.json: missing")):
        accuracy_outputs(tmp_path / "mlperf_log_accuracy.json")


def test_truncated_detail_log_says_what_is_missing(tmp_path: Path) -> None:
    folder = copy_fixture("offline-valid", tmp_path)
    lines = (folder / DETAIL).read_text().splitlines()
    cut = next(i for i, line in enumerate(lines) if '"key": "result_validity"' in line)
    (folder / DETAIL).write_text("\n".join(lines[:cut]) + "\n")
    with pytest.raises(LoadgenLogError, match=r"no 'result_validity' VALID/INVALID entry .* cut short"):
        parse_logs(folder)


def test_garbled_detail_line_is_located(tmp_path: Path) -> None:
    folder = copy_fixture("offline-valid", tmp_path)
    lines = (folder / DETAIL).read_text().splitlines()
    lines[4] = lines[4][:40]
    (folder / DETAIL).write_text("\n".join(lines))
    with pytest.raises(LoadgenLogError, match=re.escape(f"{folder / DETAIL}:5: malformed JSON")):
        parse_logs(folder)
    (folder / DETAIL).write_text("Result is : VALID\n")
    with pytest.raises(LoadgenLogError, match=re.escape(":1: not a ':::MLLOG {json}' line")):
        parse_logs(folder)


def test_summary_of_another_run_is_caught(tmp_path: Path) -> None:
    folder = copy_fixture("offline-valid", tmp_path)
    shutil.copy(FIXTURES / "offline-short" / SUMMARY, folder / SUMMARY)
    with pytest.raises(LoadgenLogError, match=r"'Result is : INVALID' disagrees with .*result_validity VALID"):
        parse_logs(folder)
