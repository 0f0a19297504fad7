"""The Slurm launcher against a real Slurm cluster: two fake nodes on this machine (`SlurmCluster`).

Slurm is a test requirement (`apt-get install -y slurm-wlm munge`, as root): without it these tests are skipped on a
workstation and fail under CI (env CI set), so that a CI machine without it cannot pass silently.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Project, system

from pytest_mlperf.launch.slurm import (
    SlurmCluster,
    SlurmError,
    SlurmJob,
    SlurmJobFailed,
    SlurmResult,
    active_jobs,
    first_node,
    rank_env,
    slurm_available,
    srun_argv,
    submit_and_wait,
)

PRINT_RANK = (
    "import json, os\n"
    "from pytest_mlperf.launch.slurm import rank_env\n"
    "print('RANK_ENV', json.dumps({**rank_env(), 'NODE': os.environ['SLURMD_NODENAME'],"
    " 'NODEID': os.environ['SLURM_NODEID']}))\n"
)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A real 2-node Slurm cluster (munged, slurmctld, two slurmds) for the session."""
    reason = slurm_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the Slurm tests need Slurm under CI: {reason}")
        pytest.skip(reason)
    with SlurmCluster(tmp_path_factory.mktemp("slurm"), nodes=2) as cluster:
        yield cluster


def job(tmp_path: Path, command: list[str], **kwargs: Any) -> SlurmJob:
    return SlurmJob(command=command, workdir=tmp_path / "logs", time_limit_s=60, **kwargs)


def rank_envs(result: SlurmResult) -> dict[int, dict[str, str]]:
    """Each task's RANK_ENV line, by task id."""
    found = {}
    for task in result.task_logs:
        line = next(line for line in result.log(task).splitlines() if line.startswith("RANK_ENV "))
        found[task] = json.loads(line.removeprefix("RANK_ENV "))
    return found


def test_two_tasks_on_one_node(slurm: SlurmCluster, tmp_path: Path) -> None:
    result = submit_and_wait(job(tmp_path, [sys.executable, "-c", PRINT_RANK], tasks_per_node=2), slurm.env)
    assert result.state == "COMPLETED" and result.exit_code == 0
    envs = rank_envs(result)
    assert sorted(envs) == [0, 1]
    for task, env in envs.items():
        assert env["RANK"] == env["LOCAL_RANK"] == str(task)
        assert env["WORLD_SIZE"] == "2" and env["MASTER_ADDR"] == "127.0.0.1"
        assert env["NODE"] == envs[0]["NODE"]
    assert envs[0]["MASTER_PORT"] == str(10000 + result.job_id % 20000)
    assert not active_jobs(slurm.env, result.name)


def test_one_task_on_each_of_two_nodes(slurm: SlurmCluster, tmp_path: Path) -> None:
    result = submit_and_wait(job(tmp_path, [sys.executable, "-c", PRINT_RANK], nodes=2), slurm.env)
    envs = rank_envs(result)
    assert {task: (env["NODEID"], env["NODE"]) for task, env in envs.items()} == {0: ("0", "n1"), 1: ("1", "n2")}
    assert [env["LOCAL_RANK"] for env in envs.values()] == ["0", "0"]
    assert [env["RANK"] for env in envs.values()] == ["0", "1"]


def test_gloo_all_reduce_across_two_nodes(slurm: SlurmCluster, tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import datetime, os
        import torch
        import torch.distributed as dist
        from pytest_mlperf.launch.slurm import rank_env

        os.environ.update(rank_env())
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
        total = torch.tensor([float(dist.get_rank() + 1)])
        dist.all_reduce(total)
        print("SUM", total.item(), dist.get_rank(), dist.get_world_size(), os.environ["SLURMD_NODENAME"])
        dist.destroy_process_group()
        """
    )
    spec = job(tmp_path, [sys.executable, "-c", script], nodes=2, env={"OMP_NUM_THREADS": "1"})
    result = submit_and_wait(spec, slurm.env)
    assert result.log(0).split() == ["SUM", "3.0", "0", "2", "n1"]
    assert result.log(1).split() == ["SUM", "3.0", "1", "2", "n2"]


def test_a_failing_task_raises_with_its_log_tail(slurm: SlurmCluster, tmp_path: Path) -> None:
    # task 1 fails; task 0 would run on, and is ended by --kill-on-bad-exit
    script = (
        "import os, sys, time\n"
        "rank = int(os.environ['SLURM_PROCID'])\n"
        "print(f'task {rank} says hello')\n"
        "sys.exit(3) if rank == 1 else time.sleep(60)\n"
    )
    with pytest.raises(SlurmJobFailed) as failed:
        submit_and_wait(job(tmp_path, [sys.executable, "-c", script], tasks_per_node=2), slurm.env)
    error = failed.value
    assert error.state == "FAILED" and error.exit_code == 3 and error.task == 1
    message = str(error)
    assert f"Slurm job {error.job_id} " in message and "FAILED, exit code 3" in message
    assert "task 1 says hello" in message and "task 0 says hello" not in message
    assert not active_jobs(slurm.env, error.result.name)


def test_a_job_past_its_time_limit_is_cancelled(slurm: SlurmCluster, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(SlurmJobFailed, match=r"TIMEOUT.*time limit of 3 s; cancelled") as failed:
        submit_and_wait(SlurmJob(["sleep", "120"], workdir=tmp_path, time_limit_s=3, name="sleepy"), slurm.env)
    assert time.monotonic() - started < 20
    assert failed.value.state == "TIMEOUT" and failed.value.job_id is not None
    assert not active_jobs(slurm.env, failed.value.result.name)


def test_ctrl_c_cancels_the_job(slurm: SlurmCluster, tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from pytest_mlperf.launch.slurm import SlurmJob, submit_and_wait

        spec = SlurmJob(["sleep", "120"], workdir=Path(sys.argv[2]), name=sys.argv[3])
        try:
            submit_and_wait(spec, json.loads(sys.argv[1]))
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
        """
    )
    name = f"ctrlc{os.getpid()}"
    argv = [sys.executable, "-c", script, json.dumps(slurm.env), str(tmp_path), name]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while not (running := _jobs_named(slurm, name, "R")):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130 and "interrupted" in output, output
    assert not _jobs_named(slurm, name, "PD,R,CG,CF,S")
    assert len(running) == 1


def test_srun_argv_of_a_gpu_job_in_a_container(tmp_path: Path) -> None:
    spec = SlurmJob(
        command=["python", "train.py"],
        workdir=tmp_path,
        nodes=2,
        tasks_per_node=8,
        gpus_per_task=1,
        cpus_per_task=12,
        partition="gpu",
        time_limit_s=90,
        container_image="nvcr.io#nvidia/pytorch:24.05-py3",
        extra_args=["--exclusive"],
    )
    argv = srun_argv(spec, "bench-1")
    assert argv[-3:] == ["--exclusive", "python", "train.py"]
    for arg in ["--job-name=bench-1", "--nodes=2", "--ntasks=16", "--ntasks-per-node=8", "--gpus-per-task=1",
                "--cpus-per-task=12", "--partition=gpu", "--time=2", "--kill-on-bad-exit=1",
                f"--output={tmp_path}/%j-%t.out", "--container-image=nvcr.io#nvidia/pytorch:24.05-py3"]:  # fmt: skip
        assert arg in argv


def test_rank_env_outside_the_cluster() -> None:
    slurm_vars = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123456"}
    env = rank_env({**slurm_vars, "SLURM_JOB_NODELIST": "gpu[07-09,12],cpu1"})
    assert env == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu07", "MASTER_PORT": "13456"}
    assert first_node("rack[2-3]-n[05,01]") == "rack2-n05" and first_node("a,b[1-2]") == "a"
    with pytest.raises(SlurmError, match="SLURM_PROCID"):
        rank_env({})


def _jobs_named(cluster: SlurmCluster, prefix: str, states: str) -> list[str]:
    """Ids of the jobs whose name starts with `prefix`, in the given squeue states."""
    out = subprocess.run(
        ["squeue", "-h", f"--states={states}", "-o", "%i %j"],
        env={**os.environ, **cluster.env},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1].startswith(prefix)]


def test_a_case_trains_as_a_two_node_slurm_job(
    slurm: SlurmCluster, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The toy's two ranks as a Slurm job over the two fake nodes (one task each, gloo DDP across them), beside its
    one-device run: scaling efficiency against its own one-device reference, each node's task log naming its rank."""
    for name, value in slurm.env.items():
        monkeypatch.setenv(name, value)
    project.add_system(system("toy"))
    toy = system("toy2", count=2)
    toy["launch"] = {"launcher": "slurm", "slurm": {"nodes": 2, "partition": slurm.partition, "time_limit_s": 120}}
    project.add_system(toy)
    result = project.run_subprocess("--system=toy,toy2", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_train[[]toy-fp32-toy2-slurm[]] PASSED*"])
    records = {r["id"]: r for r in project.results()}
    two = records["toy-fp32-toy2-slurm"]
    assert two["launcher"] == "slurm" and len(two["rank_means"]) == 2 and two["quality_status"] == "reached"
    assert two["scaling_reference"].startswith("one device (") and two["scaling_efficiency"] > 0
    logs = " ".join(p.read_text() for p in (project.latest / "ranks" / "toy-fp32-toy2-slurm" / "tasks").glob("*.out"))
    assert "rank 0 of 2 on cpu of n1" in logs and "rank 1 of 2 on cpu of n2" in logs
