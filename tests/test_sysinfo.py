"""System information: every field present as a string on this machine, sysfs choices parsed, and a missing NVIDIA
library or host file reported as such rather than failing the run."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO

from pytest_mlperf.resources import sysinfo


def test_collect_gives_every_field_as_text() -> None:
    info = sysinfo.collect()
    assert list(info) == list(sysinfo.LABELS)
    assert all(isinstance(v, str) and v for v in info.values())
    assert info["cuda"].startswith("none") or info["cuda"][0].isdigit()
    assert float(info["memory_gb"]) > 0 and int(info["cpu_cores"]) >= 1


def test_no_nvidia_library_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    pynvml = pytest.importorskip("pynvml")

    def missing() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", missing)
    info = sysinfo.collect()
    assert info["gpus"].startswith("none (no NVIDIA library (") and info["driver"] == "none"


def test_gpus_from_a_replay() -> None:
    """NVML answers for a 2-GPU machine with one GPU in MIG mode, written from NVML's documentation (not recorded)."""
    info = sysinfo.collect(REPO / "fixtures" / "nvml" / "a100-mig.json")
    assert info["gpus"] == "2x NVIDIA A100-SXM4-80GB MIG 3g.40gb, 1x NVIDIA A100-SXM4-80GB"
    assert info["gpu_devices"].startswith("GPU 0 MIG 0 (NVIDIA A100-SXM4-80GB MIG 3g.40gb, MIG-1a2b")
    assert info["gpu_topology"] == "GPU 0-1: PXB (several PCIe switches)" and info["driver"] == "535.129.03"


def test_host_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sysinfo.selected("always [madvise] never") == "madvise"
    assert sysinfo.selected("performance") == "performance"
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n")
    (tmp_path / "meminfo").write_text("MemTotal:       25165824 kB\nMemFree:  1 kB\n")
    (tmp_path / "thp").write_text("[always] madvise never\n")
    monkeypatch.setattr(sysinfo, "CPUINFO", tmp_path / "cpuinfo")
    monkeypatch.setattr(sysinfo, "MEMINFO", tmp_path / "meminfo")
    monkeypatch.setattr(sysinfo, "HUGEPAGES", tmp_path / "thp")
    monkeypatch.setattr(sysinfo, "GOVERNOR", tmp_path / "absent")
    podman = 'engine="podman-4.3.1"\nname="x"\nimage="localhost/mlperf:1"\nimageid="ab12"\n'
    (tmp_path / "containerenv").write_text(podman)
    monkeypatch.setattr(sysinfo, "CONTAINERENV", tmp_path / "containerenv")
    info = sysinfo.collect()
    assert info["container"] == "localhost/mlperf:1 (ab12)"
    monkeypatch.setattr(sysinfo, "CONTAINERENV", tmp_path / "absent")
    monkeypatch.setattr(sysinfo, "DOCKERENV", tmp_path / "absent")
    assert sysinfo.collect()["container"] == "none (on the host)"
    info = sysinfo.collect()
    assert info["cpu"] == "AMD EPYC 7B13 64-Core Processor" and info["memory_gb"] == "24.0"
    assert info["transparent_hugepages"] == "always"
    assert info["cpu_governor"] == f"unknown (no {tmp_path / 'absent'})"
