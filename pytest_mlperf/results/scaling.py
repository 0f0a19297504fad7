"""Scaling efficiency of results on several devices: the system's throughput over devices x one device's. One device's
figure comes from the same run when it measured that workload, precision and per-device batch on one device of the
same model (the fairest reference: same code, same day, same machine), else from the baseline of a one-device system
of that model (e.g. 8xa100's against a100's)."""

from __future__ import annotations

from collections.abc import Iterable

from ..config.schema import System
from .record import Record

Key = tuple[str, str, str, int, str]  #: benchmark, precision, preset, per-device batch, device model


def annotate(records: list[Record], systems: Iterable[System]) -> None:
    """Set `scaling_efficiency` and `scaling_reference` on every training record of several devices with a mean."""
    measured: dict[Key, tuple[float, str]] = {}
    for r in records:
        if r.task == "training" and r.devices == 1 and r.mean is not None:
            measured.setdefault(_key(r), (r.mean, f"{r.id} in this run"))
    published = _baselines(systems)
    for r in records:
        if r.task != "training" or r.devices < 2 or r.mean is None:
            continue
        reference = measured.get(_key(r)) or published.get(_key(r))
        if reference:
            r.scaling_efficiency = r.mean / (r.devices * reference[0])
            r.scaling_reference = reference[1]


def _key(r: Record) -> Key:
    return (r.benchmark, r.precision, r.preset, r.global_batch // r.devices, r.accelerator)


def _baselines(systems: Iterable[System]) -> dict[Key, tuple[float, str]]:
    found: dict[Key, tuple[float, str]] = {}
    for system in systems:
        if system.spec.accelerator.count != 1:
            continue
        for name, bench in system.spec.benchmarks.items():
            for precision in bench.precisions:
                s = system.settings(name, precision)
                if s.baseline is not None:
                    key = (name, precision, s.preset, s.device_batch, system.spec.accelerator.model)
                    found.setdefault(key, (s.baseline.value, f"baseline of {system.name}: {s.baseline.source}"))
    return found
