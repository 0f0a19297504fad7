"""The container runner against a real engine: podman's Docker-compatible API, started by the session fixture below.

Podman is a test requirement (`apt-get install -y podman runc busybox-static`): without it these tests are skipped
on a workstation and fail under CI (env CI set), so that a CI machine without it cannot pass silently.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.models.containers
import pytest
import requests

from pytest_mlperf.containers import (
    HOST_IMAGE,
    ContainerFailed,
    ContainerSpec,
    ContainerStartFailed,
    ContainerTimeout,
    EngineUnavailable,
    Mount,
    PodmanService,
    Runner,
    connect,
    host_image,
    host_mounts,
    remove_labelled,
)
from pytest_mlperf.containers.images import LOCAL
from pytest_mlperf.containers.runner import LABEL, SESSION_LABEL, create_kwargs

#: this test session's label value: podman's storage is shared with anyone else on the machine, so the fixtures
#: clean up only what carries it
SESSION = f"tests-{os.getpid()}-{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def engine(podman: PodmanService) -> Iterator[docker.DockerClient]:
    client = connect(podman.base_url)
    try:
        yield client
    finally:
        remove_labelled(client, SESSION)
        client.close()


@pytest.fixture(scope="session")
def image(engine: docker.DockerClient) -> str:
    return host_image(engine)


@pytest.fixture
def runner(engine: docker.DockerClient) -> Runner:
    return Runner(engine, SESSION)


def leftovers(client: docker.DockerClient) -> list[str]:
    """This session's containers in any state ("Created" included), asked of the engine directly."""
    return [c.name for c in client.containers.list(all=True, filters={"label": f"{SESSION_LABEL}={SESSION}"})]


SCRIPT = """
import json, os, resource, sys
import torch
import pytest_mlperf
x = torch.arange(6.0).reshape(2, 3)
print("torch", torch.__version__, flush=True)
print("a line on stderr", file=sys.stderr, flush=True)
json.dump({
    "greeting": os.environ["MLPERF_GREETING"],
    "token": os.environ.get("HF_TOKEN"),
    "sum": float((x @ x.T).sum()),
    "torch": torch.__version__,
    "package": pytest_mlperf.__file__,
    "cwd": os.getcwd(),
    "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
}, open("out.json", "w"))
"""


def test_host_python_runs_in_the_host_image(runner: Runner, image: str, tmp_path: Path) -> None:
    import torch

    import pytest_mlperf

    seen: list[str] = []
    spec = ContainerSpec(
        image=image,
        command=[sys.executable, "-c", SCRIPT],
        env={"MLPERF_GREETING": "hello from the host", "HF_TOKEN": "s3cret-value"},
        mounts=[*host_mounts(), Mount(tmp_path, "/results", read_only=False)],
        workdir="/results",
        ulimits={"nofile": (1024, 1024), "nproc": (32768, 32768)},  # podman: name both (see ContainerSpec)
        timeout_s=120,
    )
    run = runner.run(spec, on_line=seen.append)

    assert run.exit_code == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["greeting"] == "hello from the host"
    assert out["token"] == "s3cret-value"
    assert out["sum"] == 5 + 14 + 14 + 50  # x @ x.T = [[5, 14], [14, 50]]
    assert out["torch"] == torch.__version__
    assert out["package"] == pytest_mlperf.__file__  # the editable install resolved to the mounted source
    assert out["cwd"] == "/results"
    assert out["nofile"] == [1024, 1024]  # ulimits reach the container
    assert seen == [f"torch {torch.__version__}", "a line on stderr"]
    assert run.logs == "".join(f"{line}\n" for line in seen)
    assert run.name.startswith(f"pytest-mlperf-{SESSION}-")
    assert 0 < run.seconds < 120
    assert run.image.reference == image == HOST_IMAGE
    assert run.image.id.startswith("sha256:") and len(run.image.id) == 71
    assert run.image.repo_digest == LOCAL
    assert HOST_IMAGE in run.image.tags
    assert "s3cret-value" not in repr(spec) and "s3cret-value" not in spec.describe()
    assert leftovers(runner.client) == []


def test_host_image_is_built_once(engine: docker.DockerClient, image: str) -> None:
    first = engine.images.get(image).id
    assert host_image(engine) == image
    assert engine.images.get(image).id == first
    assert engine.images.get(image).labels["pytest-mlperf.image"] == "host-1"


def test_a_failing_container_raises_with_its_log_tail_and_is_removed(runner: Runner, image: str) -> None:
    script = "echo first; for i in $(seq 1 60); do echo out $i; done; echo 'it broke' >&2; exit 3"
    spec = ContainerSpec(image, ["/bin/sh", "-c", script], mounts=host_mounts(), env={"API_KEY": "k-123"})
    with pytest.raises(ContainerFailed) as info:
        runner.run(spec)
    failure = info.value
    assert type(failure) is ContainerFailed
    assert failure.exit_code == 3
    assert failure.image == image and failure.command == spec.command
    assert len(failure.log_tail) == 40
    assert failure.log_tail[-2:] == ["out 60", "it broke"]
    assert "first" not in failure.log_tail
    message = str(failure)
    assert "exited with code 3" in message and image in message and "seq 1 60" in message
    assert message.endswith("out 60\nit broke")
    assert "k-123" not in message
    assert failure.run is not None and failure.run.logs.startswith("first\nout 1\n")
    assert leftovers(runner.client) == []


def test_a_container_past_its_timeout_is_killed_and_removed(runner: Runner, image: str) -> None:
    spec = ContainerSpec(image, ["/bin/sh", "-c", "echo started; sleep 60"], mounts=host_mounts(), timeout_s=2)
    started = time.monotonic()
    with pytest.raises(ContainerTimeout) as info:
        runner.run(spec)
    assert time.monotonic() - started < 15
    assert info.value.log_tail == ["started"]
    assert "timed out after 2 s" in str(info.value)
    assert leftovers(runner.client) == []


class MissedExit:
    """A log stream as podman's follower gives it when it misses a quick exit (containers/podman #6531, #11461, seen
    here about once in 12 to 100 runs of a container that exits at once): the first chunk, then nothing, never
    ending until closed."""

    def __init__(self, real: Iterator[bytes]) -> None:
        self.real, self.closed = real, threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        yield next(iter(self.real))
        self.closed.wait()
        raise requests.exceptions.ConnectionError("stream closed")

    def close(self) -> None:
        self.closed.set()


def test_a_log_stream_that_misses_the_exit_ends_with_the_whole_log(
    runner: Runner, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_logs = docker.models.containers.Container.logs

    def logs(self: docker.models.containers.Container, **kwargs: object) -> object:
        found = real_logs(self, **kwargs)
        return MissedExit(found) if kwargs.get("follow") else found

    monkeypatch.setattr(docker.models.containers.Container, "logs", logs)
    spec = ContainerSpec(
        image, ["/bin/sh", "-c", "echo one; sleep 1; echo two; echo three"], mounts=host_mounts(), timeout_s=60
    )
    seen: list[str] = []
    started = time.monotonic()
    run = runner.run(spec, on_line=seen.append)
    assert time.monotonic() - started < 30  # the exit's grace, not spec.timeout_s
    assert seen == ["one", "two", "three"] and run.logs == "one\ntwo\nthree\n" and run.exit_code == 0
    assert leftovers(runner.client) == []


def test_a_start_failure_leaves_nothing_in_created(runner: Runner, image: str) -> None:
    spec = ContainerSpec(image, ["/no/such/binary", "--flag"], mounts=host_mounts())
    with pytest.raises(ContainerStartFailed) as info:
        runner.run(spec)
    assert "/no/such/binary" in str(info.value) and "failed to start" in str(info.value)
    assert info.value.name.startswith(f"pytest-mlperf-{SESSION}-")
    assert leftovers(runner.client) == []


def test_a_missing_image_fails_before_anything_is_created(runner: Runner) -> None:
    with pytest.raises(ContainerStartFailed, match="not on this engine"):
        runner.run(ContainerSpec("localhost/pytest-mlperf-absent:0", ["true"]))
    assert leftovers(runner.client) == []


def test_an_exception_from_on_line_still_removes_the_container(runner: Runner, image: str) -> None:
    def explode(line: str) -> None:
        raise RuntimeError(f"the reader failed on {line!r}")

    spec = ContainerSpec(image, ["/bin/sh", "-c", "echo one; sleep 30"], mounts=host_mounts(), timeout_s=60)
    with pytest.raises(RuntimeError, match="the reader failed on 'one'"):
        runner.run(spec, on_line=explode)
    assert leftovers(runner.client) == []


INTERRUPTED = """
import sys
from pytest_mlperf.containers import ContainerSpec, Runner, connect, host_mounts
runner = Runner(connect(), sys.argv[1])
runner.run(ContainerSpec(sys.argv[2], ["sleep", "60"], mounts=host_mounts(), timeout_s=120))
print("finished")
"""


def test_ctrl_c_removes_the_running_container(podman: PodmanService, engine: docker.DockerClient, image: str) -> None:
    session = f"{SESSION}-sigint"
    labels = {"label": f"{SESSION_LABEL}={session}"}
    env = {**os.environ, "DOCKER_HOST": podman.base_url}
    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED, session, image], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while not [c for c in engine.containers.list(filters=labels) if c.status == "running"]:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the container never ran"
            time.sleep(0.1)
        time.sleep(0.3)  # let the script reach its log stream
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        remaining = [c.name for c in engine.containers.list(all=True, filters=labels)]
        remove_labelled(engine, session)
    assert process.returncode != 0
    assert b"KeyboardInterrupt" in stderr and b"finished" not in stdout
    assert remaining == []


def test_cleanup_removes_the_sessions_containers_in_any_state(runner: Runner, image: str) -> None:
    created = runner.client.containers.create(image, ["true"], labels=runner.labels, name=f"{SESSION}-created")
    other = runner.client.containers.create(image, ["true"], labels={LABEL: "1", SESSION_LABEL: f"{SESSION}-other"})
    try:
        assert runner.cleanup() == [created.name]
        assert leftovers(runner.client) == []
        assert runner.client.containers.get(other.id)  # another session's container is left alone
    finally:
        other.remove(force=True)


def test_connect_through_docker_host(podman: PodmanService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", podman.base_url)
    client = connect()
    try:
        assert client.ping()
    finally:
        client.close()


def test_connect_without_an_engine_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"unix://{tmp_path}/nothing-here.sock"
    with pytest.raises(EngineUnavailable) as info:
        connect(url)
    message = str(info.value)
    assert url in message and "from base_url" in message
    assert "DOCKER_HOST" in message and "podman system service" in message and "apt-get install" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    monkeypatch.setenv("DOCKER_HOST", url)
    with pytest.raises(EngineUnavailable, match="from DOCKER_HOST"):
        connect()


def test_a_service_that_does_not_come_up_quotes_its_stderr(tmp_path: Path) -> None:
    fake = tmp_path / "podman"
    fake.write_text("#!/bin/sh\necho 'Error: cannot listen on the socket' >&2\nexit 125\n")
    fake.chmod(0o755)
    with pytest.raises(EngineUnavailable, match=r"(?s)exited with code 125.*cannot listen on the socket"):
        PodmanService(tmp_path / "svc", podman=str(fake), startup_timeout_s=10).start()
    assert 'runtime = "runc"' in (tmp_path / "svc" / "containers.conf").read_text()


def test_create_kwargs_for_docker_engine_on_a_gpu_server() -> None:
    spec = ContainerSpec(
        "nvcr.io/nvidia/pytorch:24.01-py3",
        ["python", "train.py"],
        env={"NCCL_DEBUG": "INFO", "WANDB_API_KEY": "wandb-s3cret"},
        mounts=[Mount(Path("/data/imagenet"), "/data")],
        gpus=["0", "GPU-8f6e1a2b-0000-0000-0000-000000000000"],
        shm_size="8g",
        ipc_mode="host",
        ulimits={"memlock": (-1, -1), "stack": (67108864, 67108864)},
        network_mode="host",
        cpuset_cpus="0-15",
        mem_limit="64g",
        workdir="/workspace",
    )
    kwargs = create_kwargs(spec, "pytest-mlperf-x-1", {LABEL: "1"})
    (request,) = kwargs["device_requests"]
    assert request["DeviceIDs"] == ["0", "GPU-8f6e1a2b-0000-0000-0000-000000000000"]
    assert request["Capabilities"] == [["gpu"]]
    assert [(u["Name"], u["Soft"], u["Hard"]) for u in kwargs["ulimits"]] == [
        ("memlock", -1, -1),
        ("stack", 67108864, 67108864),
    ]
    assert kwargs["mounts"][0] == {"Target": "/data", "Source": "/data/imagenet", "Type": "bind", "ReadOnly": True}
    assert (kwargs["shm_size"], kwargs["ipc_mode"], kwargs["network_mode"]) == ("8g", "host", "host")
    assert (kwargs["cpuset_cpus"], kwargs["mem_limit"], kwargs["working_dir"]) == ("0-15", "64g", "/workspace")
    assert kwargs["environment"]["WANDB_API_KEY"] == "wandb-s3cret"  # the container gets it; descriptions do not
    assert "wandb-s3cret" not in spec.describe() and "WANDB_API_KEY=***" in spec.describe()
    every = create_kwargs(ContainerSpec("img", ["true"], gpus=["all"]), "n", {})
    assert every["device_requests"][0]["Count"] == -1
    plain = create_kwargs(ContainerSpec("img", ["true"]), "n", {})
    assert "device_requests" not in plain and "ulimits" not in plain and plain["network_mode"] == "none"


def test_a_shell_string_is_not_a_command() -> None:
    with pytest.raises(TypeError, match="argv list"):
        ContainerSpec("img", "python train.py")  # type: ignore[arg-type]


def test_log_lines_survive_chunks_cut_anywhere() -> None:
    from pytest_mlperf.containers.runner import _lines

    text = "épochs: 1\r\nloss ✓ 0.5\n\nno newline at the end".encode()
    chunks = [text[i : i + 1] for i in range(len(text))]  # every multi-byte character split across chunks
    assert list(_lines(chunks)) == ["épochs: 1", "loss ✓ 0.5", "", "no newline at the end"]
    assert list(_lines([b"a\n", b"b\n"])) == ["a", "b"]


def test_secret_looking_env_values_are_masked() -> None:
    from pytest_mlperf.containers.runner import masked

    env = {"HF_TOKEN": "t", "AWS_SECRET_ACCESS_KEY": "s", "db_password": "p", "BATCH_SIZE": "256"}
    assert masked(env) == {"HF_TOKEN": "***", "AWS_SECRET_ACCESS_KEY": "***", "db_password": "***", "BATCH_SIZE": "256"}
