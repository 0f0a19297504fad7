"""A training case on several devices of this host, one rank per device, started by torchrun (torch.distributed's
own launcher): every rank runs our entry point (`pytest_mlperf.run.job`) with the model data-parallel, writes its
result, and the test gathers them. torchrun and its ranks run in a process group of their own, so a timeout or a
Ctrl-C stops all of them, and a rank that dies brings the others down (torchrun's doing) with its log kept.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from ..config.matrix import Case
from ..resources.leasing import Lease
from ..resources.slices import Slice
from ..run.job import TrainResult
from .process import stop
from .ranks import RESULT, gather, job_for, write_job

TAIL_LINES = 30


def train_with_torchrun(
    case: Case, lease: Lease, piece: Slice, out: Path, data: Path | None, compiled: bool
) -> tuple[TrainResult, list[TrainResult]]:
    """Run the case's ranks; rank 0's result (its measurement times global steps: the system's throughput) and every
    rank's. A rank that failed, hung past the system's launch timeout or wrote no result comes back as rank 0's
    `problem`, with that rank's log tail."""
    ranks, launch = case.settings.devices, case.system.spec.launch
    job = job_for(case, lease, piece, data, compiled, ranks)
    path = write_job(out, job)
    logs = out / "ranks"
    argv = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
        f"--log-dir={logs}", "--redirects=3", "--module", "pytest_mlperf.run.job", str(path), str(out / RESULT),
    ]  # fmt: skip
    env = {**os.environ, **launch.env, **dict(case.knobs), **lease.env, "OMP_NUM_THREADS": str(job.threads)}
    with (out / "torchrun.log").open("w", encoding="utf-8") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=launch.timeout_s)
        except subprocess.TimeoutExpired:
            stop(process)
            why = f"{case.id}: its {ranks} ranks were still running after {launch.timeout_s:g} s and were stopped"
            return _failed(why, out, ranks)
        except BaseException:  # Ctrl-C: no rank may outlive the test run
            stop(process)
            raise
    if code != 0:
        return _failed(f"{case.id}: torchrun exited with code {code}", out, ranks)
    gathered = gather(case, out, ranks)
    if isinstance(gathered, int):
        return _failed(f"{case.id}: rank {gathered} wrote no result", out, ranks, gathered)
    return gathered


def failed_rank(torchrun_log: str) -> int | None:
    """The rank torchrun names as the root cause of a failure."""
    match = re.search(r"Root Cause.*?rank\s*:\s*(\d+)", torchrun_log, re.DOTALL)
    return int(match.group(1)) if match else None


def rank_log_tail(out: Path, rank: int) -> str:
    """The last lines of a rank's output (stdout and stderr, as torchrun's --redirects kept them)."""
    lines: list[str] = []
    for name in ("stdout.log", "stderr.log"):
        for path in sorted((out / "ranks").glob(f"*/attempt_*/{rank}/{name}")):
            lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-TAIL_LINES:]) or "(no output)"


def _failed(why: str, out: Path, ranks: int, rank: int | None = None) -> tuple[TrainResult, list[TrainResult]]:
    """A failed run's problem: the rank at fault's log tail (the one torchrun names), else every rank's (a hang)."""
    log = (out / "torchrun.log").read_text(encoding="utf-8", errors="replace")
    rank = failed_rank(log) if rank is None else rank
    cause = re.search(r"Root Cause.*?\n(.*?)\n=+", log, re.DOTALL)
    if rank is not None:
        detail = f"rank {rank} failed; its last lines:\n{rank_log_tail(out, rank)}"
        detail += f"\ntorchrun's account:\n{cause.group(1)}" if cause else ""
    else:
        detail = "\n".join(f"rank {r}'s last lines:\n{rank_log_tail(out, r)}" for r in range(ranks))
    return TrainResult(problem=f"{why}; {detail}\n(all ranks' logs: {out / 'ranks'})"), []
