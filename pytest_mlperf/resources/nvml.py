"""GPUs and their readings from NVML, behind one small interface with two backends: the real library (nvidia-ml-py,
on a machine with NVIDIA's driver), or a replay of NVML's answers kept in a JSON file (`fixtures/nvml/`). The replay
answers the same function names with the same types and errors, so leasing, system information and telemetry run
the same code on a machine without a GPU as on an 8-GPU box.

The leasable devices are the GPUs, except that a GPU in MIG mode is replaced by its MIG instances: each instance is
a device of its own (its UUID is what CUDA_VISIBLE_DEVICES takes), and the whole GPU is never handed out beside them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml

#: NVML's clock event ("throttle") reasons that mean the GPU was slowed by something other than having no work
THROTTLES = {
    pynvml.nvmlClocksEventReasonSwPowerCap: "power cap",
    pynvml.nvmlClocksEventReasonHwSlowdown: "hardware slowdown",
    pynvml.nvmlClocksEventReasonHwThermalSlowdown: "hardware thermal slowdown",
    pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown: "power brake",
    pynvml.nvmlClocksEventReasonSwThermalSlowdown: "software thermal slowdown",
    pynvml.nvmlClocksEventReasonSyncBoost: "sync boost",
}
#: nvmlDeviceGetTopologyCommonAncestor's levels, as nvidia-smi topo -m names them
TOPOLOGY = {
    pynvml.NVML_TOPOLOGY_INTERNAL: "same board",
    pynvml.NVML_TOPOLOGY_SINGLE: "PIX (one PCIe switch)",
    pynvml.NVML_TOPOLOGY_MULTIPLE: "PXB (several PCIe switches)",
    pynvml.NVML_TOPOLOGY_HOSTBRIDGE: "PHB (a PCIe host bridge)",
    pynvml.NVML_TOPOLOGY_NODE: "NODE (host bridges of one NUMA node)",
    pynvml.NVML_TOPOLOGY_SYSTEM: "SYS (across NUMA nodes)",
}


@dataclass(frozen=True)
class Gpu:
    """A leasable device: a whole GPU, or one MIG instance of a GPU in MIG mode."""

    index: int  #: NVML's index of the physical GPU (PCI bus order)
    uuid: str  #: "GPU-..." or "MIG-...": what CUDA_VISIBLE_DEVICES and a container's device request take
    name: str  #: as the driver names it, e.g. "NVIDIA A100-SXM4-80GB" (with the MIG profile for an instance)
    memory_gb: float
    bus_id: str
    mig: int | None = None  #: the instance's position on its GPU; None for a whole GPU

    @property
    def label(self) -> str:
        where = f"GPU {self.index}" if self.mig is None else f"GPU {self.index} MIG {self.mig}"
        return f"{where} ({self.name}, {self.uuid})"


@dataclass(frozen=True)
class Reading:
    """One sample of a GPU's state, in plain units."""

    utilization: float  #: % of the last sample period in which a kernel ran
    memory_used_gb: float
    power_w: float
    temperature_c: float
    sm_clock_mhz: float
    throttles: tuple[str, ...]  #: active slow-down reasons (THROTTLES' names); idle is not one


class Nvml:
    """An initialised NVML, real or replayed; `source` says which, and is shown wherever its answers are."""

    def __init__(self, lib: Any, source: str) -> None:
        self.lib = lib
        self.source = source
        self._handles: dict[str, Any] = {}

    def driver(self) -> str:
        return _text(self.lib.nvmlSystemGetDriverVersion())

    def gpus(self) -> list[Gpu]:
        """The leasable devices in NVML order, MIG instances in place of a GPU in MIG mode."""
        lib, found = self.lib, []
        for index in range(lib.nvmlDeviceGetCount()):
            handle = lib.nvmlDeviceGetHandleByIndex(index)
            bus_id = _text(lib.nvmlDeviceGetPciInfo(handle).busId)
            instances = self._mig_handles(handle) if _mig_enabled(lib, handle) else []
            for position, mig in enumerate(instances):
                found.append(self._gpu(mig, index, bus_id, position))
            if not instances:
                found.append(self._gpu(handle, index, bus_id, None))
        return found

    def topology(self, a: Gpu, b: Gpu) -> str:
        """How two GPUs connect (nvidia-smi topo's PIX, PXB, PHB, NODE, SYS); "same GPU" for MIG siblings."""
        if a.index == b.index:
            return "same GPU"
        level = self.lib.nvmlDeviceGetTopologyCommonAncestor(self._handles[a.uuid], self._handles[b.uuid])
        return TOPOLOGY.get(level, f"level {level}")

    def read(self, gpu: Gpu) -> Reading:
        """A reading of the physical GPU behind `gpu` (NVML reports utilisation, power and clocks per GPU)."""
        lib = self.lib
        handle = lib.nvmlDeviceGetHandleByIndex(gpu.index)
        utilization = lib.nvmlDeviceGetUtilizationRates(handle)
        reasons = lib.nvmlDeviceGetCurrentClocksEventReasons(handle)
        return Reading(
            utilization=float(utilization.gpu),
            memory_used_gb=lib.nvmlDeviceGetMemoryInfo(handle).used / 2**30,
            power_w=lib.nvmlDeviceGetPowerUsage(handle) / 1000,
            temperature_c=float(lib.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
            sm_clock_mhz=float(lib.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)),
            throttles=tuple(name for bit, name in THROTTLES.items() if reasons & bit),
        )

    def close(self) -> None:
        self.lib.nvmlShutdown()

    def _gpu(self, handle: Any, index: int, bus_id: str, mig: int | None) -> Gpu:
        lib = self.lib
        uuid = _text(lib.nvmlDeviceGetUUID(handle))
        self._handles[uuid] = handle
        memory = lib.nvmlDeviceGetMemoryInfo(handle).total / 2**30
        return Gpu(index, uuid, _text(lib.nvmlDeviceGetName(handle)), round(memory, 1), bus_id, mig)

    def _mig_handles(self, handle: Any) -> list[Any]:
        found = []
        for slot in range(self.lib.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                found.append(self.lib.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot))
            except pynvml.NVMLError_NotFound:  # an empty slot
                continue
        return found


def open_nvml(replay: Path | None = None) -> Nvml | str:
    """NVML initialised (the replay file's when given), or why there is none, e.g. no NVIDIA library."""
    if replay is not None:
        lib: Any = Replay(replay)
        source = f"replayed from {replay} ({lib.provenance})"
    else:
        lib, source = pynvml, "NVML"
    try:
        lib.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"no NVIDIA library ({exc})"
    return Nvml(lib, source)


def visible(gpus: list[Gpu], setting: str | None) -> list[Gpu]:
    """The devices a CUDA_VISIBLE_DEVICES value leaves (indexes or UUIDs, in its order); all when it is unset."""
    if setting is None:
        return gpus
    by_key = {**{str(g.index): g for g in gpus if g.mig is None}, **{g.uuid: g for g in gpus}}
    return [by_key[key] for key in (k.strip() for k in setting.split(",")) if key in by_key]


def inventory(replay: Path | None) -> tuple[Nvml | None, list[Gpu], str]:
    """NVML (left open, for telemetry), this host's leasable devices (those CUDA_VISIBLE_DEVICES leaves) and where
    they come from; or no NVML, no devices and why there are none."""
    nvml = open_nvml(replay)
    if isinstance(nvml, str):
        return None, [], nvml
    return nvml, visible(nvml.gpus(), os.environ.get("CUDA_VISIBLE_DEVICES")), nvml.source


class Replay:
    """NVML's answers from a JSON file, under the pynvml names and types the real library has (structs as objects
    with the same fields, pynvml's own errors). Each device's `readings` are handed out in turn, one per
    nvmlDeviceGetUtilizationRates call (which `Nvml.read` makes first), cycling, so a sampler sees a time series."""

    def __init__(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.provenance: str = data["provenance"]
            self._driver: str = data["driver"]
            self._devices: list[dict[str, Any]] = data["devices"]
            self._topology: list[list[int]] = data.get("topology", [])
        except (OSError, ValueError, KeyError) as exc:
            raise ReplayError(f"{path}: not an NVML replay file ({exc!r}); see fixtures/nvml/README.md") from None
        self._turn = [0] * len(self._devices)

    def nvmlInit(self) -> None:
        return None

    def nvmlShutdown(self) -> None:
        return None

    def nvmlSystemGetDriverVersion(self) -> str:
        return self._driver

    def nvmlDeviceGetCount(self) -> int:
        return len(self._devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> tuple[int, int | None]:
        if not 0 <= index < len(self._devices):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return (index, None)

    def nvmlDeviceGetMigMode(self, handle: tuple[int, int | None]) -> list[int]:
        mode = 1 if self._device(handle).get("mig") else 0
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: tuple[int, int | None]) -> int:
        return 7 if self._device(handle).get("mig") else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: tuple[int, int | None], slot: int) -> tuple[int, int]:
        if slot >= len(self._device(handle).get("mig", [])):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return (handle[0], slot)

    def nvmlDeviceGetName(self, handle: tuple[int, int | None]) -> str:
        return self._entry(handle)["name"]

    def nvmlDeviceGetUUID(self, handle: tuple[int, int | None]) -> str:
        return self._entry(handle)["uuid"]

    def nvmlDeviceGetMemoryInfo(self, handle: tuple[int, int | None]) -> SimpleNamespace:
        total = self._entry(handle)["memory_total"]
        used = self._reading(handle, advance=False)["memory_used"] if handle[1] is None else 0
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetPciInfo(self, handle: tuple[int, int | None]) -> SimpleNamespace:
        return SimpleNamespace(busId=self._device(handle)["bus_id"])

    def nvmlDeviceGetTopologyCommonAncestor(self, a: tuple[int, int | None], b: tuple[int, int | None]) -> int:
        return self._topology[a[0]][b[0]]

    def nvmlDeviceGetUtilizationRates(self, handle: tuple[int, int | None]) -> SimpleNamespace:
        reading = self._reading(handle, advance=True)
        return SimpleNamespace(gpu=reading["gpu"], memory=reading["memory"])

    def nvmlDeviceGetPowerUsage(self, handle: tuple[int, int | None]) -> int:
        return self._reading(handle, advance=False)["power_mw"]

    def nvmlDeviceGetTemperature(self, handle: tuple[int, int | None], sensor: int) -> int:
        return self._reading(handle, advance=False)["temperature"]

    def nvmlDeviceGetClockInfo(self, handle: tuple[int, int | None], clock: int) -> int:
        return self._reading(handle, advance=False)["sm_clock"]

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: tuple[int, int | None]) -> int:
        return self._reading(handle, advance=False)["clocks_event_reasons"]

    def _device(self, handle: tuple[int, int | None]) -> dict[str, Any]:
        return self._devices[handle[0]]

    def _entry(self, handle: tuple[int, int | None]) -> dict[str, Any]:
        device = self._device(handle)
        return device if handle[1] is None else device["mig"][handle[1]]

    def _reading(self, handle: tuple[int, int | None], advance: bool) -> dict[str, Any]:
        readings = self._device(handle)["readings"]
        if advance:
            self._turn[handle[0]] += 1
        return readings[(self._turn[handle[0]] - 1) % len(readings)]


class ReplayError(Exception):
    """A replay file that cannot be used; the message names it."""


def _mig_enabled(lib: Any, handle: Any) -> bool:
    try:
        return lib.nvmlDeviceGetMigMode(handle)[0] == pynvml.NVML_DEVICE_MIG_ENABLE
    except pynvml.NVMLError:  # GPUs without MIG support answer NOT_SUPPORTED
        return False


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
