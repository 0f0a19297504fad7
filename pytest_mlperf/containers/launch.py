"""A training case run inside its system's image: the test's leased GPUs requested for the container, its CPU slice
and memory share as hard limits, the system file, the output folder and the data bind-mounted, and our own entry
point (`pytest_mlperf.run.job`) writing the result the test then judges exactly as a local one.

An image other than "host" needs pytest-mlperf and its dependencies installed (e.g. `pip install pytest-mlperf` in a
Dockerfile FROM NVIDIA's PyTorch image); this package's source is also mounted at /opt/pytest-mlperf and put first on
PYTHONPATH, so the code that runs is the code of the session.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.matrix import Case
from ..config.schema import Container
from ..resources.leasing import Lease
from ..resources.slices import Slice
from ..run.job import Job, TrainResult
from .engine import connect
from .images import host_image, host_mounts
from .runner import ContainerFailed, ContainerRun, ContainerSpec, Mount, Runner

HOST = Container(image="host", ulimits={})  #: a system without a container section: the host image, no ulimits
SOURCE = "/opt/pytest-mlperf"  #: where this package's source is mounted in an image other than the host's
SYSTEMS, OUT, DATA = "/mlperf/systems", "/mlperf/out", "/mlperf/data"
LOG = "container.log"  #: the container's output, beside the job and its result


@dataclass
class Containers:
    """The session's engine and runner, connected on first use (a run without container tests needs no engine);
    `close` removes whatever this session left behind, also after Ctrl-C."""

    session: str
    _runner: Runner | None = field(default=None, repr=False)

    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = Runner(connect(), self.session)
        return self._runner

    def close(self) -> list[str]:
        return self._runner.cleanup() if self._runner else []


@dataclass(frozen=True)
class Launch:
    """How one test's container is set up: the system's image (the host image resolved, with its mounts), the
    test's leased GPUs, its slice's cores and memory as limits, and the system's container settings."""

    case: Case
    lease: Lease
    piece: Slice
    out: Path  #: the test's folder for the container's log (and our job and result)

    @property
    def settings(self) -> Container:
        return self.case.system.spec.container or HOST

    def image(self, runner: Runner) -> tuple[str, list[Mount]]:
        """The image to run and the mounts it needs: the host image needs this host's Python mounted."""
        if self.settings.image == "host":
            return host_image(runner.client), host_mounts()
        return self.settings.image, []

    def spec(
        self, image: str, command: list[str], env: dict[str, str], mounts: list[Mount], **more: Any
    ) -> ContainerSpec:
        settings, piece = self.settings, self.piece
        return ContainerSpec(
            image=image,
            command=command,
            env={**settings.env, **env, **self.lease.env},
            mounts=mounts,
            gpus=[g.uuid for g in self.lease.devices],
            shm_size=settings.shm_size,
            ipc_mode=settings.ipc_mode,
            ulimits={name: (value, value) for name, value in settings.ulimits.items()},
            cpuset_cpus=piece.cpuset,
            mem_limit=f"{int(piece.memory_gb * 1024)}m",
            timeout_s=settings.timeout_s,
            name_prefix=f"mlperf-{self.case.benchmark}",
            **more,
        )

    def run(self, runner: Runner, spec: ContainerSpec) -> ContainerRun | str:
        """Run `spec`, its output streamed into the test's container.log; the run, or why it failed (with the log's
        tail)."""
        self.out.mkdir(parents=True, exist_ok=True)
        with (self.out / LOG).open("w", encoding="utf-8") as log:
            try:
                return runner.run(spec, on_line=lambda line: print(line, file=log, flush=True))
            except ContainerFailed as exc:
                return f"{self.case.id}: {exc}"


def identity(run: ContainerRun) -> dict[str, str]:
    """The image a result ran in, as its row records it."""
    return {"container_image": run.image.reference, "image_id": run.image.id, "image_digest": run.image.repo_digest}


def train_in_container(runner: Runner, launch: Launch, data: Path | None, compiled: bool) -> TrainResult:
    """Run the case in its system's image (`HOST` when it names none); a failed, timed-out or unstartable container,
    or one that wrote no result, comes back as the result's `problem`, with the log's tail."""
    case, out = launch.case, launch.out
    out.mkdir(parents=True, exist_ok=True)
    system_file = case.system.path.resolve()
    job = Job(
        system_file=f"{SYSTEMS}/{system_file.name}",
        benchmark=case.benchmark,
        precision=case.precision,
        device="cuda" if launch.lease.devices else "cpu",
        data=DATA if data else None,
        compiled=compiled,
        threads=launch.piece.threads,
    )
    (out / "job.json").write_text(json.dumps(job.__dict__), encoding="utf-8")
    image, mounts = launch.image(runner)
    mounts += [Mount(system_file.parent, SYSTEMS), Mount(out, OUT, read_only=False)]
    mounts += [Mount(data.resolve(), DATA)] if data else []
    env = {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(launch.piece.threads)}
    python = sys.executable
    if launch.settings.image != "host":
        python = "python"
        mounts.append(Mount(Path(__file__).resolve().parent.parent.parent, SOURCE))
        env["PYTHONPATH"] = SOURCE
    command = [python, "-m", "pytest_mlperf.run.job", f"{OUT}/job.json", f"{OUT}/result.json"]
    run = launch.run(runner, launch.spec(image, command, env, mounts))
    if isinstance(run, str):
        return TrainResult(problem=run)
    written = out / "result.json"
    if not written.is_file():
        tail = "\n".join(run.tail())
        return TrainResult(problem=f"{case.id}: the container exited 0 but wrote no {written}\n{tail}")
    result = TrainResult.from_dict(json.loads(written.read_text(encoding="utf-8")))
    result.environment |= identity(run)
    return result
