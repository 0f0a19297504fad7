"""A case run once in a fresh process of this host, as pyperf runs each repeat: our entry point
(`python -m pytest_mlperf.run.job JOB.json OUT.json`, or `run.serve_job` for a LoadGen run) on the test's device and
CPU cores. Repeats in one process share its state (allocator, caches, the one scheduling of its threads), so their
spread understates the noise between processes; fresh ones show it. The process runs in a process group of its own,
so a timeout or a Ctrl-C stops it and whatever it started (torch.compile's workers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..config.matrix import Case
from ..resources.leasing import Lease
from ..resources.slices import Slice
from ..results.loadgen_logs import parse_logs
from ..run.job import TrainResult
from ..run.loadgen import LoadgenRun, Scenario
from ..run.serve_job import ServeJob
from .ranks import job_for, origin, write_job

LOG = "process.log"  #: the process's output, beside its job and result
RESULT = "result.json"
TAIL_LINES = 30
STOP_GRACE_S = 10.0


def train_in_fresh_process(
    case: Case, lease: Lease, piece: Slice, out: Path, data: Path | None, compiled: bool, quality: bool = True
) -> TrainResult:
    """Run the case in a new process, its job, output and result in `out` (`quality` False: measure only); a
    process that failed, ran past the system's launch timeout or wrote no result comes back as the result's
    `problem`, with its log's tail."""
    job = job_for(case, lease, piece, data, compiled, ranks=1)
    job = dataclasses.replace(job, cpus=list(piece.cpus), quality=quality)
    written = _run(case, lease, "pytest_mlperf.run.job", write_job(out, job), job.threads, out)
    if isinstance(written, str):
        return TrainResult(problem=written)
    return TrainResult.from_dict(written)


def serve_in_fresh_process(
    case: Case, lease: Lease, piece: Slice, scenario: Scenario, samples: int, out: Path, logs: Path
) -> LoadgenRun | str:
    """One LoadGen run of the inference case in a new process (`run.serve_job`; `scenario`'s unset host settings
    calibrated there), its job and output in `out`, LoadGen's logs in `logs`; or why there was none, with the log's
    tail."""
    modules, paths = origin(case)
    job = ServeJob(
        system_file=str(case.system.path.resolve()),
        benchmark=case.benchmark,
        precision=case.precision,
        device="cuda" if lease.devices else "cpu",
        options=dict(case.preset),
        scenario=scenario.to_dict(),
        samples=samples,
        logs=str(logs),
        threads=piece.threads,
        cpus=list(piece.cpus),
        modules=modules,
        paths=paths,
    )
    written = _run(case, lease, "pytest_mlperf.run.serve_job", write_job(out, job), job.threads, out)
    if isinstance(written, str):
        return written
    if "problem" in written:
        return f"{case.id}: {written['problem']}"
    return LoadgenRun(Scenario.from_dict(written["scenario"]), logs, parse_logs(logs), float(written["seconds"]))


def _run(case: Case, lease: Lease, module: str, job: Path, threads: int, out: Path) -> dict[str, Any] | str:
    """`python -m module JOB OUT` with its output in `out`'s log: what it wrote, or why it wrote nothing (it
    failed, or ran past the system's launch timeout), with the log's tail."""
    written = out / RESULT
    written.unlink(missing_ok=True)
    argv = [sys.executable, "-m", module, str(job), str(written)]
    launch = case.system.spec.launch
    env = {**os.environ, **launch.env, **dict(case.knobs), **lease.env, "OMP_NUM_THREADS": str(threads)}
    with (out / LOG).open("w", encoding="utf-8") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=launch.timeout_s)
        except subprocess.TimeoutExpired:
            stop(process)
            why = f"{case.id}: its process was still running after {launch.timeout_s:g} s and was stopped"
            return _failed(why, out)
        except BaseException:  # Ctrl-C: the process may not outlive the test run
            stop(process)
            raise
    if code != 0:
        return _failed(f"{case.id}: its process exited with code {code}", out)
    if not written.is_file():
        return _failed(f"{case.id}: its process exited 0 but wrote no {written}", out)
    return json.loads(written.read_text(encoding="utf-8"))


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process's whole group (it and what it started), then SIGKILL to whatever of the group is left
    after a grace (a child that outlived its parent too); returns once the process has exited."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _failed(why: str, out: Path) -> str:
    lines = (out / LOG).read_text(encoding="utf-8", errors="replace").splitlines()
    tail = "\n".join(lines[-TAIL_LINES:]) or "(no output)"
    return f"{why}; its last lines:\n{tail}\n(log: {out / LOG})"
