"""Fixtures of the project's own tests."""

import pytest
import torch._dynamo  # noqa: F401  (see below)
from helpers import Project

# pytester's in-process runs drop modules first imported during a run; torch imports torch._dynamo lazily at the
# first optimizer step, and importing it twice fails. Importing it here keeps it loaded across runs.


@pytest.fixture
def project(pytester: pytest.Pytester) -> Project:
    """A pytester project with the toy workload, a suite and an empty systems/ folder."""
    return Project(pytester)
