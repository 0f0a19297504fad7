"""The fixtures a suite file uses: `case`, `device` and `bench`. A user's own suite can use them the same way."""

from __future__ import annotations

import pytest
import torch

from .config.matrix import Case
from .resources.devices import Unavailable, describe, place
from .results.verdict import against_baseline, against_earlier, against_quality
from .run.measure import Measurement, NonFiniteLoss, Plan, measure, synchronizer
from .run.precision import float32_math, resolve, unsupported
from .run.quality import QualityResult, converge
from .session import MlperfSession
from .workloads.registry import Setup

SESSION = pytest.StashKey[MlperfSession]()
MEASUREMENT = pytest.StashKey[Measurement]()
DEVICE = pytest.StashKey[str]()
QUALITY = pytest.StashKey[QualityResult]()


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Case:
    """The benchmark x precision x system this test runs, from the `mlperf` mark's parametrisation."""
    if not isinstance(getattr(request, "param", None), Case):
        pytest.fail(f"{request.node.nodeid}: the `case` fixture needs @pytest.mark.mlperf(task, ...)", pytrace=False)
    return request.param


@pytest.fixture
def device(request: pytest.FixtureRequest, case: Case) -> torch.device:
    """The device the case's system describes; skips with the reason when this host cannot run it."""
    try:
        placed = place(case.system.spec.accelerator)
    except Unavailable as exc:
        pytest.skip(f"system {case.system.name} {exc}")
    reason = unsupported(case.precision, placed)
    if reason:
        pytest.skip(reason)
    request.node.stash[DEVICE] = describe(placed)
    return placed


class Bench:
    """Runs a case's workload through the one timing loop and checks it against its targets."""

    def __init__(self, case: Case, device: torch.device, session: MlperfSession, node: pytest.Item) -> None:
        self.case = case
        self.device = device
        self.session = session
        self.node = node

    def train(self) -> Measurement:
        """Measure throughput, then keep training to the workload's quality target (checked by `check`)."""
        case, s = self.case, self.case.settings
        precision = resolve(case.precision, self.device)
        setup = Setup(case.workload.presets[s.preset], s.device_batch, self.device, precision)
        with float32_math(precision):
            trainer = case.workload.build(setup)
            plan = Plan(s.warmup, s.repeat, s.number, items_per_step=trainer.items_per_step * s.devices)
            try:
                result = measure(trainer.step, plan, synchronizer(self.device))
                self.node.stash[MEASUREMENT] = result
                self.node.stash[QUALITY] = converge(trainer, case.workload.quality, result.steps)
            except NonFiniteLoss as exc:
                problem = f"{case.id}: {exc}"
            else:
                problem = ""
        if problem:
            pytest.fail(problem, pytrace=False)
        return result

    def check(self, measurement: Measurement) -> None:
        """Fail on a miss of the baseline target or (with --compare) a regression against the earlier run."""
        mean = measurement.summary().mean
        unit = self.case.workload.unit
        verdicts = [against_baseline(mean, unit, self.case.settings.baseline)]
        if self.session.earlier_source:
            earlier = self.session.earlier_for(self.case)
            verdicts.append(against_earlier(mean, unit, earlier, self.session.tolerance, self.session.earlier_source))
        verdicts.append(against_quality(self.node.stash[QUALITY]))
        failures = [v.message for v in verdicts if v.failed]
        if failures:
            on = describe(self.device)
            pytest.fail(f"{self.case.id} on {on}: " + "\n".join(failures), pytrace=False)


@pytest.fixture
def bench(request: pytest.FixtureRequest, case: Case, device: torch.device) -> Bench:
    return Bench(case, device, request.config.stash[SESSION], request.node)
