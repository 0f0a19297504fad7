"""The fixtures a suite file uses: `case`, `device`, `dataset` and `bench`. A user's own suite can use them the
same way."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import torch

from .config.matrix import Case
from .data import DATASETS, DatasetError, DatasetMissing, Prepared, ensure
from .resources.devices import Unavailable, describe, place
from .resources.peaks import peak
from .results.verdict import against_baseline, against_earlier, against_quality
from .run.flops import Work, counted
from .run.measure import Measurement, NonFiniteLoss, Plan, measure, synchronizer
from .run.precision import float32_math, resolve, unsupported
from .run.quality import QualityResult, converge
from .session import MlperfSession
from .workloads.registry import Setup

SESSION = pytest.StashKey[MlperfSession]()
MEASUREMENT = pytest.StashKey[Measurement]()
DEVICE = pytest.StashKey[str]()
QUALITY = pytest.StashKey[QualityResult]()
WORK = pytest.StashKey[Work]()
DATA = pytest.StashKey[str]()
COMPILED = pytest.StashKey[bool]()


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


def data_dir(config: pytest.Config) -> Path | None:
    """--data-dir, else the mlperf_data_dir ini value (relative to the rootdir), else None: synthetic data."""
    option = config.getoption("mlperf_data_dir")
    if option:
        return Path(option).expanduser()
    ini = config.getini("mlperf_data_dir")
    return config.rootpath / ini if ini else None


@pytest.fixture
def dataset(request: pytest.FixtureRequest, case: Case) -> Prepared | None:
    """The case's real dataset when a data directory is given and the workload trains on one (prepared there once,
    under a lock shared by parallel workers), else None: synthetic data. A dataset that is not there skips the test
    saying what to download and where; one that is there but broken fails it naming what is wrong."""
    root, name = data_dir(request.config), case.workload.dataset
    if root is None or name is None:
        request.node.stash[DATA] = "synthetic"
        return None
    try:
        prepared = ensure(DATASETS[name], root)
    except DatasetMissing as exc:
        pytest.skip(f"{case.id}: {exc}\n(--data-dir={root})")
    except DatasetError as exc:
        pytest.fail(f"{case.id}: dataset {name!r} under --data-dir={root}: {exc}", pytrace=False)
    request.node.stash[DATA] = f"{name} ({prepared.root})"
    return prepared


class Bench:
    """Runs a case's workload through the one timing loop and checks it against its targets."""

    def __init__(
        self, case: Case, device: torch.device, data: Prepared | None, session: MlperfSession, node: pytest.Item
    ) -> None:
        self.case = case
        self.device = device
        self.data = data
        self.session = session
        self.node = node

    def train(self) -> Measurement:
        """Count one step's FLOPs, measure throughput, then keep training to the workload's quality target (checked
        by `check`). The counted step runs before the warm-up (the counter slows it down), its loss checked too.
        Time to quality runs, as MLPerf times it, from the first touch of the training data (building the trainer,
        which makes or opens it) to the evaluation that reaches the target."""
        case, s = self.case, self.case.settings
        precision = resolve(case.precision, self.device)
        data = self.data.root if self.data else None
        compiled = s.compile or bool(self.node.config.getoption("mlperf_compile"))
        self.node.stash[COMPILED] = compiled
        preset = {**case.workload.presets[s.preset], **s.options}
        setup = Setup(preset, s.device_batch, self.device, precision, data, compiled)
        quality = case.workload.quality
        with float32_math(precision):
            start = time.perf_counter()
            trainer = case.workload.build(setup)
            if data is not None:
                quality = quality.on_real_data(getattr(trainer, "epoch_steps", None))
            plan = Plan(s.warmup, s.repeat, s.number, items_per_step=trainer.items_per_step * s.devices)
            try:
                loss, flops = counted(trainer.step)
                roof = peak(self.device, precision)
                self.node.stash[WORK] = Work(
                    flops / trainer.items_per_step,
                    roof.flops * s.devices if roof else None,
                    roof.source if roof else "no peak known for this device",
                )
                result = measure(trainer.step, plan, synchronizer(self.device), before=[loss])
                self.node.stash[MEASUREMENT] = result
                reached = converge(trainer, quality, result.steps)
                if reached.reached:
                    reached = dataclasses.replace(reached, time_to_target=time.perf_counter() - start)
                self.node.stash[QUALITY] = reached
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
def bench(request: pytest.FixtureRequest, case: Case, device: torch.device, dataset: Prepared | None) -> Bench:
    return Bench(case, device, dataset, request.config.stash[SESSION], request.node)
