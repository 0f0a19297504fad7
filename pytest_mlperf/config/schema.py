"""The schema of a system file (`systems/NAME.yaml`), validated strictly so that a typo never passes silently.

Every key is known, every value has one type (no "224" for 224), and impossible values (a batch of 0, a negative
tolerance) are refused. `load_system` turns any problem into one `SystemFileError` line naming the file, the key
path and what was expected.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..run.loadgen import Scenario
from ..run.measure import MIN_BLOCK_S
from ..run.precision import INFERENCE_PRECISIONS, PRECISIONS

PrecisionName = Literal["fp32", "tf32", "amp", "fp16", "bf16"]
assert typing.get_args(PrecisionName) == PRECISIONS
InferencePrecisionName = Literal["fp32", "fp16", "bf16", "int8"]
assert typing.get_args(InferencePrecisionName) == INFERENCE_PRECISIONS
BatchPer = Literal["device", "global"]
PositiveInt = Annotated[int, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Seconds = Annotated[float, Field(ge=0)]
Text = Annotated[str, Field(min_length=1)]


class SystemFileError(Exception):
    """A system file that cannot be used; the message says where and why."""


class _Spec(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Baseline(_Spec):
    throughput: PositiveFloat  #: whole-system items/s
    unit: Text  #: must equal the workload's unit, e.g. "img/s"
    tolerance: Annotated[float, Field(ge=0, lt=1)]  #: fraction below `throughput` still accepted
    source: Text  #: where the figure comes from: a publication, or the command and date of our own run

    @property
    def value(self) -> float:
        return self.throughput


class MetricBaseline(_Spec):
    """A baseline of an inference scenario's official metric: samples/s (Offline, Server) or ms (SingleStream's p90
    and MultiStream's p99 latency, where lower is better)."""

    value: PositiveFloat
    unit: Text
    tolerance: Annotated[float, Field(ge=0, lt=1)]  #: fraction worse than `value` still accepted
    source: Text


class PeakFraction(_Spec):
    """A floor stated as a fraction of the device's peak FLOP/s at the precision's math (measured on a CPU under the
    run's own conditions, the datasheet's on a GPU): it travels between hosts of different speed, so a healthy host
    of any speed passes while a build several times slower than it should be fails."""

    value: Annotated[float, Field(gt=0, lt=1)]
    source: Text  #: how it was set: the runs it was derived from, and the margin left below them


class PrecisionSpec(_Spec):
    batch_size: PositiveInt
    batch_per: BatchPer | None = None  #: overrides the benchmark's
    warmup: Count | None = None
    repeat: PositiveInt | None = None
    number: PositiveInt | None = None
    min_block_s: Seconds | None = None
    baseline: Baseline | None = None
    peak_fraction: PeakFraction | None = None  #: overrides the benchmark's


class ImageRun(_Spec):
    """Run the container image's own benchmark script instead of our workload (as Lambda runs NVIDIA's examples), and
    read the throughput from its log."""

    #: argv (never a shell string); {batch_size} (per device), {global_batch}, {devices} and {precision} are filled in
    command: list[Text] = Field(min_length=1)
    log_format: Literal["nvidia-resnet50", "nvidia-ssd", "nvidia-ssd-v1", "nvidia-gnmt"]  #: containers.logs.PARSERS
    workdir: Text | None = None
    env: dict[str, str] = Field(default_factory=dict)
    mounts: dict[str, Text] = Field(default_factory=dict)  #: host path -> path in the container (read-only)

    @model_validator(mode="after")
    def _placeholders(self) -> ImageRun:
        known = {"batch_size": "", "global_batch": "", "devices": "", "precision": ""}
        for part in self.command:
            try:
                part.format_map(known)
            except (KeyError, ValueError, IndexError) as exc:
                raise ValueError(f"command: {part!r}: unknown placeholder {exc}; known: {', '.join(known)}") from None
        return self


class BenchmarkSpec(_Spec):
    preset: Text = "real"  #: the workload's size preset: "real" (published) or "cpu" (tiny)
    batch_per: BatchPer = "device"  #: whether batch_size is per device or for the whole system
    warmup: Count = 10  #: steps run and discarded before measuring
    repeat: PositiveInt = 5  #: measured blocks
    number: PositiveInt = 20  #: steps per block, the least: more when a block would last under min_block_s
    #: the least wall time of a measured block, whatever the host's speed (steps per block chosen from the warm-up's
    #: step time, as timeit's autorange does); 0: `number` steps as given
    min_block_s: Seconds = MIN_BLOCK_S
    precisions: dict[PrecisionName, PrecisionSpec] = Field(min_length=1)
    #: torch.compile the workload's models: minutes of compiling on a CPU, often faster steps on a GPU
    compile: bool = False
    #: values for the preset's own keys on this system, e.g. a local file of pretrained weights
    options: dict[str, Any] = Field(default_factory=dict)
    #: run the system image's own script for this benchmark instead of our workload (needs `container`)
    image_run: ImageRun | None = None
    peak_fraction: PeakFraction | None = None  #: the floor of every precision without one of its own


class _ScenarioSpec(_Spec):
    """LoadGen's run length: it stops once both minimums are met (early stopping may need more queries to be
    VALID: 64 in SingleStream, 459 in Server, 662 in MultiStream). The settings that depend on the host's speed
    (expected QPS and latencies, Server's target and bound) are calibrated on the host before each run when left
    out (`pytest_mlperf.run.calibration`); a value given here is used as it is."""

    min_duration_ms: PositiveInt
    min_query_count: PositiveInt
    baselines: dict[InferencePrecisionName, MetricBaseline] = Field(default_factory=dict)  #: per precision
    peak_fractions: dict[InferencePrecisionName, PeakFraction] = Field(default_factory=dict)  #: floors per precision
    #: the precisions this scenario runs in (default: all the entry's), e.g. none of the slow ones in MultiStream
    precisions: list[InferencePrecisionName] | None = None
    UNIT: ClassVar[str] = "samples/s"  #: of the scenario's official metric

    @model_validator(mode="after")
    def _baseline_units(self) -> _ScenarioSpec:
        for precision, baseline in self.baselines.items():
            if baseline.unit != self.UNIT:
                raise ValueError(
                    f"baselines.{precision}.unit: {baseline.unit!r}, but this scenario's metric is in {self.UNIT!r}"
                )
        return self


class OfflineSpec(_ScenarioSpec):
    expected_qps: PositiveFloat | None = None  #: LoadGen issues 1.1 x min duration x this many samples in one query
    max_batch: PositiveInt = 1  #: samples per predict call


class ServerSpec(_ScenarioSpec):
    target_qps: PositiveFloat | None = None  #: the Poisson arrival rate LoadGen offers
    latency_ms: PositiveFloat | None = None  #: the p99 latency bound (MLPerf's, e.g. 15 ms for ResNet-50)
    max_batch: PositiveInt = 1  #: the most waiting samples grouped into one predict call


class SingleStreamSpec(_ScenarioSpec):
    UNIT = "ms"  #: p90 latency
    expected_latency_ms: PositiveFloat | None = None  #: LoadGen pre-generates 2 x min duration of queries at it


class MultiStreamSpec(_ScenarioSpec):
    UNIT = "ms"  #: p99 latency of a query
    expected_latency_ms: PositiveFloat | None = None  #: of a whole query
    samples_per_query: PositiveInt = 8  #: MLPerf's


#: the key, in a scenario's section of a system file, of each host setting of a `Scenario`
PINS = {
    "offline_expected_qps": "expected_qps",
    "server_target_qps": "target_qps",
    "server_target_latency_ms": "latency_ms",
    "single_stream_expected_latency_ms": "expected_latency_ms",
    "multi_stream_expected_latency_ms": "expected_latency_ms",
}
PINNED = "system file"  #: the source of a setting the system file gives


def pin_key(benchmark: str, scenario: str, setting: str) -> str:
    """The key path pinning a Scenario's host setting, e.g. inference.resnet50.scenarios.offline.expected_qps."""
    return f"inference.{benchmark}.scenarios.{scenario}.{PINS[setting]}"


class ScenariosSpec(_Spec):
    offline: OfflineSpec | None = None
    server: ServerSpec | None = None
    singlestream: SingleStreamSpec | None = None
    multistream: MultiStreamSpec | None = None

    @model_validator(mode="after")
    def _some(self) -> ScenariosSpec:
        if not self.model_fields_set:
            raise ValueError("at least one scenario is needed; expected some of: " + ", ".join(type(self).model_fields))
        return self


class InferenceSpec(_Spec):
    preset: Text = "real"  #: the training workload's preset whose model is trained, then served
    samples: PositiveInt  #: the query sample library's size, all of it in memory (performance_sample_count)
    train_batch: PositiveInt = 16  #: the batch the served model is trained at (to its synthetic target, in fp32)
    precisions: list[InferencePrecisionName] = Field(min_length=1)
    scenarios: ScenariosSpec
    #: the fraction of the FP32 model's accuracy every precision must keep: MLPerf's 0.99, or 0.999 for the
    #: high-accuracy variants of BERT, DLRM and 3D-UNet
    accuracy_target: Annotated[float, Field(gt=0, le=1)] = 0.99

    @model_validator(mode="after")
    def _distinct(self) -> InferenceSpec:
        twice = sorted({p for p in self.precisions if self.precisions.count(p) > 1})
        if twice:
            raise ValueError(f"precisions: {', '.join(twice)} listed more than once")
        for name in type(self.scenarios).model_fields:
            spec = getattr(self.scenarios, name)
            other = sorted(set(spec.precisions or ()) - set(self.precisions)) if spec else []
            if other:
                raise ValueError(
                    f"scenarios.{name}.precisions: {', '.join(other)} not among the entry's precisions "
                    f"({', '.join(self.precisions)})"
                )
        return self


class Accelerator(_Spec):
    kind: Literal["cpu", "cuda"]
    model: Text  #: as the driver names it, e.g. "NVIDIA TITAN RTX"; matched by --system=auto
    count: PositiveInt
    memory_gb: PositiveFloat  #: per device


class Host(_Spec):
    cpus: PositiveInt | None = None
    memory_gb: PositiveFloat | None = None
    description: str = ""


class Container(_Spec):
    """The image a system's tests run in with the container runner, and the settings NGC's images ask for."""

    image: Text  #: e.g. "nvidia/pytorch:22.10-py3", or "host": a local image that runs this host's Python
    #: PyTorch's DataLoader workers share batches through /dev/shm: NGC asks for the host's IPC namespace, or a
    #: larger /dev/shm (e.g. "1g") with ipc_mode null; engines refuse both at once
    ipc_mode: Text | None = "host"
    shm_size: Text | None = None
    #: NGC's recommended --ulimit memlock=-1 --ulimit stack=67108864 (soft = hard)
    ulimits: dict[str, int] = Field(default_factory=lambda: {"memlock": -1, "stack": 67108864})
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: PositiveFloat = 7200.0  #: a run still going after this is killed and fails

    @model_validator(mode="after")
    def _one_shm(self) -> Container:
        if self.shm_size is not None and self.ipc_mode == "host":
            raise ValueError("shm_size: the host's IPC namespace (ipc_mode: host) has the host's /dev/shm; set one")
        return self


class SlurmSpec(_Spec):
    """How a multi-device test's ranks are submitted to Slurm (`launch.launcher: slurm` or --launcher=slurm)."""

    partition: Text | None = None  #: default: the cluster's default partition
    nodes: PositiveInt = 1
    gpus_per_task: Count | None = None  #: default: 1 on a CUDA system, 0 on a CPU one
    cpus_per_task: PositiveInt | None = None
    time_limit_s: PositiveFloat = 7200.0  #: Slurm's --time; the job is cancelled after it
    #: run each task in this image through the site's Slurm container plugin (pyxis: srun --container-image)
    container_image: Text | None = None
    extra_args: list[Text] = Field(default_factory=list)  #: more srun arguments, e.g. ["--exclusive"]


class LaunchSpec(_Spec):
    """How a test on several devices starts one process (rank) per device: torchrun on this host, or Slurm. The
    timeout and env also hold for a one-device run in a fresh process (--runs N)."""

    launcher: Literal["torchrun", "slurm"] = "torchrun"
    timeout_s: PositiveFloat = 7200.0  #: the ranks of a run still going after this are killed and the test fails
    env: dict[str, str] = Field(default_factory=dict)  #: for every rank, e.g. NCCL_ALGO, NCCL_P2P_LEVEL
    #: environment variables swept as test parameters: one test per combination, each a column of the results,
    #: e.g. {NCCL_ALGO: [Tree, Ring], NCCL_P2P_LEVEL: [NVL, SYS]}
    sweep: dict[str, Annotated[list[Text], Field(min_length=1)]] = Field(default_factory=dict)
    slurm: SlurmSpec = SlurmSpec()


class SystemSpec(_Spec):
    name: Text
    description: Text
    accelerator: Accelerator
    host: Host = Host()
    container: Container | None = None
    #: where training tests run: in this process, or inside `container.image` (--runner overrides)
    runner: Literal["local", "container"] = "local"
    launch: LaunchSpec = LaunchSpec()  #: how tests on several devices start their ranks
    benchmarks: dict[str, BenchmarkSpec] = Field(min_length=1)
    inference: dict[str, InferenceSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _image_runs_have_an_image(self) -> SystemSpec:
        for bench_name, bench in self.benchmarks.items():
            if bench.image_run is not None and self.container is None:
                raise ValueError(f"benchmarks.{bench_name}.image_run: needs the system's `container: {{image: ...}}`")
        return self

    @model_validator(mode="after")
    def _global_batches_divide(self) -> SystemSpec:
        for bench_name, bench in self.benchmarks.items():
            for precision, spec in bench.precisions.items():
                per = spec.batch_per or bench.batch_per
                if per == "global" and spec.batch_size % self.accelerator.count:
                    raise ValueError(
                        f"benchmarks.{bench_name}.precisions.{precision}.batch_size: a global batch of "
                        f"{spec.batch_size} does not divide over {self.accelerator.count} devices"
                    )
        return self


@dataclass(frozen=True)
class RunSettings:
    """Everything one (benchmark, precision) entry of a system resolves to, defaults applied."""

    preset: str
    batch_size: int  #: as written in the file
    batch_per: BatchPer
    devices: int
    warmup: int
    repeat: int
    number: int
    baseline: Baseline | MetricBaseline | None
    floor: PeakFraction | None = None  #: the peak-fraction floor
    options: Mapping[str, Any] = field(default_factory=dict)
    compile: bool = False
    image_run: ImageRun | None = None  #: the image's own script instead of our workload
    min_block_s: float = 0.0  #: the least wall time of a measured block (`Plan.min_block_s`)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.devices if self.batch_per == "device" else self.batch_size

    @property
    def device_batch(self) -> int:
        return self.global_batch // self.devices


@dataclass(frozen=True)
class System:
    spec: SystemSpec
    path: Path

    @property
    def name(self) -> str:
        return self.spec.name

    def settings(self, benchmark: str, precision: str) -> RunSettings:
        bench = self.spec.benchmarks[benchmark]
        entry = bench.precisions[precision]  # type: ignore[index]
        return RunSettings(
            preset=bench.preset,
            batch_size=entry.batch_size,
            batch_per=entry.batch_per or bench.batch_per,
            devices=self.spec.accelerator.count,
            warmup=bench.warmup if entry.warmup is None else entry.warmup,
            repeat=entry.repeat or bench.repeat,
            number=entry.number or bench.number,
            baseline=entry.baseline,
            floor=entry.peak_fraction or bench.peak_fraction,
            options=bench.options,
            compile=bench.compile,
            image_run=bench.image_run,
            min_block_s=bench.min_block_s if entry.min_block_s is None else entry.min_block_s,
        )

    def inference_settings(self, benchmark: str, scenario: str | None, precision: str) -> RunSettings:
        """An inference entry as RunSettings (the Record's columns): one LoadGen run on the whole system, with the
        scenario's baseline for the precision (none for the accuracy pass, `scenario` None)."""
        entry = self.spec.inference[benchmark]
        spec = getattr(entry.scenarios, scenario) if scenario else None
        baseline = spec.baselines.get(precision) if spec else None
        floor = spec.peak_fractions.get(precision) if spec else None
        return RunSettings(entry.preset, 1, "global", self.spec.accelerator.count, 0, 1, 1, baseline, floor)

    def scenario(self, benchmark: str, name: str | None) -> Scenario:
        """LoadGen's settings for scenario `name` of an inference entry, the host settings the file gives marked as
        pinned (the others are calibrated before the run); None: the accuracy pass, which LoadGen runs in Offline
        over every sample once (durations and expected rates do not apply), batched as Offline is."""
        entry = self.spec.inference[benchmark]
        common: dict[str, Any] = {"performance_sample_count": entry.samples}
        s = entry.scenarios
        if name is None:
            batch = s.offline.max_batch if s.offline else 1
            return Scenario("offline", "accuracy", max_batch=batch, **common)
        spec = getattr(s, name)
        common |= {"min_duration_ms": spec.min_duration_ms, "min_query_count": spec.min_query_count}
        if isinstance(spec, OfflineSpec):
            scenario = Scenario(name, offline_expected_qps=spec.expected_qps, max_batch=spec.max_batch, **common)
        elif isinstance(spec, ServerSpec):
            scenario = Scenario(
                name,
                server_target_qps=spec.target_qps,
                server_target_latency_ms=spec.latency_ms,
                max_batch=spec.max_batch,
                **common,
            )
        elif isinstance(spec, SingleStreamSpec):
            scenario = Scenario(name, single_stream_expected_latency_ms=spec.expected_latency_ms, **common)
        else:
            scenario = Scenario(
                name,
                multi_stream_expected_latency_ms=spec.expected_latency_ms,
                multi_stream_samples_per_query=spec.samples_per_query,
                max_batch=spec.samples_per_query,
                **common,
            )
        pinned = tuple((setting, PINNED) for setting, value in scenario.host_settings.items() if value is not None)
        return dataclasses.replace(scenario, sources=pinned)


def load_system(path: Path) -> System:
    """Parse and validate one system file, raising SystemFileError with the file, key path and expectation."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SystemFileError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SystemFileError(f"{path}: not valid YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise SystemFileError(f"{path}: expected a mapping of keys (name, accelerator, benchmarks, ...) at the top")
    try:
        spec = SystemSpec.model_validate(data)
    except ValidationError as exc:
        raise SystemFileError(f"{path}: " + "; ".join(_describe(err) for err in exc.errors())) from None
    if spec.name != path.stem:
        raise SystemFileError(f"{path}: name: {spec.name!r} differs from the file name {path.stem!r}")
    return System(spec, path)


def _describe(error: Any) -> str:
    loc = tuple(part for part in error["loc"] if part != "[key]")
    where = ".".join(str(part) for part in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key; expected one of: {', '.join(_fields_at(loc[:-1]))}"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "value_error":  # a validator's own message; those of nested models do not know where they are
        return f"{where}: {error['ctx']['error']}" if loc else str(error["ctx"]["error"])
    return f"{where}: {error['msg'][0].lower()}{error['msg'][1:]}, got {error['input']!r}"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at `loc`, found by walking the schema's annotations (through dicts and optionals)."""
    node: Any = SystemSpec
    for part in loc:
        node = _unwrap(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            node = node.model_fields[part].annotation
        else:  # a dict[str, Model]: every key leads to the value type
            node = typing.get_args(node)[1]
    node = _unwrap(node)
    return list(node.model_fields)


def _unwrap(node: Any) -> Any:
    """Model | None -> Model; Annotated[...] is already stripped by pydantic's field annotations."""
    if isinstance(node, types.UnionType) or typing.get_origin(node) is typing.Union:
        return next(arg for arg in typing.get_args(node) if arg is not type(None))
    return node
