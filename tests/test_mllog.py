"""MLPerf-format logs of training cases: events recorded while the toy workload trains through `job.train`, written
by mllog, read back by MLPerf's compliance-checker parser."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from helpers import TOY_CONFTEST, system
from mlperf_logging import mllog as mllog_shared
from mlperf_logging.compliance_checker import mlp_parser
from mlperf_logging.compliance_checker.mlp_parser.ruleset_610 import LogLine

from pytest_mlperf.config.matrix import expand
from pytest_mlperf.config.schema import load_system
from pytest_mlperf.results import mllog
from pytest_mlperf.run import events
from pytest_mlperf.run.job import TrainResult, train
from pytest_mlperf.workloads import registry

RULESET = "6.1.0"  #: the newest training ruleset of the installed mlperf-logging (its parser is the same since 3.1)


@dataclass(frozen=True)
class Trained:
    result: TrainResult
    began_ms: float  #: wall-clock time around the `train` call
    ended_ms: float


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Trained]]:
    """The toy workload of the pytester projects (registered for this module only) trained through `job.train` on
    the CPU, per preset: "cpu" reaches its target, after evaluations that miss it, "stuck" (learning rate 0) spends its
    budget, "nan" diverges while its throughput is measured."""
    folder = tmp_path_factory.mktemp("systems")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "_WORKLOADS", registry.known())
        exec(TOY_CONFTEST, {})
        runs = {}
        for preset in ("cpu", "stuck", "nan"):
            path = folder / f"toy-{preset}.yaml"
            path.write_text(yaml.safe_dump(system(f"toy-{preset}", preset=preset, warmup=1, repeat=3, number=2)))
            (case,) = expand("training", ["toy"], [load_system(path)])
            began = time.time() * 1000
            result = train(case, torch.device("cpu"), None, compiled=False)
            runs[preset] = Trained(result, began, time.time() * 1000)
        yield runs


def parsed(path: Path) -> list[LogLine]:
    lines, errors = mlp_parser.parse_file(str(path), ruleset=RULESET)
    assert errors == []
    return lines


def named(lines: list[LogLine], key: str) -> list[LogLine]:
    return [line for line in lines if line.key == key]


def evaluated_at(lines: list[LogLine], result: TrainResult) -> None:
    """The quality phase's fresh model evaluated untrained, then every 20 steps (the toy's `eval_every`) to the last,
    whatever the throughput phase ran before it."""
    assert result.measurement is not None and result.quality is not None
    steps = [line.value["metadata"]["step_num"] for line in named(lines, "eval_accuracy")]
    assert steps == [*range(0, result.quality.steps, 20), result.quality.steps]


def test_a_case_that_reaches_its_target_logs_its_run(trained: dict[str, Trained], tmp_path: Path) -> None:
    run = trained["cpu"]
    lines = parsed(mllog.write(run.result.events, tmp_path / "toy.log"))
    assert len(lines) == len(run.result.events)
    times = [line.timestamp for line in lines]
    assert times == sorted(times) and run.began_ms <= times[0] and times[-1] <= run.ended_ms  # real, in order
    keys = [line.key for line in lines]
    assert keys.index("init_start") < keys.index("init_stop") < keys.index("run_start") < keys.index("run_stop")
    assert keys[-1] == "run_stop" and named(lines, "run_stop")[0].value["metadata"]["status"] == "success"
    (start,), (stop,) = named(lines, "run_start"), named(lines, "run_stop")
    quality = run.result.quality
    assert quality is not None and quality.reached and quality.time_to_target is not None
    assert (stop.timestamp - start.timestamp) / 1000 == pytest.approx(quality.time_to_target, abs=0.1)
    header = {line.key: line.value["value"] for line in lines[1 : keys.index("init_stop")]}
    assert header == {
        "submission_benchmark": "toy",
        "submission_org": "pytest-mlperf",
        "submission_division": "open",
        "submission_status": "research",
        "submission_platform": "toy-cpu",
        "global_batch_size": 4,
    }
    evaluated_at(lines, run.result)
    evals = named(lines, "eval_accuracy")
    assert all(e.value["metadata"]["samples_count"] == 4 * e.value["metadata"]["step_num"] for e in evals)
    assert len(evals) > 1 and evals[-1].value["value"] == quality.value
    assert all(e.value["value"] > quality.target for e in evals[:-1])  # MSE: lower is better
    # a block of steps between every two evaluations; the throughput phase is not MLPerf's run and is not logged
    blocks = [line.value["metadata"]["step_num"] for line in lines if line.key in ("block_start", "block_stop")]
    assert blocks == [step for start in range(0, quality.steps, 20) for step in (start, min(start + 20, quality.steps))]


def test_a_case_that_misses_its_target_logs_an_aborted_run(trained: dict[str, Trained], tmp_path: Path) -> None:
    result = trained["stuck"].result
    lines = parsed(mllog.write(result.events, tmp_path / "toy.log"))
    assert [line.key for line in lines].count("run_start") == 1
    assert lines[-1].key == "run_stop" and lines[-1].value["metadata"]["status"] == "aborted"
    evals = [line.value["value"] for line in named(lines, "eval_accuracy")]
    assert result.quality is not None and not result.quality.reached and result.quality.steps == 400  # budget spent
    evaluated_at(lines, result)
    assert evals[-1] == result.quality.value


def test_a_case_that_diverges_while_measured_logs_no_run(trained: dict[str, Trained]) -> None:
    """The quality phase (MLPerf's run) never started: there is nothing for MLPerf's log to say."""
    result = trained["nan"].result
    assert "diverged" in result.problem and result.events == [] and result.quality is None


def test_logs_written_at_once_or_one_after_another_stay_apart(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    shared = list(mllog_shared.get_mllogger().logger.handlers)
    first, second = events.Recorder(global_batch=256), events.Recorder(global_batch=32, epoch_steps=6)
    first.header("resnet50", "a")
    second.header("bert_large", "b")
    second.point("eval_accuracy", 0.7, **second.progress(3))
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(mllog.write, [first.events, second.events], [a, b]))
    mllog.write(first.events, a)  # written again: replaced, not appended to
    values = {path.name: [line.value["value"] for line in parsed(path)] for path in (a, b)}
    assert values == {
        "a.log": ["resnet", "pytest-mlperf", "open", "research", "a", 256],
        "b.log": ["bert", "pytest-mlperf", "open", "research", "b", 32, 0.7],
    }
    metadata = named(parsed(b), "eval_accuracy")[0].value["metadata"]
    assert (metadata["samples_count"], metadata["step_num"], metadata["epoch_num"]) == (96, 3, 0.5)
    # nothing through mllog's shared logger (which prints to stdout), nor through logging's registered loggers
    assert mllog_shared.get_mllogger().logger.handlers == shared
    assert capfd.readouterr().out == "" and caplog.records == []


def test_events_survive_the_json_a_result_travels_in(trained: dict[str, Trained], tmp_path: Path) -> None:
    result = trained["cpu"].result
    back = TrainResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.events == result.events and all(isinstance(e, events.Event) for e in back.events)
    sent, received = mllog.write(result.events, tmp_path / "sent.log"), mllog.write(back.events, tmp_path / "got.log")
    assert sent.read_text() == received.read_text()
    assert TrainResult.from_dict({}).events == []  # a result written before events were recorded
