"""A training case's ranks as a Slurm job (`launch.launcher: slurm` or --launcher=slurm): one task per device, over
`launch.slurm.nodes` nodes, each task our entry point, which turns Slurm's variables into torch.distributed's
(`rank_env`). The Slurm client finds its cluster as usual (SLURM_CONF or /etc/slurm); the job is cancelled at the
system's time limit or on Ctrl-C, and a failing task fails the test with its log's tail.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..config.matrix import Case
from ..resources.leasing import Lease
from ..resources.slices import Slice
from ..run.job import TrainResult
from .ranks import RESULT, gather, job_for, write_job
from .slurm import SlurmError, SlurmJob, submit_and_wait


def slurm_job(case: Case, lease: Lease, piece: Slice, out: Path, data: Path | None, compiled: bool) -> SlurmJob:
    """The srun job of a case's ranks, its job file written: one task per device over `launch.slurm.nodes` nodes."""
    ranks, launch = case.settings.devices, case.system.spec.launch
    slurm = launch.slurm
    if ranks % slurm.nodes:
        raise SlurmError(f"{ranks} ranks do not divide over {slurm.nodes} Slurm nodes")
    job = job_for(case, lease, piece, data, compiled, ranks)
    path = write_job(out, job)
    cuda = case.system.spec.accelerator.kind == "cuda"
    return SlurmJob(
        command=[sys.executable, "-m", "pytest_mlperf.run.job", str(path), str(out / RESULT)],
        workdir=out / "tasks",
        nodes=slurm.nodes,
        tasks_per_node=ranks // slurm.nodes,
        gpus_per_task=slurm.gpus_per_task if slurm.gpus_per_task is not None else int(cuda),
        cpus_per_task=slurm.cpus_per_task,
        partition=slurm.partition,
        time_limit_s=slurm.time_limit_s,
        env={**launch.env, **dict(case.knobs), "OMP_NUM_THREADS": str(job.threads)},
        name=f"mlperf-{case.id}",
        container_image=slurm.container_image,
        extra_args=list(slurm.extra_args),
    )


def train_with_slurm(
    case: Case, lease: Lease, piece: Slice, out: Path, data: Path | None, compiled: bool
) -> tuple[TrainResult, list[TrainResult]]:
    try:
        spec = slurm_job(case, lease, piece, out, data, compiled)
        submit_and_wait(spec, os.environ)
    except SlurmError as exc:
        return TrainResult(problem=f"{case.id}: {exc}"), []
    gathered = gather(case, out, case.settings.devices)
    if isinstance(gathered, int):
        return TrainResult(problem=f"{case.id}: Slurm task {gathered} wrote no result (logs: {spec.workdir})"), []
    return gathered
