"""Running a model under MLPerf LoadGen: scenario settings, a batching SUT, a QSL and our Server peak search.

LoadGen (the `mlcommons-loadgen` wheel, imported as `mlperf_loadgen`) owns the clock, the query schedule and the
verdict; this module only adapts a `predict(indices) -> outputs` callable to it. The SUT answers from one
long-lived worker thread: `issue_queries` only enqueues, so LoadGen's issuing thread is never blocked by the model,
and samples are completed from a thread that outlives the run (completing thousands of samples from short-lived
Python threads can crash LoadGen's logger, mlcommons/inference #1337).
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlperf_loadgen as lg
import numpy as np

from ..results.loadgen_logs import ACCURACY, DETAIL, SUMMARY, LoadgenResult, accuracy_outputs, parse_logs

#: predict(QSL indices) -> one output per index: bytes, or anything numpy can turn into a contiguous array
Predict = Callable[[list[int]], Sequence[Any]]

SCENARIOS = {
    "offline": lg.TestScenario.Offline,
    "server": lg.TestScenario.Server,
    "singlestream": lg.TestScenario.SingleStream,
    "multistream": lg.TestScenario.MultiStream,
}
MODES = {"performance": lg.TestMode.PerformanceOnly, "accuracy": lg.TestMode.AccuracyOnly}
#: the settings of each scenario that depend on the speed of the system under test: LoadGen pre-generates queries
#: for 2 x min_duration at the expected rate, so a guess far from the truth makes a run INVALID (too few queries, an
#: Offline query that ends early, late Server queries) or needlessly long. Left unset, they are calibrated on the host
#: (`pytest_mlperf.run.calibration`); a performance run needs every one of its scenario's set.
HOST_SETTINGS = {
    "offline": ("offline_expected_qps",),
    "server": ("server_target_qps", "server_target_latency_ms"),
    "singlestream": ("single_stream_expected_latency_ms",),
    "multistream": ("multi_stream_expected_latency_ms",),
}


@dataclass(frozen=True)
class Scenario:
    """What LoadGen is asked to run. Durations and counts default to LoadGen's own defaults, not an official
    submission's (600000 ms); the settings HOST_SETTINGS names for the scenario are None until given or calibrated,
    and `sources` says where each set one came from."""

    name: str = "offline"  #: offline, server, singlestream or multistream
    mode: str = "performance"  #: performance or accuracy
    min_duration_ms: int = 10_000
    min_query_count: int = 100
    offline_expected_qps: float | None = None
    server_target_qps: float | None = None
    server_target_latency_ms: float | None = None  #: the p99 latency bound of the Server scenario
    single_stream_expected_latency_ms: float | None = None
    multi_stream_samples_per_query: int = 8
    multi_stream_expected_latency_ms: float | None = None
    max_batch: int = 1  #: the most samples the SUT groups into one predict call
    performance_sample_count: int | None = None  #: overrides the QSL's, when given
    #: (setting, where its value came from) for host settings, e.g. ("offline_expected_qps", "system file")
    sources: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.name not in SCENARIOS:
            raise ValueError(f"Scenario.name: unknown scenario {self.name!r}; expected one of {', '.join(SCENARIOS)}")
        if self.mode not in MODES:
            raise ValueError(f"Scenario.mode: unknown mode {self.mode!r}; expected one of {', '.join(MODES)}")
        for name in (
            "min_duration_ms",
            "min_query_count",
            "multi_stream_samples_per_query",
            "max_batch",
            *itertools.chain(*HOST_SETTINGS.values()),
            "performance_sample_count",
        ):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"Scenario.{name} must be positive, got {value!r}")

    @property
    def host_settings(self) -> dict[str, float | None]:
        """The scenario's host-dependent settings and their values (None: not set yet)."""
        return {name: getattr(self, name) for name in HOST_SETTINGS[self.name]}

    @property
    def unset(self) -> list[str]:
        """The host settings a performance run still needs (none in accuracy mode, which runs every sample once)."""
        return [n for n, v in self.host_settings.items() if v is None] if self.mode == "performance" else []

    def source(self, setting: str) -> str:
        return dict(self.sources).get(setting, "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        return cls(**{**data, "sources": tuple(tuple(pair) for pair in data.get("sources", ()))})

    @property
    def settings_text(self) -> str:
        """The host settings that are set, e.g. "offline_expected_qps=780"."""
        return ", ".join(f"{name}={value:g}" for name, value in self.host_settings.items() if value is not None)

    @property
    def sources_text(self) -> str:
        """Where they came from: one source for all, or each setting's."""
        sources = [(name, self.source(name)) for name, value in self.host_settings.items() if value is not None]
        if len({source for _, source in sources}) == 1:
            return sources[0][1]
        return "; ".join(f"{name}: {source}" for name, source in sources if source)

    def to_settings(self) -> lg.TestSettings:
        if self.unset:
            raise ValueError(
                f"Scenario.{', '.join(self.unset)} not set for the {self.name} scenario: give it, or calibrate it on "
                "the system under test (pytest_mlperf.run.calibration)"
            )
        settings = lg.TestSettings()
        settings.scenario, settings.mode = SCENARIOS[self.name], MODES[self.mode]
        settings.min_duration_ms = self.min_duration_ms
        settings.min_query_count = self.min_query_count
        settings.multi_stream_samples_per_query = self.multi_stream_samples_per_query
        if self.offline_expected_qps is not None:
            settings.offline_expected_qps = self.offline_expected_qps
        if self.server_target_qps is not None:
            settings.server_target_qps = self.server_target_qps
        if self.server_target_latency_ms is not None:
            settings.server_target_latency_ns = round(self.server_target_latency_ms * 1e6)
        if self.single_stream_expected_latency_ms is not None:
            settings.single_stream_expected_latency_ns = round(self.single_stream_expected_latency_ms * 1e6)
        if self.multi_stream_expected_latency_ms is not None:
            settings.multi_stream_expected_latency_ns = round(self.multi_stream_expected_latency_ms * 1e6)
        if self.performance_sample_count is not None:
            settings.performance_sample_count_override = self.performance_sample_count
        return settings


def _ignore(indices: list[int]) -> None:
    """A QSL whose samples need no loading (synthetic data already in memory)."""


@dataclass(frozen=True)
class SampleLibrary:
    """LoadGen's QSL: `count` samples, of which `performance_sample_count` fit in memory at once; LoadGen calls
    `load` with the indices it is about to use (untimed) and `unload` when done with them."""

    count: int
    performance_sample_count: int
    load: Callable[[list[int]], None] = _ignore
    unload: Callable[[list[int]], None] = _ignore

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"SampleLibrary.count must be positive, got {self.count}")
        if not 1 <= self.performance_sample_count <= self.count:
            raise ValueError(
                f"SampleLibrary.performance_sample_count must be in 1..count ({self.count}), "
                f"got {self.performance_sample_count}"
            )


class PredictError(RuntimeError):
    """predict raised (or returned the wrong number of outputs) during a LoadGen run; the run was completed with
    empty answers so that LoadGen could finish, and its result is worthless."""

    def __init__(self, indices: list[int], cause: BaseException) -> None:
        super().__init__(f"predict failed on samples {indices}: {type(cause).__name__}: {cause}")
        self.indices = indices
        self.__cause__ = cause


def _address(buffer: np.ndarray) -> int:
    """Where a contiguous array's data starts; through ctypes when it can, 3x faster than `buffer.ctypes.data`
    (which costs microseconds, a batch's worth of samples for a fast SUT) but only for writable, non-empty data."""
    if buffer.flags.writeable and buffer.nbytes:
        return ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    return buffer.ctypes.data


def _pack(outputs: Sequence[Any], count: int) -> tuple[Any, Iterable[int], Iterable[int]]:
    """One buffer holding a batch's outputs: (the buffer, to keep alive; each output's address; each one's size).
    A batch-major array is used as it is; a list of outputs is joined into one buffer, one copy."""
    if len(outputs) != count:
        raise ValueError(f"predict returned {len(outputs)} outputs for {count} samples")
    if isinstance(outputs, np.ndarray):
        buffer = np.ascontiguousarray(outputs)
        size = buffer.nbytes // count
        return buffer, itertools.count(_address(buffer), size), itertools.repeat(size)
    parts = [o if isinstance(o, bytes | bytearray | memoryview) else np.ascontiguousarray(o) for o in outputs]
    sizes = [memoryview(part).nbytes for part in parts]
    buffer = np.frombuffer(bytearray().join(parts), np.uint8)
    return buffer, itertools.accumulate(sizes, initial=_address(buffer)), sizes


class BatchingSut:
    """LoadGen's SUT: queries are queued by `issue_queries` and answered by one worker thread that groups up to
    `max_batch` waiting samples into each `predict` call (dynamic batching in Server, fixed-size in Offline).

    It is a LoadGen "fast" SUT, given each query as lists of ids and indices: reading them from LoadGen's
    QuerySample objects instead costs about 1 us per sample in Python, as much as LoadGen's own per-sample work."""

    def __init__(self, predict: Predict, max_batch: int) -> None:
        self._predict, self._max_batch = predict, max_batch
        self._queue: queue.SimpleQueue[tuple[list[int], list[int]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="loadgen-sut", daemon=True)
        self.error: PredictError | None = None  #: the first failure; later samples are answered empty

    def issue_queries(self, ids: list[int], indices: list[int]) -> None:
        self._queue.put((ids, indices))

    def flush_queries(self) -> None:
        """Nothing is held back: the worker batches only what is already waiting."""

    def __enter__(self) -> BatchingSut:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        ids: list[int] = []
        indices: list[int] = []
        at = 0  # the first unanswered sample (an Offline query is one list of every sample: never sliced whole)
        while True:
            if at == len(ids):
                query = self._queue.get()
                if query is None:
                    return
                (ids, indices), at = query, 0
            if len(ids) - at < self._max_batch:  # top up with queries that have already arrived, without waiting
                ids, indices, at = ids[at:], indices[at:], 0
                while len(ids) < self._max_batch:
                    try:
                        query = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if query is None:
                        self._queue.put(None)  # stop once the samples in hand are answered
                        break
                    ids, indices = ids + query[0], indices + query[1]
            end = min(at + self._max_batch, len(ids))
            self._answer(ids[at:end], indices[at:end])
            at = end

    def _answer(self, ids: list[int], indices: list[int]) -> None:
        if self.error is None:
            try:
                buffer, addresses, sizes = _pack(self._predict(indices), len(ids))
            except Exception as exc:  # LoadGen must still get every sample back, or it waits forever
                self.error = PredictError(indices, exc)
            else:
                lg.QuerySamplesComplete(list(map(lg.QuerySampleResponse, ids, addresses, sizes)))
                del buffer  # only now: LoadGen has copied what it logs
                return
        lg.QuerySamplesComplete(list(map(lg.QuerySampleResponse, ids, itertools.repeat(0), itertools.repeat(0))))


@dataclass(frozen=True)
class LoadgenRun:
    scenario: Scenario
    outdir: Path  #: LoadGen's log folder
    result: LoadgenResult
    seconds: float  #: wall time of StartTest, sample loading included

    @property
    def summary(self) -> Path:
        return self.outdir / SUMMARY

    @property
    def detail(self) -> Path:
        return self.outdir / DETAIL

    @property
    def accuracy_log(self) -> Path:
        return self.outdir / ACCURACY

    def outputs(self) -> dict[int, bytes]:
        """Every logged sample's output bytes (all samples in accuracy mode)."""
        return accuracy_outputs(self.accuracy_log)


_ONE_AT_A_TIME = threading.Lock()  # LoadGen is a process-wide singleton


def run(predict: Predict, library: SampleLibrary, scenario: Scenario, outdir: Path, trace: bool = False) -> LoadgenRun:
    """One LoadGen test of `predict`, logged to `outdir`. Raises PredictError (after LoadGen has finished and been
    torn down) when predict failed during the run."""
    if not _ONE_AT_A_TIME.acquire(blocking=False):
        raise RuntimeError("a LoadGen run is already in progress in this process; LoadGen runs one test at a time")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = str(outdir)
        log_settings.enable_trace = trace
        with BatchingSut(predict, scenario.max_batch) as sut:
            sut_handle = lg.ConstructFastSUT(sut.issue_queries, sut.flush_queries)
            try:
                qsl_handle = lg.ConstructQSL(
                    library.count, library.performance_sample_count, library.load, library.unload
                )
                try:
                    start = time.perf_counter()
                    lg.StartTestWithLogSettings(sut_handle, qsl_handle, scenario.to_settings(), log_settings)
                    seconds = time.perf_counter() - start
                finally:
                    lg.DestroyQSL(qsl_handle)
            finally:
                lg.DestroyFastSUT(sut_handle)
    finally:
        _ONE_AT_A_TIME.release()
    if sut.error is not None:
        raise sut.error
    return LoadgenRun(scenario, outdir, parse_logs(outdir), seconds)


@dataclass(frozen=True)
class Trial:
    """One Server run of the peak search (plain data, for the results)."""

    target_qps: float
    validity: str
    achieved_qps: float  #: completed samples per second
    p99_ms: float
    failed_checks: tuple[str, ...]
    log_dir: str


@dataclass(frozen=True)
class PeakSearch:
    peak_qps: float | None  #: the highest VALID target tried; None when no target was VALID
    converged: bool  #: the VALID and INVALID targets are within the requested precision
    trials: tuple[Trial, ...]


def find_peak_qps(
    predict: Predict,
    library: SampleLibrary,
    scenario: Scenario,
    outdir: Path,
    max_trials: int = 12,
    precision: float = 0.05,
) -> PeakSearch:
    """The highest Server target QPS that LoadGen judges VALID (all checks, early stopping included; LoadGen's own
    FindPeakPerformance mode checks only latency). From `scenario.server_target_qps`, double until INVALID (or halve
    until VALID), then bisect until the VALID and INVALID targets are within `precision` of each other."""
    if scenario.name != "server":
        raise ValueError(f"find_peak_qps searches the server scenario, not {scenario.name!r}")
    if not 0 < precision < 1 or max_trials < 1:
        raise ValueError(f"find_peak_qps needs 0 < precision < 1 and max_trials >= 1, got {precision}, {max_trials}")
    if scenario.server_target_qps is None:
        raise ValueError("find_peak_qps starts from scenario.server_target_qps: give or calibrate it")
    trials: list[Trial] = []
    valid: float | None = None
    invalid: float | None = None
    target = scenario.server_target_qps
    while len(trials) < max_trials:
        folder = outdir / f"trial{len(trials) + 1:02d}-{target:.6g}qps"
        result = run(predict, library, dataclasses.replace(scenario, server_target_qps=target), folder).result
        assert result.metric is not None  # Server's metric is always logged
        trials.append(
            Trial(
                target,
                result.validity or "",
                result.metric.value,
                result.latency_ms["p99"],
                result.failed_checks,
                str(folder),
            )
        )
        if result.valid:
            valid = target
        else:
            invalid = target
        if valid is not None and invalid is not None and (invalid - valid) / valid <= precision:
            return PeakSearch(valid, True, tuple(trials))
        if invalid is None:
            target *= 2
        elif valid is None:
            target /= 2
        else:
            target = (valid + invalid) / 2
    return PeakSearch(valid, False, tuple(trials))
