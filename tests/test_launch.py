"""Tests on several devices: real torchrun launches of gloo DDP ranks on this machine's CPU (each rank a "device"),
scaling efficiency against one device, and a rank that dies, hangs or diverges failing its test with its log and
leaving no process behind."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, TOY_SUITE, Project, baseline, system

from pytest_mlperf.config.matrix import expand
from pytest_mlperf.config.schema import load_system
from pytest_mlperf.launch.slurm import srun_argv
from pytest_mlperf.launch.slurm_ranks import slurm_job
from pytest_mlperf.resources.leasing import Lease
from pytest_mlperf.resources.nvml import Gpu
from pytest_mlperf.resources.slices import Slice
from pytest_mlperf.results.record import Record
from pytest_mlperf.results.scaling import annotate


def toy2(name: str = "toy2", preset: str = "cpu", timeout_s: float = 120, **entry: object) -> dict:
    toy = system(name, count=2, preset=preset, **entry)
    return {**toy, "launch": {"launcher": "torchrun", "timeout_s": timeout_s}}


def ranks_left(project: Project) -> list[str]:
    """Our entry point's processes still running for this project's jobs."""
    found = subprocess.run(["pgrep", "-af", "pytest_mlperf.run.job"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if str(project.path) in line]


def test_two_gloo_ranks_train_data_parallel_and_report_scaling(project: Project) -> None:
    """One device and two ranks of the toy in one session: the two-rank result's scaling efficiency is taken against
    the one-device result; a second two-rank system with an unreachable baseline fails on it (a system's baseline is
    its whole throughput)."""
    project.add_system(system("toy"))
    swept = toy2()
    swept["launch"] |= {"env": {"NCCL_DEBUG": "WARN"}, "sweep": {"NCCL_ALGO": ["Ring"]}}
    project.add_system(swept)
    project.add_system(toy2("toy2b", precisions={"fp32": {"batch_size": 4, "baseline": baseline(1e12)}}))
    result = project.run_subprocess("--system=toy,toy2,toy2b", "-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*test_train[[]toy-fp32-toy2-torchrun-NCCL_ALGO=Ring[]] PASSED*",
        "*toy-fp32-toy2b-torchrun on cpu*is below the target*",
    ])  # fmt: skip
    records = {r["id"]: r for r in project.results()}
    one, two = records["toy-fp32-toy"], records["toy-fp32-toy2-torchrun-NCCL_ALGO=Ring"]
    assert two["knobs"] == "NCCL_ALGO=Ring" and two["runner"] == "local"
    assert two["environment"]["NCCL_ALGO"] == "Ring" and two["environment"]["NCCL_DEBUG"] == "WARN"  # as rank 0 saw
    assert two["launcher"] == "torchrun" and two["devices"] == 2 and two["global_batch"] == 8
    assert len(two["rank_means"]) == 2 and two["per_device"] == pytest.approx(two["mean"] / 2)
    # a CPU system's device is its share of the cores: the one-device reference ran alone, on one rank's share
    assert two["scaling_efficiency"] == pytest.approx(two["mean"] / (2 * two["one_device"]))
    share = re.match(
        r"one device \((\d+) of the test's (\d+) cores\) in a fresh process in this test", two["scaling_reference"]
    )
    assert share, two["scaling_reference"]
    assert int(share[1]) == max(1, int(share[2]) // 2)  # one of 2 ranks' share of however many cores the host lends
    assert one["scaling_efficiency"] is None and (project.latest / "ranks" / two["id"] / "one-device").is_dir()
    assert two["quality_status"] == "reached" and records["toy-fp32-toy2b-torchrun"]["scaling_efficiency"]
    assert (project.latest / "ranks" / two["id"] / "torchrun.log").is_file()


NO_MODEL = """

class NoModel:  # a trainer with no `model` module, as an RL rollout might be
    items_per_step = 1


if "nomodel" not in known():
    register(Workload(
        name="nomodel", family="toys", task="training", unit="samples/s", description="no model",
        presets={"cpu": {}}, build=lambda setup: NoModel(),
        quality=Quality("MSE", target=0.5, max_steps=1, eval_every=1, higher_is_better=False),
    ))
"""


def test_ranks_that_die_hang_diverge_or_cannot_be_parallel_fail_clearly(project: Project) -> None:
    """In one session: rank 1 killed mid-run, rank 1 hung past the launch timeout, a NaN loss in every rank, a workload
    with no model to wrap: each test fails saying so, with the failing rank's log, and no rank process is left."""
    project.pytester.makeconftest(project.path.joinpath("conftest.py").read_text() + NO_MODEL)
    project.add_system(toy2("dies", "die"))
    project.add_system(toy2("hangs", "hang", timeout_s=10))
    project.add_system(toy2("diverges", "nan"))
    nomodel = toy2("nomodel")
    nomodel["benchmarks"] = {"nomodel": {"preset": "cpu", "precisions": {"fp32": {"batch_size": 2}}}}
    project.add_system(nomodel)
    project.pytester.makepyfile(test_nomodel=TOY_SUITE.replace('"toy"', '"nomodel"'))
    result = project.run_subprocess("--system=dies,hangs,diverges,nomodel")
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines([
        "*toy-fp32-dies-torchrun: torchrun exited with code 1; rank 1 failed; its last lines:*",
        "pytest-mlperf job: toy fp32 rank 1 of 2 on cpu, pid *", "torchrun's account:", "*rank * 1 (local_rank: 1)",
        "*exitcode * -9 *",
    ])  # fmt: skip
    result.stdout.fnmatch_lines(["*its 2 ranks were still running after 10 s and were stopped; rank 0's last lines:*"])
    result.stdout.fnmatch_lines(["rank 0: toy-fp32-diverges-torchrun: loss became nan at step 6 *", "rank 1: *"])
    result.stdout.fnmatch_lines(["*nomodel-fp32-nomodel-torchrun: cannot train data-parallel: NoModel has no `model`*"])
    assert ranks_left(project) == []


def collected(*args: str) -> str:
    command = [sys.executable, "-m", "pytest", "suites", "--collect-only", "-q", "-p", "no:cacheprovider", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout


def test_multi_device_ids_name_their_launcher() -> None:
    listed = collected("-m", "resnet", "--system=8xa100")
    assert "suites/test_training.py::test_train[resnet50-amp-8xa100-torchrun]" in listed
    slurm = collected("-m", "resnet", "--system=8xa100,a100", "--launcher=slurm")
    assert "test_train[resnet50-amp-8xa100-slurm]" in slurm and "test_train[resnet50-amp-a100]" in slurm


def test_swept_knobs_are_test_parameters(project: Project) -> None:
    swept = toy2()
    swept["launch"]["sweep"] = {"NCCL_ALGO": ["Tree", "Ring"], "NCCL_P2P_LEVEL": ["NVL", "SYS"]}
    project.add_system(swept)
    result = project.run("--system=toy2", "--collect-only", "-q")
    result.stdout.fnmatch_lines([
        f"*test_train[[]toy-fp32-toy2-torchrun-NCCL_ALGO={algo},NCCL_P2P_LEVEL={level}[]]"
        for algo in ("Tree", "Ring") for level in ("NVL", "SYS")
    ])  # fmt: skip


def test_scaling_against_a_one_device_case_of_the_run_never_a_file() -> None:
    """A GPU test on several devices whose one-device case ran in the same session names it; the run's end takes its
    figure (a published baseline is never the reference: it was measured on another machine)."""
    eight = load_system(REPO / "systems" / "8xa100.yaml")
    s = eight.settings("resnet50", "amp")

    def result(name: str, devices: int, mean: float | None, reference: str = "") -> Record:
        return Record(
            test="", id=name, benchmark="resnet50", family="resnet", task="training", precision="amp",
            system="8xa100", preset=s.preset, device="", devices=devices, batch_size=s.batch_size,
            batch_per=s.batch_per, global_batch=s.global_batch, warmup=0, repeat=1, number=1, unit="img/s",
            mean=mean, scaling_reference=reference,
        )  # fmt: skip

    one = result("resnet50-amp-a100", 1, 1000.0)
    eight_gpus = result("resnet50-amp-8xa100-torchrun", 8, 7200.0, "resnet50-amp-a100 in this run")
    orphan = result("resnet50-amp-8xh100-torchrun", 8, 7200.0, "resnet50-amp-h100 in this run")
    annotate([one, eight_gpus, orphan])
    assert eight_gpus.one_device == 1000.0 and eight_gpus.scaling_efficiency == pytest.approx(0.9)
    assert orphan.scaling_efficiency is None and orphan.scaling_reference.endswith("which measured nothing")


def test_a_gpu_systems_slurm_job(tmp_path: Path) -> None:
    """The srun command an 8-GPU system's ranks would be submitted with (not run: no GPU cluster here)."""
    spec = yaml.safe_load((REPO / "systems" / "8xa100.yaml").read_text())
    slurm = {"nodes": 2, "partition": "gpu", "time_limit_s": 600, "container_image": "nvidia/pytorch:22.10-py3"}
    spec["launch"] = {"launcher": "slurm", "env": {"NCCL_IB_DISABLE": "1"}, "slurm": slurm}
    (tmp_path / "8xa100.yaml").write_text(yaml.safe_dump(spec))
    system = load_system(tmp_path / "8xa100.yaml")
    (case,) = [c for c in expand("training", ["resnet50"], [system]) if c.precision == "amp"]
    gpus = tuple(Gpu(i, f"GPU-{i}", system.spec.accelerator.model, 80.0, str(i)) for i in range(8))
    job = slurm_job(case, Lease(gpus, ""), Slice((0, 1), 64.0, 1), tmp_path / "out", None, False)
    argv = srun_argv(job, "x")
    assert case.id == "resnet50-amp-8xa100-slurm" and job.nodes == 2 and job.tasks_per_node == 4
    for expected in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-task=1", "--partition=gpu"):
        assert expected in argv
    assert "--container-image=nvidia/pytorch:22.10-py3" in argv and job.env["NCCL_IB_DISABLE"] == "1"
    assert json.loads((tmp_path / "out" / "job.json").read_text())["device"] == "cuda"
