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
from .results.loadgen_logs import parse_logs
from .results.verdict import against_quality
from .run import loadgen
from .run.flops import Work, counted
from .run.measure import Measurement, NonFiniteLoss, Plan, measure, synchronizer
from .run.precision import float32_math, resolve, unsupported
from .run.quality import QualityResult, converge
from .run.serving import Accuracy, Answerer, Trained, labels_of, logged_answers, predict_all, served, trained
from .session import MlperfSession
from .workloads.registry import Setup

SESSION = pytest.StashKey[MlperfSession]()
MEASUREMENT = pytest.StashKey[Measurement]()
DEVICE = pytest.StashKey[str]()
QUALITY = pytest.StashKey[QualityResult]()
WORK = pytest.StashKey[Work]()
DATA = pytest.StashKey[str]()
COMPILED = pytest.StashKey[bool]()
LOADGEN = pytest.StashKey[loadgen.LoadgenRun]()
ACCURACY = pytest.StashKey[Accuracy]()
PEAK = pytest.StashKey[loadgen.PeakSearch]()


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
        setup = Setup(case.preset, s.device_batch, self.device, precision, data, compiled)
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
        verdicts = self.session.judge(self.case)(measurement.summary().mean, self.case.workload.unit)
        failed = [v.message for v in (*verdicts, against_quality(self.node.stash[QUALITY])) if v and v.failed]
        fail_on(self.case, self.device, failed)


def fail_on(case: Case, device: torch.device, failures: list[str]) -> None:
    if failures:
        pytest.fail(f"{case.id} on {describe(device)}: " + "\n".join(failures), pytrace=False)


@pytest.fixture
def bench(request: pytest.FixtureRequest, case: Case, device: torch.device, dataset: Prepared | None) -> Bench:
    return Bench(case, device, dataset, request.config.stash[SESSION], request.node)


class Serve:
    """Serves a case's trained model to LoadGen: a performance run in the case's scenario, or the accuracy pass."""

    def __init__(self, case: Case, device: torch.device, logs: Path, session: MlperfSession, node: pytest.Item) -> None:
        if case.scenario is None:
            pytest.fail(f"{case.id}: the `serve` fixture needs an inference case", pytrace=False)
        self.case, self.scenario = case, case.scenario
        self.entry = case.system.spec.inference[case.benchmark]  #: the system file's inference entry
        self.device = device
        self.logs = logs / case.id  #: LoadGen's log folder
        self.session = session
        self.node = node
        assert case.workload.serving is not None  # check_against_workloads refuses inference of an unserved one
        self.serving = case.workload.serving
        samples = self.scenario.performance_sample_count
        assert samples is not None  # System.scenario sets it
        self.library = loadgen.SampleLibrary(samples, samples)

    def _model(self) -> tuple[Trained, Answerer]:
        try:
            entry = self.entry
            model = trained(self.case.workload, entry.preset, self.device, entry.train_batch, self.library.count)
        except RuntimeError as exc:
            pytest.fail(f"{self.case.id}: {exc}", pytrace=False)
        try:
            served_model, context = served(model.model, self.case.precision, self.device)
        except ValueError as exc:
            pytest.fail(f"{self.case.id}: {exc}", pytrace=False)
        return model, Answerer(served_model, model.inputs, self.serving, self.case.preset, context)

    def _run(self, predict: Answerer) -> loadgen.LoadgenRun:
        try:
            if self._searching:
                run = self._peak(predict)
            else:
                run = loadgen.run(predict, self.library, self.scenario, self.logs)
        except loadgen.PredictError as exc:
            problem = f"{self.case.id}: {exc}"
        else:
            self.node.stash[LOADGEN] = run
            return run
        pytest.fail(problem, pytrace=False)

    @property
    def _searching(self) -> bool:
        return self.case.performance == "server" and bool(self.node.config.getoption("mlperf_find_peak"))

    def _peak(self, predict: Answerer) -> loadgen.LoadgenRun:
        """--find-peak-qps: the highest VALID Server target, searched from the system file's; the run at that target
        is the result, every trial goes into the record."""
        start = time.perf_counter()
        search = loadgen.find_peak_qps(predict, self.library, self.scenario, self.logs)
        self.node.stash[PEAK] = search
        if search.peak_qps is None:
            tried = ", ".join(f"{t.target_qps:.4g} ({', '.join(t.failed_checks)})" for t in search.trials)
            pytest.fail(f"{self.case.id}: no Server target QPS was VALID; tried {tried}", pytrace=False)
        best = next(t for t in search.trials if t.target_qps == search.peak_qps and t.validity == "VALID")
        scenario = dataclasses.replace(self.scenario, server_target_qps=search.peak_qps)
        folder = Path(best.log_dir)
        return loadgen.LoadgenRun(scenario, folder, parse_logs(folder), time.perf_counter() - start)

    def performance(self) -> loadgen.LoadgenRun:
        """One LoadGen run of the case's scenario (with --find-peak-qps, Server's peak search); its logs stay in
        `logs`."""
        return self._run(self._model()[1])

    def check(self, run: loadgen.LoadgenRun) -> None:
        """An INVALID run fails, naming LoadGen's unmet checks; a VALID one is judged on the scenario's official
        metric against the baseline and (with --compare) the earlier run, latencies lower-is-better."""
        result = run.result
        if not result.valid:
            fail_on(self.case, self.device, [f"{result.message}\n(LoadGen logs: {run.outdir})"])
        metric = result.metric
        assert metric is not None  # a VALID performance run always logs its metric
        verdicts = self.session.judge(self.case)(metric.value, metric.unit, metric.lower_is_better)
        fail_on(self.case, self.device, [f"{metric.name}: {v.message}" for v in verdicts if v and v.failed])

    def accuracy(self) -> Accuracy:
        """LoadGen's AccuracyOnly pass over every sample, scored with the workload's metric against the held-out
        targets, beside the FP32 model's score on the same samples computed directly."""
        model, predict = self._model()
        count, batch, serving = self.library.count, self.scenario.max_batch, self.serving
        run = self._run(predict)
        targets = labels_of(model, count)
        direct = predict_all(Answerer(model.model, model.inputs, serving, self.case.preset), count, batch)
        value = serving.score(logged_answers(run.outputs(), direct), targets)
        reference = serving.score(direct, targets)
        result = Accuracy(serving.metric, value, reference, count, self.entry.accuracy_target)
        self.node.stash[ACCURACY] = result
        self.node.stash[QUALITY] = QualityResult(
            serving.metric, result.value, result.target * reference, model.quality.steps, run.seconds, result.met
        )
        return result

    def check_accuracy(self, result: Accuracy) -> None:
        if not result.met:
            pytest.fail(
                f"{self.case.id}: {result.metric} {result.value:.4f} over {result.samples} samples is "
                f"{result.ratio:.2%} of the FP32 model's {result.reference:.4f}; "
                f"the target is {100 * result.target:g}%",
                pytrace=False,
            )


@pytest.fixture
def serve(request: pytest.FixtureRequest, case: Case, device: torch.device) -> Serve:
    """A Serve whose LoadGen logs go to the run folder's loadgen/ (the controller's, under xdist too)."""
    session = request.config.stash[SESSION]
    assert session.run_dir is not None  # set at configure, on workers from the controller
    return Serve(case, device, session.run_dir / "loadgen", session, request.node)
