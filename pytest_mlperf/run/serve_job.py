"""One LoadGen performance run of an inference case in a process of its own (`python -m
pytest_mlperf.run.serve_job JOB.json OUT.json`): the repeats of `--runs` and the reruns of an inconclusive verdict,
so that their spread shows the noise between processes, which runs in the test's process share. The process trains
the served model again (its weights do not change what is timed) and calibrates what the test calibrated.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config.schema import load_system
from ..workloads import known
from .calibration import again, calibrate, misfit
from .job import CaseProcess
from .loadgen import SampleLibrary, Scenario, run
from .serving import answering


@dataclass(frozen=True, kw_only=True)
class ServeJob(CaseProcess):
    """What the process runs: the system file's inference entry for the benchmark, served in `precision`."""

    options: dict[str, Any]  #: the preset as the case runs it
    scenario: dict[str, Any]  #: `Scenario.to_dict`, its host settings set
    samples: int  #: the QSL's sample count
    logs: str  #: LoadGen's log folder


def main(argv: list[str]) -> int:
    """Run JOB.json, write OUT.json: {"seconds": wall time of the run, "scenario": as it ran} or {"problem": why
    there was none}; LoadGen's own logs, in the job's folder, are the result. Host settings the scenario leaves
    unset are calibrated here (and again once, as in the test's process, when one made the run INVALID), so that
    a Server run's rate, which its target sets, is this process's too."""
    if len(argv) != 2:
        print("usage: python -m pytest_mlperf.run.serve_job JOB.json OUT.json", file=sys.stderr)
        return 2
    job = ServeJob(**json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    job.enter()
    entry = load_system(Path(job.system_file)).spec.inference[job.benchmark]
    device = torch.device("cuda" if job.device == "cuda" else "cpu")
    print(f"pytest-mlperf serve job: {job.benchmark} {job.precision} {job.scenario['name']} on {device}", flush=True)
    try:
        workload = known()[job.benchmark]
        _, predict = answering(
            workload, entry.preset, job.options, device, entry.train_batch, job.samples, job.precision
        )
        library, scenario = SampleLibrary(job.samples, job.samples), Scenario.from_dict(job.scenario)
        if scenario.unset:
            scenario = calibrate(predict, library, scenario).settle(scenario)
        done = run(predict, library, scenario, Path(job.logs))
        wrong = misfit(scenario, done.result, pinned=False)
        if wrong is not None:
            _, scenario = again(predict, library, scenario, done.result, wrong)
            done = run(predict, library, scenario, Path(job.logs))
    except (RuntimeError, ValueError) as exc:
        outcome: dict[str, Any] = {"problem": str(exc)}
    else:
        outcome = {"seconds": done.seconds, "scenario": scenario.to_dict()}
    Path(argv[1]).write_text(json.dumps(outcome), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
