"""Fixtures of the project's own tests."""

import os
from collections.abc import Iterator

import pytest
import torch._dynamo  # noqa: F401  (see below)
from helpers import Project

from pytest_mlperf.containers import PodmanService, podman_available

# pytester's in-process runs drop modules first imported during a run; torch imports torch._dynamo lazily at the
# first optimizer step, and importing it twice fails. Importing it here keeps it loaded across runs.


@pytest.fixture
def project(pytester: pytest.Pytester) -> Project:
    """A pytester project with the toy workload, a suite and an empty systems/ folder."""
    return Project(pytester)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanService]:
    """A real container engine: podman's Docker-compatible service, started for the session. Podman is a test
    requirement (`apt-get install -y podman runc busybox-static`, which .ci/run does): without it the container
    tests skip on a workstation and fail under CI (env CI set), so a CI machine without it cannot pass silently."""
    reason = podman_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the container tests need podman under CI: {reason}")
        pytest.skip(reason)
    with PodmanService(tmp_path_factory.mktemp("podman")) as service:
        yield service
