"""The fixtures a suite file uses: `case`, `gpus`, `device`, `dataset`, `bench` and `serve`. A user's own suite can
use them the same way."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from .config.matrix import Case, expand
from .config.schema import ImageRun, pin_key
from .containers.engine import EngineUnavailable
from .containers.launch import Launch, train_in_container
from .containers.runner import Runner
from .containers.third_party import Reported, run_image_benchmark
from .data import DATASETS, DatasetError, DatasetMissing, Prepared, ensure
from .launch.process import serve_in_fresh_process, train_in_fresh_process
from .launch.slurm_ranks import train_with_slurm
from .launch.torchrun import train_with_torchrun
from .resources.devices import Unavailable, describe, fits, place
from .resources.leasing import Lease, LeaseTimeout
from .resources.peaks import peak
from .resources.slices import Slice, applied, free
from .resources.telemetry import MIN_SAMPLES, Telemetry
from .results import mllog, scaling
from .results.loadgen_logs import LoadgenResult, parse_logs
from .results.repeats import (
    across_loadgen_runs,
    across_runs,
    loadgen_interval,
    quality_across_runs,
    training_interval,
)
from .results.verdict import Figure, Judge, Roof, Verdict, Verdicts, against_quality
from .run import calibration, job, loadgen
from .run.flops import Work, lower_roof
from .run.measure import Measurement
from .run.precision import unsupported
from .run.probe import Between
from .run.quality import QualityResult
from .run.serving import (
    Accuracy,
    Answerer,
    Trained,
    answering,
    labels_of,
    logged_answers,
    predict_all,
    served_math,
    work,
)
from .session import MlperfSession

SESSION = pytest.StashKey[MlperfSession]()
MEASUREMENTS = pytest.StashKey[list[Measurement]]()  #: one per run
DEVICE = pytest.StashKey[str]()
QUALITIES = pytest.StashKey[list[QualityResult]]()  #: one per run
WORK = pytest.StashKey[Work]()
DATA = pytest.StashKey[str]()  #: "synthetic", the real dataset's name, or "the image's own"
DATA_DIR = pytest.StashKey[str]()  #: where the real dataset was read from
COMPILED = pytest.StashKey[bool]()
LOADGEN = pytest.StashKey[list[loadgen.LoadgenRun]]()  #: one per run
ACCURACY = pytest.StashKey[Accuracy]()
PEAK = pytest.StashKey[loadgen.PeakSearch]()
LEASE = pytest.StashKey[Lease]()
ENVIRONMENT = pytest.StashKey[dict[str, str]]()  #: the software a containerised result ran on
TELEMETRY = pytest.StashKey[Telemetry]()
REPORTED = pytest.StashKey[Reported]()  #: the throughput an image's own script printed
RUNNER = pytest.StashKey[str]()  #: "container" for a test run inside an image
MLLOG_DIR = "mllog"  #: the run folder's MLPerf-format training logs: mllog/<test id>/result_<run>.txt
RANK_MEANS = pytest.StashKey[list[float]]()  #: several devices: the system's items/s as each rank timed it
#: several devices: one device's items/s measured by the test (None: another test of the run) and where it comes from
SCALING = pytest.StashKey[tuple[float | None, str]]()
BETWEEN = pytest.StashKey[Between]()  #: the between-process sd that widened a single run's interval
CORES = pytest.StashKey[Slice]()  #: the CPU cores the test ran on
PROCESSES_DIR = "processes"  #: the run folder's fresh-process runs: processes/<test id>/run-<k>/


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Case:
    """The benchmark x precision x system this test runs, from the `mlperf` mark's parametrisation."""
    if not isinstance(getattr(request, "param", None), Case):
        pytest.fail(f"{request.node.nodeid}: the `case` fixture needs @pytest.mark.mlperf(task, ...)", pytrace=False)
    return request.param


@pytest.fixture
def gpus(request: pytest.FixtureRequest, case: Case) -> Iterator[Lease]:
    """The devices the case's system needs, leased for the test so no other test (in any worker or session on this
    host) uses them meanwhile: the worker's own GPUs when it has enough, else any (for processes the test launches,
    confined by `lease.env`). A CPU system gets the CPU, and so does every system on a host without NVIDIA's library,
    which the lease's note says. Skips when the host has too few matching devices; fails after --gpu-wait."""
    session, accelerator = request.config.stash[SESSION], case.system.spec.accelerator
    if accelerator.kind == "cpu":
        why = f"system {case.system.name} runs on the CPU" if session.gpus else session.gpu_source
        request.node.stash[LEASE] = Lease((), f"the CPU: {why}")
        yield request.node.stash[LEASE]
        return
    matching = [g for g in session.gpus if fits(g, accelerator)]
    if len(matching) < accelerator.count:
        found = ", ".join(g.label for g in session.gpus) or session.gpu_source
        pytest.skip(
            f"system {case.system.name} needs {accelerator.count}x {accelerator.model} "
            f"({accelerator.memory_gb:g} GB); this host has {len(matching)}: {found}"
        )
    own = [g for g in session.visible if g in matching]
    among = own if len(own) >= accelerator.count else matching
    assert session.leaser is not None  # set at configure
    try:
        with session.leaser.lease(accelerator.count, request.node.nodeid, session.gpu_wait, among) as lease:
            request.node.stash[LEASE] = lease
            yield lease
    except LeaseTimeout as exc:
        problem = f"{case.id}: {exc}"
    else:
        return
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def device(request: pytest.FixtureRequest, case: Case, gpus: Lease) -> torch.device:
    """The torch device of the case's lease; skips with the reason when this host cannot run it."""
    session = request.config.stash[SESSION]
    try:
        placed = place(case.system.spec.accelerator, gpus, session.visible)
    except Unavailable as exc:
        pytest.skip(f"system {case.system.name} {exc}")
    reason = unsupported(case.precision, placed)
    if reason:
        pytest.skip(reason)
    request.node.stash[DEVICE] = describe(placed)
    return placed


@pytest.fixture
def cores(request: pytest.FixtureRequest) -> Iterator[Slice]:
    """The CPU cores the test runs on: its worker's slice less the cores other work keeps busy as the test starts
    (`slices.free`). This process's torch threads and affinity follow them for the test, and so do the processes it
    starts, which are given them."""
    session = request.config.stash[SESSION]
    assert session.slice is not None  # set at configure
    piece = request.node.stash[CORES] = free(session.slice)
    with applied(piece):
        yield piece


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
    request.node.stash[DATA], request.node.stash[DATA_DIR] = name, str(prepared.root)
    return prepared


class Bench:
    """Runs a case's workload through the one timing loop and checks it against its targets."""

    def __init__(
        self,
        case: Case,
        device: torch.device,
        lease: Lease,
        data: Prepared | None,
        cores: Slice,
        session: MlperfSession,
        node: pytest.Item,
    ) -> None:
        self.case = case
        self.device = device
        self.lease = lease
        self.data = data
        self.cores = cores
        self.session = session
        self.node = node

    def train(self) -> list[Measurement] | Reported:
        """Measure the case's throughput and train on to its quality target (`job.train`), here or, with the
        container runner, inside the system's image, once per --runs (from 2, or with --rerun-inconclusive, each run
        in a fresh process); or, for a benchmark the system runs with the image's own script (`image_run`), the
        throughput that script reports. The figures are checked by `check`."""
        if self.case.settings.image_run is not None:
            return self._image_run(self.case.settings.image_run)
        self.node.stash[COMPILED] = self.case.settings.compile or bool(self.node.config.getoption("mlperf_compile"))
        for _ in range(self.session.runs):
            self._run_once()
        return self.node.stash[MEASUREMENTS]

    def _run_once(self) -> None:
        """One run of the case; its figures join the earlier runs' in the stash (telemetry and environment: the last
        run's)."""
        compiled, data = self.node.stash[COMPILED], self.data.root if self.data else None
        if self.case.launcher:
            assert self.session.run_dir  # set at configure
            out = self.session.run_dir / "ranks" / self.case.id
            launch = train_with_torchrun if self.case.launcher == "torchrun" else train_with_slurm
            result, ranks = launch(self.case, self.lease, self.cores, out, data, compiled)
            self.node.stash[RANK_MEANS] = [r.measurement.summary().mean for r in ranks if r.measurement]
            self.node.stash[ENVIRONMENT] = ranks[0].environment if ranks else {}
            if SCALING not in self.node.stash and not result.problem:
                self.node.stash[SCALING] = self._one_device(out / "one-device", data, compiled)
        elif self.session.runs_in_container(self.case):
            result = self._in_container(data, compiled)
        elif self.session.fresh_processes:
            assert self.session.run_dir  # set at configure
            runs = len(self.node.stash.get(MEASUREMENTS, []))
            out = self.session.run_dir / PROCESSES_DIR / self.case.id / f"run-{runs}"
            result = train_in_fresh_process(self.case, self.lease, self.cores, out, data, compiled)
        else:
            sampler = self.session.sampler(self.lease, self.cores)
            progress = self.session.progress(self.node, self.case)
            result = job.train(self.case, self.device, data, compiled, sampler, on_block=progress)
        if result.events and self.session.run_dir:  # MLPerf's layout: result_0.txt, result_1.txt... per benchmark
            runs = len(self.node.stash.get(MEASUREMENTS, []))
            mllog.write(result.events, self.session.run_dir / MLLOG_DIR / self.case.id / f"result_{runs}.txt")
        if result.telemetry:
            self.node.stash[TELEMETRY] = result.telemetry
        if result.work:
            self.node.stash[WORK] = result.work
        if result.quality:
            self.node.stash.setdefault(QUALITIES, []).append(result.quality)
        if result.measurement:
            self.node.stash.setdefault(MEASUREMENTS, []).append(result.measurement)
        if result.problem or result.measurement is None:
            done = len(self.node.stash.get(MEASUREMENTS, []))
            which = f" (run {done + 1})" if done else ""
            pytest.fail((result.problem or f"{self.case.id}: no measurement") + which, pytrace=False)

    def _one_device(self, out: Path, data: Path | None, compiled: bool) -> tuple[float | None, str]:
        """The scaling reference of a case on several devices: the same case on one GPU of the same model when the
        session runs it (taken from its record at the end of the run), else measured here, alone in a fresh process
        on one of the test's devices with one rank's share of the CPUs."""
        single, devices = self.case.one_device(), self.case.settings.devices
        gpu = self.case.system.spec.accelerator.kind == "cuda"
        twins = [
            other
            for system in self.session.systems or []
            for other in expand("training", [self.case.benchmark], [system])
            if other.settings.devices == 1 and other.id in self.session.selected
        ]
        twin = next((t for t in twins if gpu and _same_device_case(t, single)), None)
        if twin is not None:
            return None, f"{twin.id}{scaling.IN_THIS_RUN}"
        piece = self.cores
        idle = tuple(cpu for cpu in piece.cpus if cpu not in piece.busy)
        share = dataclasses.replace(piece, cpus=idle[: max(1, piece.threads // devices)], busy=())
        lease = dataclasses.replace(self.lease, devices=self.lease.devices[:1])
        result = train_in_fresh_process(single, lease, share, out, data, compiled, quality=False)
        if result.problem or result.measurement is None:
            problem = f"{self.case.id}: its one-device scaling reference: {result.problem or 'no measurement'}"
            pytest.fail(problem, pytrace=False)
        where = lease.describe() if lease.devices else f"{share.threads} of the test's {piece.threads} cores"
        no_twin = "no one-device case of it was selected" if gpu else "a CPU system's device is its share of cores"
        return result.measurement.summary().mean, f"one device ({where}) in a fresh process in this test: {no_twin}"

    def _in_container(self, data: Path | None, compiled: bool) -> job.TrainResult:
        result = train_in_container(self._runner(), self._launch(), data, compiled)
        self.node.stash[ENVIRONMENT], self.node.stash[RUNNER] = result.environment, "container"
        return result

    def _image_run(self, image_run: ImageRun) -> Reported:
        reported = run_image_benchmark(self._runner(), self._launch(), image_run)
        if isinstance(reported, str):
            pytest.fail(reported, pytrace=False)
        self.node.stash[ENVIRONMENT], self.node.stash[RUNNER] = reported.environment, "container"
        self.node.stash[REPORTED] = reported
        self.node.stash[DATA] = "the image's own"
        return reported

    def _launch(self) -> Launch:
        session = self.session
        assert session.run_dir  # set at configure
        return Launch(self.case, self.lease, self.cores, session.run_dir / "containers" / self.case.id)

    def _runner(self) -> Runner:
        assert self.session.containers is not None  # set at configure
        try:
            return self.session.containers.runner()
        except EngineUnavailable as exc:
            problem = f"{self.case.id}: the container runner: {exc}"
        pytest.fail(problem, pytrace=False)

    def check(self, result: list[Measurement] | Reported) -> None:
        """Fail on a clear miss of the baseline target or (with --compare) a clear regression against the earlier
        run; an inconclusive verdict runs the case again (--rerun-inconclusive) until it is clear, else is reported
        as a warning. Every run must reach the quality target (MLPerf's olympic rule from 4 runs)."""
        if isinstance(result, Reported):
            verdicts = self._verdicts(Figure.exact(result.value))
        else:
            verdicts = until_conclusive(self._judge_runs, self._run_once, self.session.reruns)
            basis = training_interval(len(self.node.stash[MEASUREMENTS]), self.node.stash.get(BETWEEN, None))
            verdicts = resting_on(verdicts, basis)
        qualities = self.node.stash.get(QUALITIES, [])
        reached = against_quality(quality_across_runs(qualities)) if qualities else None  # none from an image's script
        failed = [v.message for v in [*verdicts, reached] if v and v.failed]
        fail_on(self.case, self.device, failed + doubtful(self.node))
        warn_inconclusive(self.case, verdicts)

    def _verdicts(self, measured: Figure) -> Verdicts:
        return judge(self.node, self.case)(measured, self.case.workload.unit, roof=roof(self.case, self.node))

    def _judge_runs(self) -> Verdicts:
        """The runs so far: one run's blocks, their interval widened by the host's between-process sd, or several
        runs' trimmed mean and spread."""
        runs = self.node.stash[MEASUREMENTS]
        between = None
        if len(runs) == 1:
            between = self.node.stash[BETWEEN] = self.session.between(self.device, self.lease)
        return self._verdicts(Figure.of(across_runs([m.summary() for m in runs], between)))


def _same_device_case(one: Case, other: Case) -> bool:
    """Two one-device cases that measure the same thing on the same GPU model."""
    a, b = one.settings, other.settings
    same = (one.precision, a.preset, a.device_batch, one.system.spec.accelerator.model)
    return same == (other.precision, b.preset, b.device_batch, other.system.spec.accelerator.model)


def judge(node: pytest.Item, case: Case) -> Judge:
    """What the test's figure is judged against (`MlperfSession.judge`), its case matched to the earlier run's with
    what the test ran: compiled or not, on which data."""
    return node.config.stash[SESSION].judge(case, node.stash.get(COMPILED, False), node.stash.get(DATA, "synthetic"))


def roof(case: Case, node: pytest.Item) -> Roof | None:
    """What turns the case's peak-fraction floor into a figure: the counted work of the test's model, if any."""
    work = node.stash.get(WORK, None)
    return Roof(work, case.items_per_query) if work else None


def until_conclusive(judge: Callable[[], Verdicts], rerun: Callable[[], object], reruns: int) -> Verdicts:
    """The verdicts; while one is inconclusive, run the case once more (at most `reruns` times) and judge again."""
    verdicts = judge()
    for _ in range(reruns):
        if not any(v.inconclusive for v in verdicts):
            break
        rerun()
        verdicts = judge()
    return verdicts


def resting_on(verdicts: Verdicts, basis: str) -> Verdicts:
    """The verdicts, each message saying what the figure's interval rests on (`results.repeats`'s `*_interval`)."""

    def said(verdict: Verdict) -> Verdict:
        return dataclasses.replace(verdict, message=f"{verdict.message}; the interval rests on {basis}")

    earlier = verdicts.earlier
    return Verdicts(said(verdicts.baseline), said(verdicts.floor), said(earlier) if earlier else None)


class Inconclusive(UserWarning):
    """A figure whose confidence interval straddles its target: neither a pass nor a regression (see --runs and
    --rerun-inconclusive)."""


def warn_inconclusive(case: Case, verdicts: Verdicts) -> None:
    for verdict in verdicts:
        if verdict.inconclusive:
            warnings.warn(Inconclusive(f"{case.id}: {verdict.message}"), stacklevel=2)


def doubtful(node: pytest.Item) -> list[str]:
    """With --strict-telemetry: the telemetry's flags on a phase long enough to judge (a GPU that throttled or sat
    idle, memory above the slice), as failures."""
    telemetry = node.stash.get(TELEMETRY, None)
    session = node.config.stash[SESSION]
    if not node.config.getoption("mlperf_strict_telemetry") or telemetry is None or telemetry.error:
        return []
    if len(telemetry.samples) < MIN_SAMPLES:
        return []
    return [f"telemetry: {flag}" for flag in telemetry.flags(memory_gb=session.slice_memory_gb)]


def fail_on(case: Case, device: torch.device, failures: list[str]) -> None:
    if failures:
        pytest.fail(f"{case.id} on {describe(device)}: " + "\n".join(failures), pytrace=False)


@pytest.fixture
def bench(
    request: pytest.FixtureRequest,
    case: Case,
    gpus: Lease,
    device: torch.device,
    dataset: Prepared | None,
    cores: Slice,
) -> Bench:
    return Bench(case, device, gpus, dataset, cores, request.config.stash[SESSION], request.node)


class Serve:
    """Serves a case's trained model to LoadGen: a performance run in the case's scenario, or the accuracy pass."""

    def __init__(
        self,
        case: Case,
        device: torch.device,
        lease: Lease,
        cores: Slice,
        logs: Path,
        session: MlperfSession,
        node: pytest.Item,
    ) -> None:
        if case.scenario is None:
            pytest.fail(f"{case.id}: the `serve` fixture needs an inference case", pytrace=False)
        self.case, self.scenario = case, case.scenario
        self.entry = case.system.spec.inference[case.benchmark]  #: the system file's inference entry
        self.device = device
        self.lease = lease
        self.cores = cores
        self.logs = logs / case.id  #: LoadGen's log folder
        self.session = session
        self.node = node
        assert case.workload.serving is not None  # check_against_workloads refuses inference of an unserved one
        self.serving = case.workload.serving
        samples = self.scenario.performance_sample_count
        assert samples is not None  # System.scenario sets it
        self.library = loadgen.SampleLibrary(samples, samples)
        self._predict: Answerer | None = None  #: the served model, kept for reruns of an inconclusive verdict
        self._calibration: calibration.Calibration | None = None  #: measured once per test, when needed
        self._recalibrated = False  #: whether an INVALID run called for a second calibration

    def _model(self) -> tuple[Trained, Answerer]:
        entry, case = self.entry, self.case
        try:
            samples = self.library.count
            return answering(
                case.workload, entry.preset, case.preset, self.device, entry.train_batch, samples, case.precision
            )
        except (RuntimeError, ValueError) as exc:
            problem = f"{case.id}: {exc}"
        pytest.fail(problem, pytrace=False)

    def _calibrated(self, predict: Answerer) -> calibration.Calibration:
        if self._calibration is None:
            self._calibration = calibration.calibrate(predict, self.library, self.scenario)
        return self._calibration

    def _run(self, predict: Answerer, fresh: bool = False) -> loadgen.LoadgenRun:
        """A LoadGen run in the test's process (recalibrated and run again once, should a calibrated setting make it
        INVALID), or in a `fresh` process of its own with the settings as they are."""
        if fresh:
            return self._in_fresh_process()
        try:
            if self._searching:
                run = self._peak(predict)
            else:
                run = self._measured(predict)
                wrong = calibration.misfit(self.scenario, run.result, pinned=False)
                if wrong is not None and not self._recalibrated:
                    self._recalibrate(predict, wrong, run.result)
                    run = self._measured(predict)
        except loadgen.PredictError as exc:
            problem = f"{self.case.id}: {exc}"
        else:
            self.node.stash.setdefault(LOADGEN, []).append(run)
            return run
        pytest.fail(problem, pytrace=False)

    def _in_fresh_process(self) -> loadgen.LoadgenRun:
        runs = self.node.stash.setdefault(LOADGEN, [])
        assert self.session.run_dir is not None  # set at configure
        out = self.session.run_dir / PROCESSES_DIR / self.case.id / f"run-{len(runs)}"
        samples = self.library.count
        scenario = calibration.unsettle(self.scenario)  # calibrated in that process, as it runs there
        run = serve_in_fresh_process(
            self.case, self.lease, self.cores, scenario, samples, out, self.logs / f"run-{len(runs)}"
        )
        if isinstance(run, str):
            pytest.fail(f"{run} (run {len(runs) + 1})", pytrace=False)
        runs.append(run)
        return run

    def _measured(self, predict: Answerer) -> loadgen.LoadgenRun:
        with self.session.sampler(self.lease, self.cores) as sampler:
            run = loadgen.run(predict, self.library, self.scenario, self.logs)
        self.node.stash[TELEMETRY] = sampler.telemetry
        return run

    def _recalibrate(self, predict: Answerer, wrong: calibration.Misfit, result: LoadgenResult) -> None:
        """A calibrated setting made the run INVALID: the calibration window did not foresee the run (the host's load
        changed, or the SUT's per-query overhead limits Server). Calibrate again, heeding what the run measured, once
        per test, and run again with the new settings (their source says why)."""
        self._recalibrated = True
        self._calibration, self.scenario = calibration.again(predict, self.library, self.scenario, result, wrong)

    @property
    def _searching(self) -> bool:
        return self.case.performance == "server" and bool(self.node.config.getoption("mlperf_find_peak"))

    def _peak(self, predict: Answerer) -> loadgen.LoadgenRun:
        """--find-peak-qps: the highest VALID Server target, searched from the system file's or the calibrated one;
        the run at that target is the result, every trial goes into the record."""
        start = time.perf_counter()
        search = loadgen.find_peak_qps(predict, self.library, self.scenario, self.logs)
        self.node.stash[PEAK] = search
        if search.peak_qps is None:
            tried = ", ".join(f"{t.target_qps:.4g} ({', '.join(t.failed_checks)})" for t in search.trials)
            pytest.fail(f"{self.case.id}: no Server target QPS was VALID; tried {tried}", pytrace=False)
        best = next(t for t in search.trials if t.target_qps == search.peak_qps and t.validity == "VALID")
        first = (
            f"--find-peak-qps from {self.scenario.server_target_qps:.4g} ({self.scenario.source('server_target_qps')})"
        )
        sources = tuple(p for p in self.scenario.sources if p[0] != "server_target_qps")
        scenario = dataclasses.replace(
            self.scenario, server_target_qps=search.peak_qps, sources=(*sources, ("server_target_qps", first))
        )
        folder = Path(best.log_dir)
        return loadgen.LoadgenRun(scenario, folder, parse_logs(folder), time.perf_counter() - start)

    def performance(self) -> list[loadgen.LoadgenRun]:
        """LoadGen runs of the case's scenario, one per --runs, the first in the test's process, each other in a fresh
        one (with --find-peak-qps, Server's peak search, once), with the host settings the system file leaves out
        calibrated on this host first; their logs stay in `logs` (a fresh process's run in run-<k>/ there).
        The served model's arithmetic (`Work`) goes into the record, against the lower of its roof measured before
        and after the runs."""
        model, predict = self._model()
        devices = self.case.settings.devices
        before = work(model, self.case.precision, self.device, self.scenario.max_batch, devices)
        if self.scenario.unset:
            self.scenario = self._calibrated(predict).settle(self.scenario)
        for n in range(1 if self._searching else self.session.runs):
            self._run(predict, fresh=n > 0)
        after = peak(self.device, served_math(self.case.precision, self.device))
        self.node.stash[WORK] = lower_roof(before, after, devices)
        self._predict = predict  # for the reruns of an inconclusive verdict
        return self.node.stash[LOADGEN]

    def check(self, runs: list[loadgen.LoadgenRun]) -> None:
        """An INVALID run fails, naming LoadGen's unmet checks and the settings it ran with (a value pinned in the
        system file that caused it, with the value to set); VALID ones are judged on the scenario's official metric
        (across runs: their trimmed mean and spread), its interval widened by the host's between-process sd, against
        the baseline, the floor and (with --compare) the earlier run, latencies lower-is-better; an inconclusive
        verdict reruns (--rerun-inconclusive) or warns."""
        predict = self._predict
        assert predict is not None  # set by performance()
        reruns = 0 if self._searching else self.session.reruns
        verdicts = until_conclusive(lambda: self._verdicts(runs), lambda: self._run(predict, fresh=True), reruns)
        verdicts = resting_on(verdicts, loadgen_interval(len(runs), self.node.stash.get(BETWEEN, None)))
        metric = runs[0].result.metric
        assert metric is not None  # _verdicts failed the test otherwise
        fail_on(self.case, self.device, [f"{metric.name}: {v.message}" for v in verdicts if v.failed])
        warn_inconclusive(self.case, verdicts)

    def _verdicts(self, runs: list[loadgen.LoadgenRun]) -> Verdicts:
        for n, run in enumerate(runs, 1):
            if not run.result.valid:
                which = f" in run {n} of {len(runs)}" if len(runs) > 1 else ""
                why = [f"{run.result.message}{which}", *self._invalid_settings(run)]
                fail_on(self.case, self.device, [*why, f"(LoadGen logs: {run.outdir})"])
        metrics = [run.result.metric for run in runs if run.result.metric]  # a VALID run always logs its metric
        between = None
        if len(metrics) == 1:  # several runs, each in a process of its own: their spread shows the term
            between = self.node.stash[BETWEEN] = self.session.between(self.device, self.lease)
        measured = Figure.of(across_loadgen_runs([m.value for m in metrics], between))
        judged = judge(self.node, self.case)
        return judged(measured, metrics[0].unit, metrics[0].lower_is_better, roof(self.case, self.node))

    def _invalid_settings(self, run: loadgen.LoadgenRun) -> list[str]:
        """What an INVALID run ran with, and the pinned setting that made it INVALID with the value to set (from the
        test's calibration, measured now if the run needed none)."""
        scenario = run.scenario
        lines = [f"LoadGen settings: {scenario.settings_text} ({scenario.sources_text})"]
        misfit = calibration.misfit(scenario, run.result)
        if misfit is not None:
            assert self._predict is not None  # set by performance()
            measured = self._calibrated(self._predict).heeding(run.result)
            key = pin_key(self.case.benchmark, scenario.name, misfit.setting)
            lines.append(
                f"{self.case.system.path}: {key}: {misfit.value:g} is {misfit.why}; set it to "
                f"{measured.settings[misfit.setting]:g} (calibrated here: {measured.describe()}), or remove it "
                "to calibrate it before every run"
            )
        return lines

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
        target = result.target * reference
        quality = QualityResult(serving.metric, result.value, target, model.quality.steps, run.seconds, result.met)
        self.node.stash[QUALITIES] = [quality]
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
def serve(request: pytest.FixtureRequest, case: Case, gpus: Lease, device: torch.device, cores: Slice) -> Serve:
    """A Serve whose LoadGen logs go to the run folder's loadgen/ (the controller's, under xdist too), on the test's
    `cores`."""
    session = request.config.stash[SESSION]
    assert session.run_dir is not None  # set at configure, on workers from the controller
    return Serve(case, device, gpus, cores, session.run_dir / "loadgen", session, request.node)
