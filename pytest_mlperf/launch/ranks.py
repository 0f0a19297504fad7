"""What every launcher shares: the job each rank runs (our entry point, `pytest_mlperf.run.job`) and the gathering of
the ranks' results into the test's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..config.matrix import Case
from ..resources.leasing import Lease
from ..resources.slices import Slice
from ..run.job import Job, TrainResult
from ..run.serve_job import ServeJob

RESULT = "result-{rank}.json"  #: each rank's result in the test's folder


def job_for(case: Case, lease: Lease, piece: Slice, data: Path | None, compiled: bool, ranks: int) -> Job:
    """The job each rank runs: on the leased GPUs, or on the CPU with the worker's cores shared between the ranks. It
    names where the workload was registered, for one from a user's conftest.py."""
    modules, paths = origin(case)
    return Job(
        system_file=str(case.system.path.resolve()),
        benchmark=case.benchmark,
        precision=case.precision,
        device="cuda" if lease.devices else "cpu",
        data=str(data) if data else None,
        compiled=compiled,
        threads=max(1, piece.threads // ranks),
        modules=modules,
        paths=paths,
        launcher=case.launcher,
        knobs=sorted({*case.system.spec.launch.env, *dict(case.knobs)}),
        devices=case.settings.devices,
    )


def origin(case: Case) -> tuple[list[str], list[str]]:
    """The module that registered the case's workload and its folder, when it is not this package's (a user's
    conftest.py): what a process of our own imports first so that it knows the workload too."""
    module = sys.modules.get(case.workload.build.__module__)
    source = Path(module.__file__).resolve() if module and module.__file__ else None
    if source is None or source.is_relative_to(Path(__file__).resolve().parent.parent):
        return [], []
    return [case.workload.build.__module__], [str(source.parent)]


def write_job(out: Path, job: Job | ServeJob) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "job.json").write_text(json.dumps(job.__dict__), encoding="utf-8")
    return out / "job.json"


def gather(case: Case, out: Path, ranks: int) -> tuple[TrainResult, list[TrainResult]] | int:
    """Rank 0's result (its measurement times global steps: the system's throughput) and every rank's, a rank's
    problem as the whole's; or the first rank that wrote no result."""
    results = []
    for rank in range(ranks):
        written = out / RESULT.format(rank=rank)
        if not written.is_file():
            return rank
        results.append(TrainResult.from_dict(json.loads(written.read_text(encoding="utf-8"))))
    problems = [f"rank {rank}: {r.problem}" for rank, r in enumerate(results) if r.problem]
    if problems:
        return TrainResult(problem="\n".join(problems)), results
    return results[0], results
