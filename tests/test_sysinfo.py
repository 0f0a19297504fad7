"""System information: every field present as a string on this machine, sysfs choices parsed, and a missing NVIDIA
library or host file reported as such rather than failing the run."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    assert info["gpus"].startswith("none (NVML: ") and info["driver"] == "none"


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
    info = sysinfo.collect()
    assert info["cpu"] == "AMD EPYC 7B13 64-Core Processor" and info["memory_gb"] == "24.0"
    assert info["transparent_hugepages"] == "always"
    assert info["cpu_governor"] == f"unknown (no {tmp_path / 'absent'})"
