"""Leasing GPUs to tests so that no two tests, in any worker or any pytest session on the host, use one device at once.

A lease holds an exclusive `flock` on one file per device (named by its UUID) in a host-wide folder. The kernel drops
the lock when its process ends, so a worker that is killed mid-test releases its devices without anyone cleaning up.
Locks are only ever taken without blocking and all given back when a lease cannot be completed, so two tests that
each need two devices can never hold one each and wait for ever.

Each xdist worker owns some devices (its "home", chosen from the worker index, see `home_devices`): it sees only those
(CUDA_VISIBLE_DEVICES is set when the worker starts, before CUDA is initialised, which MIG instances need), and its
in-process tests lease among them; processes a test launches (containers, torchrun) may lease any device.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .nvml import Gpu


@dataclass(frozen=True)
class Lease:
    """Devices a test holds; none means it runs on the CPU, and `note` says why."""

    devices: tuple[Gpu, ...]
    note: str
    waited_s: float = 0.0

    @property
    def env(self) -> dict[str, str]:
        """The environment that confines a launched process to the leased devices (none: no CUDA device at all)."""
        return {"CUDA_VISIBLE_DEVICES": ",".join(g.uuid for g in self.devices)}

    def describe(self) -> str:
        return ", ".join(g.label for g in self.devices) or self.note


class LeaseTimeout(Exception):
    """The devices a test needs stayed busy for the whole wait; the message says who held them."""


def home_devices(gpus: Sequence[Gpu], worker: int, workers: int) -> list[Gpu]:
    """Worker `worker` of `workers`' own devices: every `workers`-th one from its index, so N workers on N GPUs get one
    each and N workers on 2N GPUs two each; with fewer devices than workers, workers take turns on device
    `worker % len(gpus)` (the locks keep them apart)."""
    if not gpus:
        return []
    if len(gpus) < workers:
        return [gpus[worker % len(gpus)]]
    return list(gpus[worker % workers :: workers])


@dataclass
class Leaser:
    """Leases devices out of `gpus` to one process's tests, under `lock_dir`."""

    gpus: list[Gpu]
    lock_dir: Path
    holder: str  #: who this process is, written into each lock file for others' messages, e.g. "gw1 pid 4242"
    poll_s: float = 0.2
    _held: dict[str, IO[str]] = field(default_factory=dict)

    @contextlib.contextmanager
    def lease(self, count: int, test: str, timeout_s: float, among: Sequence[Gpu] | None = None) -> Iterator[Lease]:
        """Hold `count` devices (out of `among`, default all) for the block; waits up to `timeout_s` for busy ones."""
        candidates = list(self.gpus if among is None else among)
        if count > len(candidates):
            raise ValueError(f"needs {count} device(s); {len(candidates)} can be leased here")
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        while True:
            taken = self._try(candidates, count, test)
            if taken:
                break
            if time.monotonic() - start > timeout_s:
                raise LeaseTimeout(
                    f"waited {timeout_s:g} s for {count} free device(s) of {len(candidates)}; "
                    f"held: {'; '.join(self.holders(candidates)) or 'by no one now (try again)'}"
                )
            time.sleep(self.poll_s)
        try:
            yield Lease(tuple(taken), "", time.monotonic() - start)
        finally:
            for gpu in taken:
                self._release(gpu)

    def holders(self, gpus: Sequence[Gpu]) -> list[str]:
        """Who holds each of `gpus` now, as their lock files say."""
        found = []
        for gpu in gpus:
            with contextlib.suppress(OSError):
                text = self._path(gpu).read_text(encoding="utf-8").strip()
                if text and not self._free(gpu):
                    found.append(f"{gpu.label} by {text}")
        return found

    def _try(self, candidates: list[Gpu], count: int, test: str) -> list[Gpu]:
        taken: list[Gpu] = []
        for gpu in candidates:
            if self._lock(gpu, test):
                taken.append(gpu)
                if len(taken) == count:
                    return taken
        for gpu in taken:
            self._release(gpu)
        return []

    def _lock(self, gpu: Gpu, test: str) -> bool:
        handle = open(self._path(gpu), "a+", encoding="utf-8")  # noqa: SIM115  (kept open while the lock is held)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f"{self.holder}, {test}\n")
        handle.flush()
        self._held[gpu.uuid] = handle
        return True

    def _free(self, gpu: Gpu) -> bool:
        with open(self._path(gpu), "a", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

    def _release(self, gpu: Gpu) -> None:
        handle = self._held.pop(gpu.uuid)
        handle.truncate(0)
        handle.close()  # closing drops the flock

    def _path(self, gpu: Gpu) -> Path:
        return self.lock_dir / f"{gpu.uuid}.lock"


def default_lock_dir() -> Path:
    """Host-wide, so that separate pytest sessions on one machine keep apart too."""
    return Path(os.environ.get("TMPDIR", "/tmp")) / "pytest-mlperf-gpu-locks"
