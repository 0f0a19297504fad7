"""The schema of a system file (`systems/NAME.yaml`), validated strictly so that a typo never passes silently.

Every key is known, every value has one type (no "224" for 224), and impossible values (a batch of 0, a negative
tolerance) are refused. `load_system` turns any problem into one `SystemFileError` line naming the file, the key
path and what was expected.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..run.precision import PRECISIONS

PrecisionName = Literal["fp32", "tf32", "amp", "fp16", "bf16"]
assert typing.get_args(PrecisionName) == PRECISIONS
BatchPer = Literal["device", "global"]
PositiveInt = Annotated[int, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
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


class PrecisionSpec(_Spec):
    batch_size: PositiveInt
    batch_per: BatchPer | None = None  #: overrides the benchmark's
    warmup: Count | None = None
    repeat: PositiveInt | None = None
    number: PositiveInt | None = None
    baseline: Baseline | None = None


class BenchmarkSpec(_Spec):
    preset: Text = "real"  #: the workload's size preset: "real" (published) or "cpu" (tiny)
    batch_per: BatchPer = "device"  #: whether batch_size is per device or for the whole system
    warmup: Count = 10  #: steps run and discarded before measuring
    repeat: PositiveInt = 5  #: measured blocks
    number: PositiveInt = 20  #: steps per block
    precisions: dict[PrecisionName, PrecisionSpec] = Field(min_length=1)
    #: torch.compile the workload's models: minutes of compiling on a CPU, often faster steps on a GPU
    compile: bool = False
    #: values for the preset's own keys on this system, e.g. a local file of pretrained weights
    options: dict[str, Any] = Field(default_factory=dict)


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
    image: Text


class SystemSpec(_Spec):
    name: Text
    description: Text
    accelerator: Accelerator
    host: Host = Host()
    container: Container | None = None
    benchmarks: dict[str, BenchmarkSpec] = Field(min_length=1)

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
    baseline: Baseline | None
    options: Mapping[str, Any] = field(default_factory=dict)
    compile: bool = False

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
            options=bench.options,
            compile=bench.compile,
        )


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
    if kind == "value_error":
        return str(error["ctx"]["error"])
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
