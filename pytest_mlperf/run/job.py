"""One training case run start to finish, as plain data in and out: what a local test runs in its own process, and
what a container runs through this module's entry point (`python -m pytest_mlperf.run.job JOB.json OUT.json`),
writing the same result as JSON for the runner to read. One code path, so a number measured in a container means
exactly what the same number measured locally means.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from mlperf_logging.mllog import constants
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config.matrix import Case
from ..resources.nvml import inventory
from ..resources.peaks import peak
from ..resources.slices import available_cpus
from ..resources.telemetry import Sampler, Telemetry
from ..workloads.registry import Roofed, Setup
from .events import Event, Recorder
from .flops import Work, counted, lower_roof
from .measure import Measurement, NonFiniteLoss, Plan, measure, synchronizer
from .precision import Precision, float32_math, resolve
from .quality import QualityResult, converge


@dataclass
class TrainResult:
    """What a training case produced; `problem` says why it stopped early (a non-finite loss, with its step)."""

    measurement: Measurement | None = None
    quality: QualityResult | None = None
    work: Work | None = None
    problem: str = ""
    environment: dict[str, str] = field(default_factory=dict)  #: the software it ran on, where that may differ
    telemetry: Telemetry | None = None  #: what the hardware did during the measured blocks
    events: list[Event] = field(default_factory=list)  #: MLPerf's log events, as they happened (`results.mllog`)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        m, q, w, t = data.get("measurement"), data.get("quality"), data.get("work"), data.get("telemetry")
        return cls(
            measurement=Measurement(Plan(**m["plan"]), m["block_ns"], m["losses"]) if m else None,
            quality=QualityResult(**q) if q else None,
            work=Work(**w) if w else None,
            problem=data.get("problem", ""),
            environment=data.get("environment", {}),
            telemetry=Telemetry.from_dict(t) if t else None,
            events=[Event(**e) for e in data.get("events", [])],
        )


def train(
    case: Case,
    device: torch.device,
    data: Path | None,
    compiled: bool,
    sampler: Sampler | None = None,
    distribute: Callable[[Any], None] | None = None,
    on_block: Callable[[int, int, float, float], None] | None = None,
    quality: bool = True,
) -> TrainResult:
    """Count one step's FLOPs and measure throughput (while `sampler` samples the hardware; `on_block` hears of each
    block, for progress), then (unless `quality` is False: a throughput reference only) train a fresh model, built
    again with the same seed, to the workload's quality target within its step budget. The counted step runs before
    the warm-up (the counter slows it down), its loss checked too. `distribute` makes a rank's trainers
    data-parallel.

    The quality phase starts from scratch so that neither its budget nor its outcome depends on how many steps the
    throughput phase ran (a system file's warm-up and blocks, or blocks lengthened on a fast host). It is the MLPerf
    run, the only phase MLPerf's log events describe: time to quality runs from the first touch of the training data
    (building the trainer, which makes or opens it) to the evaluation that reaches the target."""
    s = case.settings
    precision = resolve(case.precision, device)
    setup = Setup(case.preset, s.device_batch, device, precision, data, compiled)
    record = Recorder(s.global_batch)
    result = TrainResult(environment=environment(device), events=record.events)  # recorded into the result
    with float32_math(precision):
        try:
            trainer = _build(case, setup, distribute)
            plan = Plan(s.warmup, s.repeat, s.number, trainer.items_per_step * s.devices, s.min_block_s)
            loss, flops = counted(trainer.step)
            result.work = _work(trainer, flops, device, precision, s.devices)
            with sampler or contextlib.nullcontext():
                agree = largest_of_ranks(device) if distribute is not None else None
                result.measurement = measure(trainer.step, plan, synchronizer(device), [loss], on_block, agree)
            result.telemetry = sampler.telemetry if sampler else None
            result.work = lower_roof(result.work, peak(device, precision), s.devices)
            del trainer  # its memory, before the fresh model of the quality phase is built
            if quality:
                result.quality = _to_quality(case, setup, distribute, record)
        except NonFiniteLoss as exc:
            result.problem = f"{case.id}: {exc}"
        except NotDataParallel as exc:
            result.problem = f"{case.id}: cannot train data-parallel: {exc}"
    return result


def _to_quality(case: Case, setup: Setup, distribute: Callable[[Any], None] | None, record: Recorder) -> QualityResult:
    """The MLPerf run: a fresh trainer trained to the workload's quality target, its events recorded by `record`
    (also when it stops on a non-finite loss: the log then ends with an aborted run_stop)."""
    record.start(constants.INIT_START)
    record.header(case.workload.name, case.system.name)
    record.end(constants.INIT_STOP)
    start = time.perf_counter()
    record.start(constants.RUN_START)
    reached: QualityResult | None = None
    try:
        trainer = _build(case, setup, distribute)
        quality = case.workload.quality
        if setup.data is not None:
            record.epoch_steps = getattr(trainer, "epoch_steps", None)
            quality = quality.on_real_data(record.epoch_steps)
        reached = converge(trainer, quality, 0, record)
        if reached.reached:
            reached = dataclasses.replace(reached, time_to_target=time.perf_counter() - start)
        return reached
    finally:
        success = reached is not None and reached.reached
        record.end(constants.RUN_STOP, status=constants.SUCCESS if success else constants.ABORTED)


class NotDataParallel(TypeError):
    """`distribute` refused the trainer (it has no model to wrap)."""


def _work(trainer: Any, flops: int, device: torch.device, precision: Precision, devices: int) -> Work:
    """The counted FLOPs of an item against the devices' peak, or the trainer's own `Roofed.work` where its step
    does no arithmetic."""
    if isinstance(trainer, Roofed):
        own = trainer.work()
        return dataclasses.replace(own, peak_flops=own.peak_flops * devices if own.peak_flops else None)
    roof = peak(device, precision)
    return Work(
        flops / trainer.items_per_step,
        roof.flops * devices if roof else None,
        roof.source if roof else "no peak known for this device",
    )


def _build(case: Case, setup: Setup, distribute: Callable[[Any], None] | None) -> Any:
    """The case's trainer, data-parallel when `distribute` is given."""
    trainer = case.workload.build(setup)
    if distribute is not None:
        try:
            distribute(trainer)
        except TypeError as exc:
            raise NotDataParallel(str(exc)) from None
    return trainer


def largest_of_ranks(device: torch.device) -> Callable[[int], int]:
    """The largest of the ranks' values: the steps per block they all time (data-parallel ranks step together)."""

    def largest(value: int) -> int:
        tensor = torch.tensor([value], device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    return largest


def environment(device: torch.device) -> dict[str, str]:
    """The software a result was measured with, in the keys of the session's system information."""
    cuda = device.type == "cuda"
    return {
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "cuda": torch.version.cuda or "none (CPU build of torch)",
        "gpus": torch.cuda.get_device_name(device) if cuda else "none",
    }


@dataclass(frozen=True, kw_only=True)
class CaseProcess:
    """What a process of our own is told first, whatever it runs: the case (the system file names everything else)
    and where it runs."""

    system_file: str
    benchmark: str
    precision: str
    device: str  #: "cpu" or "cuda"
    threads: int = 0  #: torch threads (the CPU slice), 0: torch's default
    cpus: list[int] = field(default_factory=list)  #: the cores to run on (the CPU slice's affinity), []: as started
    #: modules to import first, and the folders they are in: where a workload registered outside this package (in
    #: a user's conftest.py) comes from, so that a process of our own knows it too
    modules: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def enter(self) -> None:
        """The process's start: the workload's modules imported (from their folders), this process on the test's
        cores with its thread count."""
        sys.path[:0] = self.paths
        for module in self.modules:
            importlib.import_module(module)
        if self.cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, self.cpus)
        if self.threads:
            torch.set_num_threads(self.threads)


@dataclass(frozen=True, kw_only=True)
class Job(CaseProcess):
    """A training case as a container or a rank receives it."""

    data: str | None = None
    compiled: bool = False
    launcher: str = ""  #: the case's, for its id
    knobs: list[str] = field(default_factory=list)  #: launch environment variables whose values the result records
    devices: int = 0  #: 1 for the one-device run of a case on several (its scaling reference); 0: the system's
    quality: bool = True  #: train on to the quality target after measuring (a scaling reference does not)

    def case(self) -> Case:
        from ..config.schema import load_system
        from ..workloads import known

        system = load_system(Path(self.system_file))
        workload = known()[self.benchmark]
        settings = system.settings(self.benchmark, self.precision)
        case = Case("training", workload, self.precision, system, settings, launcher=self.launcher)
        return case.one_device() if self.devices == 1 and settings.devices > 1 else case


def main(argv: list[str]) -> int:
    """The entry point of a container or a rank: run JOB.json, write OUT.json ("{rank}" in it becomes the rank's
    number), also when the run stopped on a problem. Under torchrun or Slurm (WORLD_SIZE > 1) each rank trains its
    replica of the model data-parallel (DDP: NCCL on GPUs, gloo on CPUs)."""
    if len(argv) != 2:
        print("usage: python -m pytest_mlperf.run.job JOB.json OUT.json", file=sys.stderr)
        return 2
    job = Job(**json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    job.enter()
    if "SLURM_PROCID" in os.environ and "RANK" not in os.environ:  # a Slurm task, not started by torchrun
        from ..launch.slurm import rank_env

        os.environ.update(rank_env())
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if job.device == "cuda" else torch.device("cpu")
    nvml, gpus, _ = inventory(None)
    sampler = Sampler(nvml, gpus[local : local + 1] if job.device == "cuda" else [])
    data = Path(job.data) if job.data else None
    node = os.environ.get("SLURMD_NODENAME", "")
    where = f"{device} of {node}" if node else str(device)
    cpus = ",".join(map(str, available_cpus()))
    print(
        f"pytest-mlperf job: {job.benchmark} {job.precision} rank {rank} of {world} on {where}, "
        f"pid {os.getpid()}, {torch.get_num_threads()} threads on cpus {cpus}",
        flush=True,
    )
    if world == 1:
        result = train(job.case(), device, data, job.compiled, sampler, quality=job.quality)
    else:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        try:
            result = train(job.case(), device, data, job.compiled, sampler, data_parallel(device))
        finally:
            dist.destroy_process_group()
    result.environment |= {name: os.environ.get(name, "(unset)") for name in job.knobs}
    Path(argv[1].replace("{rank}", str(rank))).write_text(json.dumps(result.to_dict()), encoding="utf-8")
    print(f"pytest-mlperf job: {job.benchmark} {job.precision} rank {rank} done: {result.problem or 'ok'}", flush=True)
    return 0


def data_parallel(device: torch.device) -> Callable[[Any], None]:
    """Wrap a trainer's model in DistributedDataParallel (after its optimizer was made: DDP keeps the parameters), so
    each step all-reduces the gradients across the ranks."""

    def wrap(trainer: Any) -> None:
        model = getattr(trainer, "model", None)
        if not isinstance(model, nn.Module):
            raise TypeError(f"{type(trainer).__name__} has no `model` module to make data-parallel")
        trainer.model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    return wrap


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
