"""Finding, loading and selecting the systems a session runs on (`--system`, `--systems-dir`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..workloads import Workload
from ..workloads import known as known_workloads
from .schema import System, SystemFileError, load_system

AUTO = "auto"


class SystemSelectionError(Exception):
    """--system names something that cannot be used; the message lists what can."""


def discover(dirs: Iterable[Path]) -> dict[str, Path]:
    """Map system names to files; a later directory overrides an earlier one (a user's own file wins)."""
    found: dict[str, Path] = {}
    for directory in dirs:
        if not directory.is_dir():
            raise SystemSelectionError(f"systems directory {directory} does not exist")
        for path in sorted(directory.glob("*.yaml")):
            found[path.stem] = path
    return found


def check_against_workloads(system: System) -> None:
    """Benchmarks, presets and baseline units must exist in the workload registry."""
    workloads = known_workloads()
    for name, bench in system.spec.benchmarks.items():
        if name not in workloads:
            raise SystemFileError(
                f"{system.path}: benchmarks.{name}: unknown benchmark; known: {', '.join(sorted(workloads))}"
            )
        workload = workloads[name]
        if bench.preset not in workload.presets:
            raise SystemFileError(
                f"{system.path}: benchmarks.{name}.preset: {bench.preset!r} is not a preset of {name}; "
                f"expected one of: {', '.join(workload.presets)}"
            )
        preset = workload.presets[bench.preset]
        for key in bench.options.keys() - preset.keys():
            raise SystemFileError(
                f"{system.path}: benchmarks.{name}.options.{key}: not a key of {name}'s {bench.preset!r} preset; "
                f"expected one of: {', '.join(preset)}"
            )
        for precision, entry in bench.precisions.items():
            if entry.baseline is not None and entry.baseline.unit != workload.unit:
                raise SystemFileError(
                    f"{system.path}: benchmarks.{name}.precisions.{precision}.baseline.unit: "
                    f"{entry.baseline.unit!r}, but {name} is measured in {workload.unit!r}"
                )
    _check_inference(system, workloads)


def _check_inference(system: System, workloads: dict[str, Workload]) -> None:
    """Inference entries serve a training workload's model: the benchmark and its preset must exist."""
    for name, entry in system.spec.inference.items():
        if name not in workloads:
            raise SystemFileError(
                f"{system.path}: inference.{name}: unknown benchmark; known: {', '.join(sorted(workloads))}"
            )
        if workloads[name].serving is None:
            served = sorted(n for n, w in workloads.items() if w.serving is not None)
            raise SystemFileError(
                f"{system.path}: inference.{name}: {name}'s model is not served for inference yet; served: "
                f"{', '.join(served)}"
            )
        if entry.preset not in workloads[name].presets:
            raise SystemFileError(
                f"{system.path}: inference.{name}.preset: {entry.preset!r} is not a preset of {name}; "
                f"expected one of: {', '.join(workloads[name].presets)}"
            )


def select(option: str, dirs: Iterable[Path]) -> list[System]:
    """Resolve `--system=NAME[,NAME...]` or `auto` to validated systems."""
    available = discover(dirs)
    names = [name.strip() for name in option.split(",") if name.strip()]
    if not names:
        raise SystemSelectionError(f"--system is empty; known systems: {', '.join(sorted(available)) or 'none'}")
    if names == [AUTO]:
        names = [detect(available)]
    unknown = [name for name in names if name not in available]
    if unknown:
        raise SystemSelectionError(
            f"unknown system {', '.join(map(repr, unknown))}; known systems: {', '.join(sorted(available))} "
            f"(from {', '.join(sorted({str(p.parent) for p in available.values()}))})"
        )
    systems = []
    for name in dict.fromkeys(names):
        system = load_system(available[name])
        check_against_workloads(system)
        systems.append(system)
    return systems


def detect(available: dict[str, Path]) -> str:
    """The system describing this host: its GPUs (model and count) when it has any, else `cpu`."""
    gpus = _cuda_devices()
    if not gpus:
        if "cpu" not in available:
            raise SystemSelectionError("--system=auto: no GPU here and no 'cpu' system file; pass --system=NAME")
        return "cpu"
    model, count = gpus[0], len(gpus)
    for name, path in available.items():
        accelerator = load_system(path).spec.accelerator
        if accelerator.kind == "cuda" and accelerator.count == count and _same_model(accelerator.model, model):
            return name
    raise SystemSelectionError(
        f"--system=auto: this host has {count}x {model} and no system file describes it; "
        f"known systems: {', '.join(sorted(available))}. Pass --system=NAME or add systems/NAME.yaml"
    )


def _same_model(declared: str, detected: str) -> bool:
    a, b = declared.casefold(), detected.casefold()
    return a in b or b in a


def _cuda_devices() -> list[str]:
    """GPU names; without an NVIDIA driver this returns at once, without importing torch."""
    if not os.path.exists("/proc/driver/nvidia") and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
