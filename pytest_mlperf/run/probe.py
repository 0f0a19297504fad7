"""The host's noise between processes, which no single process's blocks can show: the same fixed workload (a small
convolutional network's training step, on the case's kind of device, through the one timing loop) run in a few fresh
processes, and the sd of their figures in percent of their mean. Measured once per host, kind of device, torch
version and thread count, and kept in a cache folder (`mlperf_cache_dir`) for an hour, under a file lock so parallel
workers and the sessions of that hour measure it once between them. A single run's interval is widened by it
(`results.stats.widen`).

The probe times about as long a window per process as a case does (PLAN: `repeat` blocks of MIN_BLOCK_S), so its
spread is that of figures like a case's; a process's figure is its blocks' median, and what is left of its own block
noise makes the term a little wider than the offset between processes alone. The probe's own entry point, in each
fresh process: `python -m pytest_mlperf.run.probe DEVICE THREADS BLOCK_S`, printing the process's figure as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from torch import Tensor, nn

from .measure import MIN_BLOCK_S, Plan, measure, synchronizer

PROCESSES = 5  #: fresh processes the probe runs (each imports torch: a few seconds)
BATCH = 16
PLAN = Plan(warmup=3, repeat=5, number=1, items_per_step=BATCH, min_block_s=MIN_BLOCK_S)  #: a case's window
TIMEOUT_S = 600.0  #: a probe process still running after this failed
FOLDER = "between-process"  #: under the cache folder
#: a cached term older than this is measured again: the host's load moves it (5 processes beside a busy job spread
#: by 76% on the CI VM, against about 15% quiet), and a term kept from a busy hour would blur every later verdict
MAX_AGE_S = 3600.0


@dataclass(frozen=True)
class Between:
    """The sd of a process's figure across fresh processes, in percent of their mean (None: not known), and where
    it comes from, or why it is not known."""

    sd_pct: float | None
    source: str


def default_cache_dir() -> Path:
    """The user's cache folder ($XDG_CACHE_HOME, else ~/.cache) for pytest-mlperf's host measurements."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "pytest-mlperf"


def host_key(device: str, threads: int) -> str:
    """What the term is measured for: this host, its kind of device (a GPU's model), torch's version, the threads."""
    raw = f"{socket.gethostname()}-{device}-torch{torch.__version__}-{threads}threads"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)


def between_processes(
    device: torch.device,
    threads: int,
    cache_dir: Path,
    env: dict[str, str] | None = None,
    processes: int = PROCESSES,
    block_s: float = PLAN.min_block_s,
) -> Between:
    """The host's between-process sd for `device`'s kind at `threads` torch threads: from the cache, else measured
    in `processes` fresh processes (started with `env`, e.g. a GPU lease's CUDA_VISIBLE_DEVICES) of blocks of
    `block_s`, and cached. A probe that fails is not cached; it says why."""
    kind = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    path = cache_dir / FOLDER / f"{host_key(kind, threads)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_suffix(".lock")):
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if time.time() - float(cached["at"]) <= MAX_AGE_S:
                return Between(float(cached["sd_pct"]), describe(cached, path))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not measured yet, or not readable: measure it (again)
        try:
            rates = [one_process(device.type, threads, block_s, env) for _ in range(processes)]
        except ProbeFailed as exc:
            return Between(None, f"the between-process probe failed: {exc}")
        measured = {
            "sd_pct": 100 * statistics.stdev(rates) / statistics.fmean(rates),
            "rates": rates,
            "processes": processes,
            "measured": time.strftime("%Y-%m-%d %H:%M"),
            "at": time.time(),
            "device": kind,
            "threads": threads,
            "torch": str(torch.__version__),
        }
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(measured, indent=1), encoding="utf-8")
        partial.replace(path)
        return Between(measured["sd_pct"], describe(measured, path))


def describe(measured: dict[str, object], path: Path) -> str:
    when, processes = measured.get("measured", "?"), measured.get("processes", "?")
    return f"the host's, measured {when} in {processes} fresh processes ({path})"


class ProbeFailed(RuntimeError):
    pass


def one_process(device: str, threads: int, block_s: float, env: dict[str, str] | None) -> float:
    """The probe's figure (items/s) in one fresh process; raises ProbeFailed with the reason."""
    argv = [sys.executable, "-m", "pytest_mlperf.run.probe", device, str(threads), str(block_s)]
    environ = {**os.environ, **(env or {}), "OMP_NUM_THREADS": str(threads)}
    try:  # subprocess.run kills the process on a timeout or Ctrl-C; it starts none of its own
        done = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ProbeFailed(f"a probe process was still running after {TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise ProbeFailed(f"a probe process exited with code {done.returncode}: {tail}")
    try:
        return float(json.loads(done.stdout.strip().splitlines()[-1])["rate"])
    except (IndexError, ValueError, KeyError, TypeError):
        raise ProbeFailed(f"a probe process printed no figure: {done.stdout[-200:]!r}") from None


def step_of(device: torch.device) -> Callable[[], Tensor]:
    """The fixed workload: one SGD step of a small convnet on a fixed batch of 32x32 images."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    ).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images = torch.randn(BATCH, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (BATCH,), device=device)

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def figure(device: torch.device, block_s: float) -> float:
    """This process's figure: the median of its blocks' items/s, so that a passing slow-down inside one process (which
    a case's own block interval already shows) moves it less than what differs between processes."""
    plan = dataclasses.replace(PLAN, min_block_s=block_s)
    return statistics.median(measure(step_of(device), plan, synchronizer(device)).rates)


def main(argv: list[str]) -> int:
    try:
        device, threads, block_s = torch.device(argv[0]), int(argv[1]), float(argv[2])
    except (IndexError, ValueError, RuntimeError):
        print("usage: python -m pytest_mlperf.run.probe cpu|cuda THREADS BLOCK_S", file=sys.stderr)
        return 2
    if threads:
        torch.set_num_threads(threads)
    print(json.dumps({"rate": figure(device, block_s)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
