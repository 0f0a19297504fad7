"""GPU inventory, leasing and CPU slices. The GPUs are simulated: NVML's answers for a 2-GPU A100 machine (and one in
MIG mode), written by hand from NVML's documentation and replayed behind the real interface (fixtures/nvml/README.md);
they were not recorded from hardware. The locks, the xdist workers and the killed worker are real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import REPO, Project, system

from pytest_mlperf.resources import slices
from pytest_mlperf.resources.leasing import Leaser, LeaseTimeout, home_devices
from pytest_mlperf.resources.nvml import Gpu, inventory, open_nvml, visible

TWO = REPO / "fixtures" / "nvml" / "2x-a100.json"
MIG = REPO / "fixtures" / "nvml" / "a100-mig.json"
A100 = "NVIDIA A100-SXM4-80GB"


def gpus(n: int) -> list[Gpu]:
    return [Gpu(i, f"GPU-{i}", A100, 80.0, f"0000:{i:02x}:00.0") for i in range(n)]


def test_replayed_inventory_topology_and_readings() -> None:
    nvml = open_nvml(TWO)
    assert not isinstance(nvml, str)
    found = nvml.gpus()
    assert [(g.index, g.name, g.memory_gb, g.mig) for g in found] == [(0, A100, 80.0, None), (1, A100, 80.0, None)]
    assert nvml.driver() == "535.129.03" and "NOT recorded from hardware" in nvml.source
    assert nvml.topology(found[0], found[1]).startswith("PXB")
    busy, idle = nvml.read(found[0]), nvml.read(found[1])
    assert (busy.utilization, busy.power_w, busy.sm_clock_mhz, busy.throttles) == (97.0, 342.1, 1410.0, ())
    assert idle.utilization == 0.0 and idle.memory_used_gb == pytest.approx(0.5)
    assert nvml.read(found[0]).utilization == 98.0  # the next reading of the series


def test_mig_instances_replace_their_gpu() -> None:
    _, found, source = inventory(MIG)
    assert [(g.index, g.mig) for g in found] == [(0, 0), (0, 1), (1, None)]
    assert found[0].uuid.startswith("MIG-") and found[0].name.endswith("MIG 3g.40gb") and found[0].memory_gb == 39.2
    assert "replayed from" in source
    nvml = open_nvml(MIG)
    assert not isinstance(nvml, str)
    instances = nvml.gpus()
    assert nvml.topology(instances[0], instances[1]) == "same GPU"


def test_cuda_visible_devices_restricts_and_orders(monkeypatch: pytest.MonkeyPatch) -> None:
    found = gpus(4)
    assert visible(found, None) == found
    assert visible(found, "2,0") == [found[2], found[0]]
    assert visible(found, "GPU-3, 9") == [found[3]]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert [g.index for g in inventory(TWO)[1]] == [1]


def test_no_nvidia_library_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import pynvml

    def missing() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", missing)
    nvml, found, reason = inventory(None)
    assert nvml is None and found == [] and reason.startswith("no NVIDIA library (")


def test_home_devices_from_the_worker_index() -> None:
    eight = gpus(8)
    assert [[g.index for g in home_devices(eight, w, 8)] for w in range(8)] == [[i] for i in range(8)]
    assert [g.index for g in home_devices(eight, 1, 4)] == [1, 5]
    assert [[g.index for g in home_devices(gpus(2), w, 3)] for w in range(3)] == [[0], [1], [0]]
    assert home_devices([], 0, 2) == []


def test_a_lease_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    two = gpus(2)
    mine, theirs = Leaser(two, tmp_path, "gw0 pid 1"), Leaser(two, tmp_path, "gw1 pid 2", poll_s=0.01)
    with mine.lease(1, "test_a", 1.0) as first:
        assert first.devices == (two[0],) and first.env == {"CUDA_VISIBLE_DEVICES": "GPU-0"}
        with theirs.lease(1, "test_b", 1.0) as second:
            assert second.devices == (two[1],)
            busy = r"waited 0.05 s for 1 free device\(s\) of 2; held: GPU 0 .*gw0"
            with pytest.raises(LeaseTimeout, match=busy), theirs.lease(1, "test_c", 0.05):
                pass
        with theirs.lease(1, "test_d", 1.0, among=[two[1]]) as third:
            assert third.devices == (two[1],)
    with theirs.lease(2, "test_e", 1.0) as both:  # all given back
        assert both.devices == tuple(two)
    with pytest.raises(ValueError, match=r"needs 3 device\(s\); 2 can be leased here"), mine.lease(3, "test_f", 1.0):
        pass


def test_a_killed_holder_releases_its_devices(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from pathlib import Path
            from pytest_mlperf.resources.leasing import Leaser
            from pytest_mlperf.resources.nvml import Gpu
            gpu = Gpu(0, "GPU-0", "x", 80.0, "0")
            with Leaser([gpu], Path({str(tmp_path)!r}), "doomed").lease(1, "t", 1.0):
                print("held", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    leaser = Leaser(gpus(1), tmp_path, "me", poll_s=0.01)
    with pytest.raises(LeaseTimeout, match="doomed"), leaser.lease(1, "t", 0.05):
        pass
    holder.kill()
    holder.wait()
    with leaser.lease(1, "t", 5.0) as lease:
        assert lease.devices == tuple(gpus(1))


def test_slices_cut_cores_and_memory() -> None:
    cpus = tuple(range(8))
    assert [slices.cut(w, 4, cpus, 64.0).cpuset for w in range(4)] == ["0-1", "2-3", "4-5", "6-7"]
    piece = slices.cut(1, 2, (0, 1, 2, 5, 6, 7), 24.0)
    assert piece.cpus == (5, 6, 7) and piece.cpuset == "5-7" and piece.memory_gb == 12.0
    assert piece.threads == 3
    assert slices.cut(2, 3, (0, 1), 3.0).cpus == (0,)  # more workers than cores: they share
    assert slices.Slice((0, 2, 3, 4, 9), 1.0, 1).cpuset == "0,2-4,9"


def test_a_slice_keeps_the_cores_other_work_leaves_free() -> None:
    piece = slices.Slice((0, 1, 2, 3), 8.0, 1)
    quiet = slices.keep_free(piece, {0: 0.97, 1: 0.95, 2: 0.99, 3: 0.9})
    assert quiet == piece  # nothing else runs: every core
    one_busy = slices.keep_free(piece, {0: 0.97, 1: 0.02, 2: 0.99, 3: 0.9})
    assert one_busy.cpus == (0, 1, 2, 3) and one_busy.busy == (1,) and one_busy.threads == 3
    assert "(3 threads, cpus 1 busy with other work)" in one_busy.describe()
    shared = slices.keep_free(piece, {0: 0.5, 1: 0.5, 2: 0.5, 3: 0.5})  # two cores' worth of other work, spread
    assert shared.threads == 2
    swamped = slices.keep_free(piece, {0: 0.1, 1: 0.3, 2: 0.0, 3: 0.05})
    assert swamped.threads == 1 and swamped.busy == (0, 2, 3)  # at least one thread
    assert slices.free(slices.Slice((0,), 1.0, 1)) == slices.Slice((0,), 1.0, 1)  # one core: nothing to leave out
    assert slices.free(piece, 0.0, Path("/nonexistent/stat")) == piece  # nothing counts the cores: all of them


@pytest.mark.skipif(not Path("/proc/stat").is_file() or (os.cpu_count() or 1) < 2, reason="needs Linux, 2 cores")
def test_a_core_kept_busy_by_another_program_is_measured_busy() -> None:
    """A busy loop pinned to one core, read from the kernel's counters: that core is not idle, whatever else runs."""
    core = (os.cpu_count() or 2) - 1
    spin = f"import os; os.sched_setaffinity(0, {{{core}}}); print('spinning', flush=True)\nwhile True: pass"
    with subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE, text=True) as hog:
        try:
            assert hog.stdout is not None and hog.stdout.readline().strip() == "spinning"
            idle = slices.idle_fractions((0, core), 0.5)
        finally:
            hog.kill()
    assert set(idle) == {0, core} and idle[core] < 0.2, idle
    assert slices.keep_free(slices.Slice((0, core), 1.0, 1), {**idle, 0: 1.0}).busy == (core,)


def test_applied_cores_last_as_long_as_the_test() -> None:
    threads, cpus = torch.get_num_threads(), slices.available_cpus()
    with slices.applied(slices.Slice(cpus[:1], 1.0, 1)):
        assert torch.get_num_threads() == 1 and slices.available_cpus() == cpus[:1]
    with slices.applied(slices.Slice(cpus, 1.0, 1, busy=cpus[1:])):  # other work on all but one core
        assert torch.get_num_threads() == 1 and slices.available_cpus() == cpus
    assert torch.get_num_threads() == threads and slices.available_cpus() == cpus


HOLD = """
import json, os, signal, time
from pathlib import Path
import pytest


@pytest.mark.mlperf("training", "toy")
@pytest.mark.parametrize("n", range(8))
def test_hold(gpus, n):
    start = time.time()
    time.sleep(0.3)
    log = Path(os.environ["LEASE_LOG"])
    with log.open("a") as f:
        f.write(json.dumps({"n": n, "uuids": [g.uuid for g in gpus.devices], "start": start, "end": time.time(),
                            "worker": os.environ.get("PYTEST_XDIST_WORKER"), "waited": gpus.waited_s}) + "\\n")
    if n == 0 and len(gpus.devices) == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies holding its GPU
"""


def test_xdist_workers_never_share_a_gpu_and_a_killed_worker_releases(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three workers on two simulated GPUs (two share one, so they contend); the first test kills its worker while it
    holds a GPU. Half the tests need both GPUs (system sim2x): each of those that starts after the kill could only
    lease the dead worker's GPU because the kernel dropped its lock (else it fails after the short --gpu-wait)."""
    project.add_system(system("sim2", kind="cuda", model=A100))
    project.add_system(system("sim2x", kind="cuda", model=A100, count=2))
    project.pytester.makepyfile(test_hold=HOLD)
    log = tmp_path / "leases.jsonl"
    monkeypatch.setenv("LEASE_LOG", str(log))
    result = project.run_subprocess(
        "test_hold.py", "--system=sim2,sim2x", f"--nvml-replay={TWO}", "--gpu-wait=20", "-n", "3",
        "-o", f"mlperf_gpu_locks={tmp_path / 'locks'}",
    )  # fmt: skip
    result.assert_outcomes(passed=15, failed=1)
    result.stdout.re_match_lines([r"worker 'gw\d' crashed while running 'test_hold.py::test_hold\[toy-fp32-sim2-0\]'"])
    leases = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(leases) == 16
    assert sorted(len(r["uuids"]) for r in leases) == [1] * 8 + [2] * 8
    for a in leases:
        for b in leases:
            if a is not b and set(a["uuids"]) & set(b["uuids"]):
                assert a["end"] <= b["start"] or b["end"] <= a["start"], (a, b)
    assert any(r["waited"] > 0.1 for r in leases)  # workers took turns
    killed = next(r for r in leases if r["n"] == 0 and len(r["uuids"]) == 1)
    after = [r for r in leases if killed["uuids"][0] in r["uuids"] and r["start"] > killed["end"]]
    assert after, "the dead worker's GPU was leased again"


def test_what_a_test_is_given(project: Project, tmp_path: Path) -> None:
    """A CPU system gets the CPU and says why; a GPU system on the simulated machine leases a GPU (recorded in the
    results) and then skips, as this torch has no CUDA; too many devices or MIG slices for a whole GPU skip."""
    project.add_system(system("toy"))
    project.add_system(system("sim1", kind="cuda", model=A100))
    project.add_system(system("sim4", kind="cuda", model=A100, count=4))
    project.add_system({**system("mig", kind="cuda", model=f"{A100} MIG 3g.40gb"), "accelerator": {
        "kind": "cuda", "model": f"{A100} MIG 3g.40gb", "count": 1, "memory_gb": 40.0}})  # fmt: skip
    locks = f"mlperf_gpu_locks={tmp_path / 'locks'}"
    result = project.run("--system=toy,sim1,sim4", f"--nvml-replay={TWO}", "-o", locks, "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines([
        "*system sim1 leased GPU 0 (NVIDIA A100-SXM4-80GB, GPU-5d1a5f4c-*), but this torch build has no CUDA*",
        f"*system sim4 needs 4x {A100} (8 GB); this host has 2: GPU 0 *",
    ])  # fmt: skip
    records = {r["system"]: r for r in project.results()}
    assert records["toy"]["gpus"] == "the CPU: system toy runs on the CPU"
    assert records["sim1"]["gpus"].startswith("GPU 0 (") and records["sim1"]["outcome"] == "skipped"
    assert records["toy"]["cpus"] and records["toy"]["memory_share_gb"] > 0
    info = json.loads((project.latest / "results.json").read_text())["run"]["system_info"]
    assert info["gpus"] == f"2x {A100}" and info["gpu_topology"].startswith("GPU 0-1: PXB")
    result = project.run("--system=mig,sim1", f"--nvml-replay={MIG}", "-o", locks, "-rs")
    result.stdout.fnmatch_lines(["*system mig leased GPU 0 MIG 0 (*MIG 3g.40gb, MIG-*", "*system sim1 leased GPU 1 *"])
    if inventory(None)[0] is None:
        project.run("--system=toy", "-o", locks)
        assert project.results()[0]["gpus"].startswith("the CPU: no NVIDIA library")
