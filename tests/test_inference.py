"""Inference through the real LoadGen: system-file schema, the matrix of inference Cases, and the suite end to end on
small systems written here (one calibrated on the host and VALID, one whose pinned Offline rate makes its run INVALID
on any host)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from helpers import REPO, system

from pytest_mlperf.config.matrix import expand
from pytest_mlperf.config.schema import SystemFileError, load_system
from pytest_mlperf.config.systems import check_against_workloads

#: LoadGen's expected rates and latencies left out: calibrated on the host before each run
SCENARIOS = {
    "offline": {"max_batch": 32, "min_duration_ms": 300, "min_query_count": 1},
    "singlestream": {"min_duration_ms": 200, "min_query_count": 64},
}


def baseline(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "tolerance": 0.1, "source": "test fixture"}


def inference_system(name: str, scenarios: dict[str, Any] | None = None, **entry: Any) -> dict[str, Any]:
    """A system file training nothing we run here, serving ResNet-50's cpu model on 32 samples."""
    content = system(name, benchmark="resnet50")
    content["inference"] = {
        "resnet50": {
            "preset": "cpu",
            "samples": 32,
            "precisions": ["fp32", "int8"],
            "scenarios": scenarios or SCENARIOS,
            **entry,
        }
    }
    return content


def write(folder: Path, content: dict[str, Any]) -> Path:
    path = folder / f"{content['name']}.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def load(path: Path) -> Any:
    loaded = load_system(path)
    check_against_workloads(loaded)
    return loaded


def test_cases_have_scenario_ids_marks_and_loadgen_settings(tmp_path: Path) -> None:
    tiny = load(write(tmp_path, inference_system("tiny")))
    performance = expand("inference", [], [tiny])
    assert [c.id for c in performance] == [
        "resnet50-offline-fp32-tiny",
        "resnet50-singlestream-fp32-tiny",
        "resnet50-offline-int8-tiny",
        "resnet50-singlestream-int8-tiny",
    ]
    offline_int8 = performance[2]
    assert offline_int8.marks == ("resnet", "resnet50", "inference", "offline", "int8")
    scenario = offline_int8.scenario
    assert scenario is not None and (scenario.mode, scenario.max_batch) == ("performance", 32)
    assert scenario.unset == ["offline_expected_qps"] and scenario.sources == ()  # calibrated before the run
    assert scenario.performance_sample_count == 32 and scenario.min_duration_ms == 300
    pinned = {"server": {"target_qps": 50, "max_batch": 8, "min_duration_ms": 300, "min_query_count": 460}}
    (server,) = expand("inference", [], [load(write(tmp_path, inference_system("pins", pinned, precisions=["fp32"])))])
    assert server.scenario is not None and server.scenario.server_target_qps == 50
    assert server.scenario.unset == ["server_target_latency_ms"]
    assert server.scenario.sources == (("server_target_qps", "system file"),)
    assert len({c.key(False, "synthetic") for c in performance}) == len(performance)
    accuracy = expand("inference", ["resnet50"], [tiny], accuracy=True)
    assert [c.id for c in accuracy] == ["resnet50-accuracy-fp32-tiny", "resnet50-accuracy-int8-tiny"]
    assert accuracy[1].marks == ("resnet", "resnet50", "inference", "accuracy", "int8")
    assert accuracy[1].scenario is not None and accuracy[1].scenario.mode == "accuracy"
    training = expand("training", ["resnet50"], [tiny])
    assert [(c.id, c.scenario) for c in training] == [("resnet50-fp32-tiny", None)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"scenarios": {"batch": {"min_duration_ms": 1, "min_query_count": 1}}},
            "inference.resnet50.scenarios.batch: unknown key; expected one of: offline, server, singlestream, "
            "multistream",
        ),
        (
            {"scenarios": {"offline": {**SCENARIOS["offline"], "expected_qps": 0}}},
            "inference.resnet50.scenarios.offline.expected_qps: input should be greater than 0, got 0",
        ),
        (
            {"scenarios": {"offline": {"max_batch": 8, "min_query_count": 1}}},
            "inference.resnet50.scenarios.offline.min_duration_ms: required key is missing",
        ),
        (
            {"scenarios": {"server": {**SCENARIOS["offline"], "expected_qps": 5}}},
            "inference.resnet50.scenarios.server.expected_qps: unknown key; expected one of: min_duration_ms, "
            "min_query_count, baselines, peak_fractions, precisions, target_qps, latency_ms, max_batch",
        ),
        ({"scenarios": {}}, "inference.resnet50.scenarios: at least one scenario is needed"),
        (
            {"precisions": ["fp32", "amp"]},
            "inference.resnet50.precisions.1: input should be 'fp32', 'fp16', 'bf16' or 'int8'",
        ),
        ({"precisions": ["int8", "int8"]}, "inference.resnet50: precisions: int8 listed more than once"),
        ({"preset": "huge"}, "inference.resnet50.preset: 'huge' is not a preset of resnet50"),
        (
            {"scenarios": {"offline": {**SCENARIOS["offline"], "precisions": ["bf16"]}}},
            "inference.resnet50: scenarios.offline.precisions: bf16 not among the entry's precisions (fp32, int8)",
        ),
        (
            {
                "scenarios": {
                    "singlestream": {**SCENARIOS["singlestream"], "baselines": {"fp32": baseline(5, "samples/s")}}
                }
            },
            "inference.resnet50.scenarios.singlestream: baselines.fp32.unit: 'samples/s', but this scenario's metric "
            "is in 'ms'",
        ),
    ],
)
def test_inference_section_errors_name_file_and_key(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    content = inference_system("bad")
    content["inference"]["resnet50"] |= change
    path = write(tmp_path, content)
    with pytest.raises(SystemFileError) as error:
        load(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_unknown_inference_benchmark_is_named(tmp_path: Path) -> None:
    content = inference_system("bad")
    content["inference"] = {"resnet51": content["inference"]["resnet50"]}
    path = write(tmp_path, content)
    with pytest.raises(SystemFileError, match=r"bad\.yaml: inference\.resnet51: unknown benchmark"):
        load(path)


def test_unserved_benchmark_is_named(tmp_path: Path) -> None:
    content = inference_system("bad")
    content["inference"] = {"dcgan": content["inference"]["resnet50"]}
    path = write(tmp_path, content)
    with pytest.raises(SystemFileError, match=r"inference\.dcgan: dcgan's model is not served .*served: .*resnet50"):
        load(path)


def test_bert_answers_are_spans_scored_with_squad_f1() -> None:
    from pytest_mlperf.run.serving import Answerer, labels_of, predict_all, served, trained
    from pytest_mlperf.workloads import get

    workload, cpu = get("bert_base_squad"), torch.device("cpu")
    model = trained(workload, "cpu", cpu, 16, 64)
    preset, serving = workload.presets["cpu"], workload.serving
    assert serving is not None
    targets = labels_of(model, 64)
    truth = torch.stack(targets, 1).numpy().astype("int32")
    assert serving.score(truth, targets) == 100.0
    assert serving.score(truth[:, [0, 0]], targets) < 100.0  # one-token answers overlap only in part
    for precision in ("fp32", "int8"):
        served_model, context = served(model.model, precision, cpu)
        answers = predict_all(Answerer(served_model, model.inputs, serving, preset, context), 64, 16)
        assert answers.shape == (64, 2) and answers.dtype == "int32"
        assert (answers[:, 0] <= answers[:, 1]).all() and serving.score(answers, targets) >= 95.0


def test_inference_rows_carry_the_loadgen_setting_and_the_served_flops(tmp_path: Path) -> None:
    from pytest_mlperf.results.loadgen_logs import parse_logs
    from pytest_mlperf.results.record import build
    from pytest_mlperf.results.verdict import Judge
    from pytest_mlperf.run.flops import Work
    from pytest_mlperf.run.loadgen import LoadgenRun

    scenarios = {
        "offline": {"expected_qps": 140, "max_batch": 16, "min_duration_ms": 1000, "min_query_count": 1},
        "server": {"latency_ms": 50, "max_batch": 4, "min_duration_ms": 1000, "min_query_count": 500},
        "multistream": {"min_duration_ms": 1000, "min_query_count": 662},
    }
    rows = load(write(tmp_path, inference_system("rows", scenarios, precisions=["fp32"])))
    cases = {c.performance: c for c in expand("inference", [], [rows])}
    work = Work(2e6, 1e12, "a roof")
    records = {}
    for name, folder in (
        ("offline", "offline-short"),
        ("server", "server-valid"),
        ("multistream", "multistream-valid"),
    ):
        logs = REPO / "fixtures" / "loadgen" / folder  # real LoadGen runs (fixtures/loadgen/record.py)
        scenario = cases[name].scenario
        assert scenario is not None
        settled = dataclasses.replace(
            scenario,
            server_target_qps=500 if name == "server" else None,
            multi_stream_expected_latency_ms=1.1 if name == "multistream" else None,
            sources=(
                *scenario.sources,
                ("server_target_qps", "calibrated: X"),
                ("multi_stream_expected_latency_ms", "calibrated: Y"),
            ),
        )
        run = LoadgenRun(settled, logs, parse_logs(logs), 1.0)
        records[name] = build(cases[name], "cpu", [], None, work, Judge(None), [run])
    offline, server, multistream = records["offline"], records["server"], records["multistream"]
    assert (offline.loadgen_setting, offline.loadgen_setting_source) == ("offline_expected_qps=140", "system file")
    assert offline.validity == "INVALID" and offline.flops_achieved is None  # no figure from an INVALID run
    assert server.loadgen_setting == "server_target_qps=500, server_target_latency_ms=50"
    assert server.loadgen_setting_source == "server_target_qps: calibrated: X; server_target_latency_ms: system file"
    assert (multistream.loadgen_setting, multistream.loadgen_setting_source) == (
        "multi_stream_expected_latency_ms=1.1",
        "calibrated: Y",
    )
    for record in records.values():
        assert (record.flops_per_item, record.peak_flops, record.peak_source) == (2e6, 1e12, "a roof")
    assert server.mean and server.flops_achieved == pytest.approx(2e6 * server.mean)  # samples/s
    assert multistream.unit == "ms" and multistream.mean  # 8 samples per query in that many ms
    assert multistream.flops_achieved == pytest.approx(2e6 * 8 / (multistream.mean / 1e3))
    assert multistream.peak_fraction == pytest.approx(multistream.flops_achieved / 1e12)


def test_suite_runs_loadgen_valid_and_accurate_and_fails_invalid(pytester: pytest.Pytester, tmp_path: Path) -> None:
    systems, reports = tmp_path / "systems", tmp_path / "reports"
    systems.mkdir()
    easy = {**SCENARIOS["offline"], "baselines": {"int8": baseline(1, "samples/s")}}
    write(systems, inference_system("tiny", {**SCENARIOS, "offline": easy}))
    # a pinned 0.01 sample/s: LoadGen's one Offline query holds a single sample (1.1 x 30 s x 0.01), which ends long
    # before 30 s on any host; a VALID SingleStream run whose p90 latency cannot be within 10% of 0.01 ms
    slow = {
        "offline": {"expected_qps": 0.01, "max_batch": 4, "min_duration_ms": 30_000, "min_query_count": 1},
        "singlestream": {**SCENARIOS["singlestream"], "baselines": {"fp32": baseline(0.01, "ms")}},
    }
    short = write(systems, inference_system("short", slow, precisions=["fp32"]))
    result = pytester.runpytest_subprocess(
        str(REPO / "suites"), f"--rootdir={REPO}", "-p", "no:cacheprovider",
        "-o", "mlperf_plots=false", "-o", "mlperf_between_sd=2", "--system=tiny,short",
        f"--systems-dir={systems}", f"--mlperf-reports={reports}", "-m", "inference",
    )  # fmt: skip
    result.assert_outcomes(passed=7, failed=2)
    records = {r["id"]: r for r in json.loads((reports / "latest" / "results.json").read_text())["records"]}
    assert set(records) == {
        "resnet50-offline-fp32-tiny", "resnet50-singlestream-fp32-tiny", "resnet50-offline-int8-tiny",
        "resnet50-singlestream-int8-tiny", "resnet50-accuracy-fp32-tiny", "resnet50-accuracy-int8-tiny",
        "resnet50-offline-fp32-short", "resnet50-singlestream-fp32-short", "resnet50-accuracy-fp32-short",
    }  # fmt: skip
    setting = {"offline": ("offline_expected_qps", 32), "singlestream": ("single_stream_expected_latency_ms", 1)}
    for name in ("offline", "singlestream"):
        for precision in ("fp32", "int8"):
            record = records[f"resnet50-{name}-{precision}-tiny"]
            assert record["outcome"] == "passed" and record["validity"] == "VALID", record["message"]
            assert (record["scenario"], record["mode"], record["failed_checks"]) == (name, "performance", "")
            assert record["unit"] == ("samples/s" if name == "offline" else "ms") and record["mean"] > 0
            assert record["lower_is_better"] == (name == "singlestream") and record["metric"]
            # one process's LoadGen figure: widened by the (pinned) between-process sd, 2% at z = 1.96
            assert record["interval"].startswith("one LoadGen run, widened by a between-process sd of 2%")
            half = (record["ci_high"] - record["ci_low"]) / 2
            assert half == pytest.approx(1.96 * 0.02 * record["mean"], rel=1e-3)
            logs = Path(record["loadgen_dir"])
            assert logs == (reports / "latest").resolve() / "loadgen" / record["id"]
            assert "Result is : VALID" in (logs / "mlperf_log_summary.txt").read_text()
            # calibrated on the host: the setting and what was measured, in the row
            key, batch = setting[name]
            assert re.fullmatch(rf"{key}=[0-9.e+-]+", record["loadgen_setting"]), record["loadgen_setting"]
            assert record["loadgen_setting_source"].startswith(f"calibrated: predict of {batch} sample")
            # the work is the FP32 model's forward pass, whatever the precision served
            assert record["flops_per_item"] == records["resnet50-offline-fp32-tiny"]["flops_per_item"] > 0
            per_second = record["mean"] if name == "offline" else 1e3 / record["mean"]
            assert record["flops_achieved"] == pytest.approx(record["flops_per_item"] * per_second)
            assert record["peak_source"].startswith("measured: 1024x1024 float32 matmul")
            assert record["peak_fraction"] == pytest.approx(record["flops_achieved"] / record["peak_flops"])
    for precision in ("fp32", "int8"):
        record = records[f"resnet50-accuracy-{precision}-tiny"]
        assert record["outcome"] == "passed" and record["mode"] == "accuracy", record["message"]
        assert record["quality_value"] >= 0.99 * record["accuracy_reference"] > 0
        assert record["accuracy_ratio"] == pytest.approx(record["quality_value"] / record["accuracy_reference"])
        assert record["loadgen_setting"] == ""  # every sample once: no rate to set
    assert records["resnet50-accuracy-fp32-tiny"]["accuracy_ratio"] == 1.0  # the same model: LoadGen changes no answer
    assert records["resnet50-offline-int8-tiny"]["baseline_status"] == "met"
    assert records["resnet50-offline-fp32-tiny"]["baseline_status"] == "no baseline"
    slow_latency = records["resnet50-singlestream-fp32-short"]
    assert slow_latency["validity"] == "VALID" and slow_latency["outcome"] == "failed"
    assert slow_latency["baseline_status"] == "above" and slow_latency["baseline_ratio"] > 1.1
    assert "p90 latency" in slow_latency["message"] and "is above the target 0.011 ms" in slow_latency["message"]
    invalid = records["resnet50-offline-fp32-short"]
    assert invalid["outcome"] == "failed" and invalid["validity"] == "INVALID"
    assert "min duration" in invalid["failed_checks"] and "min duration not met" in invalid["message"]
    assert (invalid["loadgen_setting"], invalid["loadgen_setting_source"]) == (
        "offline_expected_qps=0.01",
        "system file",
    )
    # the failure names the pinned key and the value to set, calibrated then
    advice = re.search(
        rf"{re.escape(str(short))}: inference\.resnet50\.scenarios\.offline\.expected_qps: 0\.01 is too low for "
        r"this host: .*; set it to ([0-9.e+]+) \(calibrated here: predict of 4 samples: ",
        invalid["message"],
    )
    assert advice and float(advice.group(1)) > 1, invalid["message"]
    result.stdout.fnmatch_lines(["*resnet50-offline-fp32-short*INVALID*min duration not met*"])
    # the HTML report links each run's LoadGen logs, relative to the run folder it sits in
    page = (reports / "latest" / "report.html").read_text()
    assert "loadgen/resnet50-offline-int8-tiny/mlperf_log_summary.txt" in page
    pivot = (reports / "latest" / "results.md").read_text()
    assert "resnet50-offline-int8 (samples/s)" in pivot and "resnet50-singlestream-int8 (ms)" in pivot


def test_find_peak_qps_searches_server_on_the_valid_verdict(pytester: pytest.Pytester) -> None:
    server = {"max_batch": 8, "min_duration_ms": 300, "min_query_count": 460}  # target and bound calibrated
    outlier_suite(pytester, "peak", 64, ["fp32"], {"server": server})  # a toy model: the search's runs take seconds
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--system=peak", "-m", "server", "--find-peak-qps")
    result.assert_outcomes(passed=1)
    (record,) = json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())["records"]
    trials = record["peak_trials"]
    valid = [t["target_qps"] for t in trials if t["validity"] == "VALID"]
    invalid = [t["target_qps"] for t in trials if t["validity"] == "INVALID"]
    assert valid and invalid and record["peak_qps"] == max(valid) < min(invalid), trials
    assert all(Path(t["log_dir"]).is_dir() for t in trials)
    assert Path(record["loadgen_dir"]) == Path(next(t["log_dir"] for t in trials if t["target_qps"] == max(valid)))
    assert record["validity"] == "VALID" and record["unit"] == "samples/s"
    # searched from the calibrated target, under the calibrated bound
    assert record["loadgen_setting"].startswith(f"server_target_qps={record['peak_qps']:g}, server_target_latency_ms=")
    source = re.fullmatch(
        r"server_target_qps: --find-peak-qps from (.+) \((calibrated: .+)\); "
        r"server_target_latency_ms: (calibrated: .+)",
        record["loadgen_setting_source"],
    )
    assert source and float(source[1]) == pytest.approx(trials[0]["target_qps"]) and source[2] == source[3]


#: A conftest registering "outlier": a linear classifier (label: x0 > x1) with a ninth input that is always 0 and
#: whose weight starts (and, with no gradient, stays) at 1e5. Per-tensor int8 weights then step by 1e5 / 127.5, and
#: the learnt weights (tens at most) all round to 0: the int8 model answers class 0 for every sample.
OUTLIER_CONFTEST = """
import torch
from torch import nn
from pytest_mlperf.run.training import Supervised
from pytest_mlperf.workloads import Quality, Workload, known, register
from pytest_mlperf.workloads.metrics import CLASSIFICATION, top1


def batches(batch_size, count, seed):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.cat([torch.randn(batch_size, 8, generator=g), torch.zeros(batch_size, 1)], 1) for _ in range(count)]
    return [(x, (x[:, 0] > x[:, 1]).long()) for x in xs]


def build(setup):
    model = nn.Sequential(nn.Linear(9, 2))  # quantize_dynamic converts submodules only
    with torch.no_grad():
        model[0].weight[:, 8] = torch.tensor([1e5, -1e5])
    return Supervised(
        setup, model, batches(setup.batch_size, 8, 0), loss=nn.functional.cross_entropy,
        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.5), metric=top1,
        held_out=batches(setup.batch_size, 2, 1),
    )


if "outlier" not in known():
    register(Workload(
        name="outlier", family="toys", task="training", unit="samples/s", description="an outlier-weight classifier",
        presets={"cpu": {}, "real": {}}, build=build, serving=CLASSIFICATION,
        quality=Quality("top-1 accuracy", target=0.95, max_steps=200, eval_every=10),
    ))
"""


def outlier_suite(
    pytester: pytest.Pytester, name: str, samples: int, precisions: list[str], scenarios: dict[str, Any]
) -> None:
    """The suite beside a conftest.py registering the toy `outlier` workload, and system `name` serving it."""
    pytester.makeconftest(OUTLIER_CONFTEST)
    pytester.makepyfile(test_suite=(REPO / "suites" / "test_inference.py").read_text())
    content = system(name, benchmark="outlier")
    content["inference"] = {
        "outlier": {"preset": "cpu", "samples": samples, "precisions": precisions, "scenarios": scenarios}
    }
    (pytester.path / "systems").mkdir()
    write(pytester.path / "systems", content)


@pytest.mark.parametrize("target", [0.99, 0.999])
def test_accuracy_fails_a_precision_that_loses_accuracy(pytester: pytest.Pytester, target: float) -> None:
    pytester.makeconftest(OUTLIER_CONFTEST)
    pytester.makepyfile(test_suite=(REPO / "suites" / "test_inference.py").read_text())
    content = system("outlier", benchmark="outlier")
    content["inference"] = {
        "outlier": {
            "preset": "cpu",
            "samples": 64,
            "precisions": ["fp32", "bf16", "int8"],
            "scenarios": {"offline": SCENARIOS["offline"]},
            "accuracy_target": target,
        }
    }
    (pytester.path / "systems").mkdir()
    write(pytester.path / "systems", content)
    result = pytester.runpytest("-p", "no:cacheprovider", "--system=outlier", "-m", "accuracy")
    result.assert_outcomes(passed=2, failed=1)
    records = {r["id"]: r for r in json.loads((pytester.path / "reports/latest/results.json").read_text())["records"]}
    assert records["outlier-accuracy-fp32-outlier"]["accuracy_ratio"] == 1.0
    assert records["outlier-accuracy-bf16-outlier"]["outcome"] == "passed"
    int8 = records["outlier-accuracy-int8-outlier"]
    assert int8["outcome"] == "failed" and int8["accuracy_ratio"] < 0.7
    result.stdout.fnmatch_lines([f"*outlier-accuracy-int8-outlier: top-1 accuracy 0.* over 64 samples is *% of the "
                                 f"FP32 model's 0.9*; the target is {100 * target:g}%*"])  # fmt: skip


def test_int8_of_a_model_without_linear_layers_is_refused() -> None:
    from pytest_mlperf.run.serving import served

    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    with pytest.raises(ValueError, match="int8: dynamic quantization found no Linear or LSTM layer to convert in Seq"):
        served(conv, "int8", torch.device("cpu"))
    with pytest.raises(ValueError, match="no Linear or LSTM layer"):  # a bare Linear: only submodules are swapped
        served(torch.nn.Linear(4, 2), "int8", torch.device("cpu"))


def test_loadgen_logs_of_xdist_workers_land_in_the_run_folder(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(OUTLIER_CONFTEST)
    pytester.makepyfile(test_suite=(REPO / "suites" / "test_inference.py").read_text())
    content = system("outlier", benchmark="outlier")
    offline = {"max_batch": 8, "min_duration_ms": 100, "min_query_count": 1}  # expected_qps calibrated
    content["inference"] = {
        "outlier": {"preset": "cpu", "samples": 16, "precisions": ["fp32", "bf16"], "scenarios": {"offline": offline}}
    }
    (pytester.path / "systems").mkdir()
    write(pytester.path / "systems", content)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--system=outlier", "-m", "offline", "-n", "2")
    run = (pytester.path / "reports" / "latest").resolve()
    records = json.loads((run / "results.json").read_text())["records"]
    assert len(records) == 2 and all(r["worker"].startswith("gw") for r in records)  # run on xdist workers
    for record in records:
        assert Path(record["loadgen_dir"]) == run / "loadgen" / record["id"]
        # VALID or not (two workers share the CPU, not what this test is about): LoadGen judged the run in that folder
        assert "Result is : " in (run / "loadgen" / record["id"] / "mlperf_log_summary.txt").read_text()


def test_runs_after_the_first_serve_in_fresh_processes(pytester: pytest.Pytester) -> None:
    """--runs 3 of a LoadGen case: the first run in the test's process, each other in a process of its own (which
    imports the workload from the user's conftest.py); the figure's interval is the spread of the three, and says
    so. A rerun of an inconclusive verdict takes the same path (`Serve.check`)."""
    offline = {"max_batch": 8, "min_duration_ms": 100, "min_query_count": 1}
    outlier_suite(pytester, "outlier", 16, ["fp32"], {"offline": offline})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--system=outlier", "-m", "offline", "--runs=3")
    result.assert_outcomes(passed=1)
    run = (pytester.path / "reports" / "latest").resolve()
    (record,) = json.loads((run / "results.json").read_text())["records"]
    assert record["runs"] == 3 and len(record["run_means"]) == 3 and record["count"] == 3
    assert record["interval"] == "the spread of 3 LoadGen runs, each in a process of its own"
    assert record["between_sd_pct"] is None  # not needed: no probe
    # the expected rate was calibrated again in the last run's own process (a Server run's rate is its target)
    assert record["loadgen_setting_source"].startswith("calibrated: predict of 8 samples")
    for k in (1, 2):
        summary = run / "loadgen" / record["id"] / f"run-{k}" / "mlperf_log_summary.txt"
        assert "Result is : VALID" in summary.read_text()
        log = (run / "processes" / record["id"] / f"run-{k}" / "process.log").read_text()
        assert "pytest-mlperf serve job: outlier fp32 offline on cpu" in log
        job = json.loads((run / "processes" / record["id"] / f"run-{k}" / "job.json").read_text())
        assert job["scenario"]["offline_expected_qps"] is None  # left to that process to calibrate
