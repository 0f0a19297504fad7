"""A benchmark run by an image's own script, as Lambda runs NVIDIA's examples: the system file gives the argv (with
the case's batch size, devices and precision filled in) and the parser that reads the script's throughput from its
log. The figure is the script's, reported as it printed it (one value, no blocks of ours); the test judges it against
the baseline like any other, and fails clearly when the script fails or prints no figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config.matrix import Case
from ..config.schema import ImageRun
from .launch import Launch, identity
from .logs import LogFormatError, parse_throughput
from .runner import Mount, Runner


@dataclass(frozen=True)
class Reported:
    """A throughput the image's script printed."""

    value: float
    unit: str
    line: str  #: the log line it was read from
    parser: str
    environment: dict[str, str]  #: the image's identity

    def describe(self) -> str:
        return f"{self.value:g} {self.unit}, as the image's script printed it ({self.parser}: {self.line.strip()!r})"


def arguments(case: Case) -> dict[str, str]:
    """What an ImageRun's argv may name: {batch_size} (per device), {global_batch}, {devices}, {precision}."""
    s = case.settings
    return {
        "batch_size": str(s.device_batch),
        "global_batch": str(s.global_batch),
        "devices": str(s.devices),
        "precision": case.precision,
    }


def run_image_benchmark(runner: Runner, launch: Launch, image_run: ImageRun) -> Reported | str:
    """Run the case's ImageRun in the system's image; the figure its log reports, or what went wrong."""
    case = launch.case
    command = [part.format_map(arguments(case)) for part in image_run.command]
    image, mounts = launch.image(runner)
    mounts += [Mount(Path(source), target) for source, target in image_run.mounts.items()]
    run = launch.run(runner, launch.spec(image, command, image_run.env, mounts, workdir=image_run.workdir))
    if isinstance(run, str):
        return run
    try:
        found = parse_throughput(image_run.log_format, run.logs)
    except LogFormatError as exc:
        return f"{case.id}: {exc}"
    if found.unit != case.workload.unit:
        return f"{case.id}: {image_run.log_format} reports {found.unit}, but {case.benchmark} is measured in " + (
            case.workload.unit
        )
    return Reported(found.value, found.unit, found.line, image_run.log_format, identity(run))
