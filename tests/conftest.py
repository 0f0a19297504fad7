"""Fixtures of the project's own tests."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import torch._dynamo  # noqa: F401  (see below)
from helpers import Project

from pytest_mlperf.containers import PodmanService, podman_available

if TYPE_CHECKING:  # imported in the fixture: only the tests that use a browser pay for selenium
    from browser import Browser

# Started where SIGINT is ignored (a background job of a non-interactive shell, nohup), every child would inherit the
# ignore and Python would not turn Ctrl-C into KeyboardInterrupt there: the Ctrl-C tests would hang. Python's own
# handler here makes the children start with the default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium, shared by a module's tests (it takes ~1-2 s to start): `browser.open(path)` gives a page.
    Chromium is a test requirement (`apt-get install -y chromium chromium-driver`, which .ci/run does): without it the
    browser tests skip on a workstation and fail under CI (env CI set), like the container tests."""
    from browser import Browser, browser_available

    reason = browser_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests need Chromium under CI: {reason}")
        pytest.skip(reason)
    with Browser() as opener:
        yield opener
