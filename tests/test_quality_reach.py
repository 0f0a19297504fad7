"""Every shipped case can reach its quality target.

A case's test trains a fresh model to its workload's synthetic quality target within the step budget after
measuring. On a GPU system that is the workload's real preset at the system file's batch, which no CPU can train in
test time, so each distinct (benchmark, real preset, per-device batch) of the shipped system files runs here with
only the workload's declared quality-preserving reductions (image size, sequence length, width: `Workload.reductions`)
at the case's own batch, data pool, class count, schedule and step budget, in fp32 on the CPU. The cpu presets'
cases reach their targets in every run of `make bench`, where each test trains to them.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from helpers import REPO

from pytest_mlperf.config.matrix import expand
from pytest_mlperf.config.schema import load_system
from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.quality import converge
from pytest_mlperf.workloads import Setup, get

CPU = torch.device("cpu")


def real_cases() -> dict[tuple[str, int], list[str]]:
    """(benchmark, per-device batch) of every shipped training case on a real preset -> the cases that use it."""
    found: dict[tuple[str, int], list[str]] = defaultdict(list)
    for path in sorted((REPO / "systems").glob("*.yaml")):
        for case in expand("training", [], [load_system(path)]):
            if case.settings.preset == "real" and case.settings.image_run is None:
                found[(case.benchmark, case.settings.device_batch)].append(case.id)
    return dict(found)


CASES = real_cases()


def test_the_shipped_systems_have_real_cases() -> None:
    """The walk below covers something: the GPU systems train their real presets."""
    assert {name for name, _ in CASES} >= {"resnet50", "bert_large_squad", "transformer_xl_large"}


def test_reductions_name_keys_of_the_real_preset() -> None:
    for name in {name for name, _ in CASES}:
        workload = get(name)
        assert workload.reductions, f"{name}: runs a real preset in a shipped system but declares no reductions"
        assert set(workload.reductions) <= set(workload.presets["real"]), name


@pytest.mark.walk
@pytest.mark.parametrize(("benchmark", "batch"), sorted(CASES), ids=[f"{n}-real-b{b}" for n, b in sorted(CASES)])
def test_real_preset_reaches_its_target_at_the_case_batch(benchmark: str, batch: int) -> None:
    workload = get(benchmark)
    setup = Setup(workload.reduced("real"), batch, CPU, resolve("fp32", CPU))
    trainer = workload.build(setup)
    assert not workload.quality.reached(trainer.evaluate()), "the target must be out of reach untrained"
    result = converge(trainer, workload.quality, 0)
    assert result.reached, f"{', '.join(CASES[(benchmark, batch)])}: {result}"
