"""LoadGen's host-dependent settings measured on the system under test, as submitters set them from their own figures.

Just before a performance run, `predict` is timed on the QSL's samples at the batch shape the scenario gives it (a
warm-up call, then calls until a short window has passed), and each setting the system file leaves out is derived
from the figure whose error is harmless for it:

- Offline `expected_qps` = OFFLINE_MARGIN x the fastest call's samples/s. LoadGen's one query holds 1.1 x
  min_duration x expected_qps samples, so it lasts the min duration unless the run answers 1.1 x OFFLINE_MARGIN
  times faster than the fastest calibration call; an overestimate only lengthens the run (to about 2.2 x the min
  duration at the calibrated speed).
- SingleStream and MultiStream expected latency = LATENCY_MARGIN x the fastest query's latency. LoadGen
  pre-generates 2 x min_duration of queries at that latency, so it runs out only if queries are 2 / LATENCY_MARGIN
  times faster than the fastest calibration call; an underestimate only pre-generates spare queries.
- Server's p99 latency bound = SERVER_BOUND x the median time of a `max_batch` predict + SCHEDULING_MS, and its
  target QPS = SERVER_LOAD x the capacity max_batch / that time. A query waits at most for the batch in progress
  and then its own (2 x) while arrivals stay below capacity; the rest of the multiple absorbs Poisson bursts, since
  LoadGen's early stopping wants none of the 459 queries of a short run late. SCHEDULING_MS is for the threads a
  query crosses (LoadGen's issuing thread, the SUT's worker, the GIL between them): their wake-ups take time slices
  on a shared CPU however fast it is (BERT's and DLRM's 1-10 ms batches had p99 latencies of 110-120 ms on this
  2-core VM with ~12 threads of other sessions runnable; their bound would otherwise be a few ms). The run lasts
  min_query_count / target_qps, about 115 x that median for 460 queries and max_batch 8. The median, not the
  fastest call: here an overestimate of the speed is what hurts.

A pinned value is used as given; when a run is INVALID because of it, `misfit` finds it (the failure then names it
and the calibrated value to set). When a calibrated one made the run INVALID (the window did not foresee the run, as
on a host whose load changed, or a Server target beyond what the SUT's per-query overhead allows), the caller
calibrates again, heeding what the INVALID run measured (`heeding`), and runs once more.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..results.loadgen_logs import LoadgenResult
from .loadgen import Predict, SampleLibrary, Scenario

OFFLINE_MARGIN = 2.0  #: Offline expected_qps over the fastest measured rate
LATENCY_MARGIN = 0.5  #: expected latency under the fastest measured one
SERVER_LOAD = 0.5  #: Server target as a fraction of the measured capacity
SERVER_BOUND = 8.0  #: Server p99 bound in median max_batch batch times...
SCHEDULING_MS = 200.0  #: ...plus this, for thread wake-ups on a shared CPU
WINDOW_S = 0.5  #: how long the timed calls last at least
MIN_CALLS = 3  #: timed calls, however long they take
WARMUP_CALLS = 1  #: untimed calls first (a first call builds kernels and buffers for its shape)
CALIBRATED = "calibrated"  #: how a calibrated setting's source starts


@dataclass(frozen=True)
class Timing:
    """`predict` timed on `batch` samples per call."""

    batch: int
    seconds: tuple[float, ...]  #: each timed call's

    @property
    def fastest_s(self) -> float:
        return min(self.seconds)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    def describe(self) -> str:
        rate = self.batch / self.median_s
        return (
            f"predict of {self.batch} sample{'s' if self.batch > 1 else ''}: median {1e3 * self.median_s:.3g} ms "
            f"({rate:.4g} samples/s), fastest {1e3 * self.fastest_s:.3g} ms, {len(self.seconds)} calls"
        )


@dataclass(frozen=True)
class Calibration:
    """What was measured for a scenario and the host settings derived from it (every one of the scenario's)."""

    scenario: str
    timing: Timing
    settings: dict[str, float]  #: Scenario field -> value
    heeded: str = ""  #: what an INVALID run measured that changed the settings

    def describe(self) -> str:
        return self.timing.describe() + (f"; {self.heeded}" if self.heeded else "")

    def settle(self, scenario: Scenario, note: str = "") -> Scenario:
        """`scenario` with its unset host settings taken from this calibration (the given ones kept); `note` says
        why it was calibrated, when not simply because nothing was given."""
        unset = scenario.unset
        if not unset:
            return scenario
        values = {name: self.settings[name] for name in unset}
        source = f"{CALIBRATED}{note}: {self.describe()}"
        return dataclasses.replace(scenario, **values, sources=scenario.sources + tuple((n, source) for n in unset))

    def heeding(self, result: LoadgenResult) -> Calibration:
        """These settings, moved in the safe direction by what an INVALID run itself measured: an Offline query
        that ended early answered at a real rate (expected QPS at least OFFLINE_MARGIN x it), a query of a run that
        ran out of queries took a real time (expected latency at most LATENCY_MARGIN x the fastest), and a Server
        run that was late completed a real rate (target at most SERVER_LOAD x it: halved, or below the SUT's
        capacity where its per-query overhead, which predict's timing misses, limits it)."""
        metric, fastest = result.metric, result.latency_ms.get("min")
        settings, heeded = dict(self.settings), ""
        if self.scenario == "offline" and metric is not None:
            settings["offline_expected_qps"] = max(settings["offline_expected_qps"], OFFLINE_MARGIN * metric.value)
            heeded = f"an INVALID run answered {metric.value:.4g} samples/s"
        elif self.scenario == "server" and metric is not None:
            settings["server_target_qps"] = min(settings["server_target_qps"], SERVER_LOAD * metric.value)
            heeded = f"an INVALID run completed {metric.value:.4g} samples/s"
        elif self.scenario in ("singlestream", "multistream") and fastest is not None:
            name = next(iter(settings))
            settings[name] = min(settings[name], LATENCY_MARGIN * fastest)
            heeded = f"an INVALID run's fastest query took {fastest:.4g} ms"
        rounded = {name: _round(value) for name, value in settings.items()}
        return dataclasses.replace(self, settings=rounded, heeded=heeded)


def calibrated(scenario: Scenario) -> set[str]:
    """The scenario's host settings that were calibrated (the others given)."""
    return {name for name, source in scenario.sources if source.startswith(CALIBRATED)}


def unsettle(scenario: Scenario) -> Scenario:
    """`scenario` without its calibrated settings, to calibrate them again."""
    drop = calibrated(scenario)
    sources = tuple((name, source) for name, source in scenario.sources if name not in drop)
    return dataclasses.replace(scenario, **dict.fromkeys(drop), sources=sources)


def _round(value: float) -> float:
    """Three significant figures: a setting a person can read and pin."""
    return float(f"{value:.3g}")


def shape(scenario: Scenario) -> tuple[int, int]:
    """(samples per predict call, calls per query) as the SUT serves the scenario: full batches in Offline and at
    worst in Server, one sample in SingleStream, a MultiStream query in max_batch-sized calls."""
    if scenario.name == "singlestream":
        return 1, 1
    if scenario.name == "multistream":
        per_query = scenario.multi_stream_samples_per_query
        batch = min(scenario.max_batch, per_query)
        return batch, math.ceil(per_query / batch)
    return scenario.max_batch, 1


def time_predict(
    predict: Predict,
    library: SampleLibrary,
    batch: int,
    window_s: float = WINDOW_S,
    min_calls: int = MIN_CALLS,
    warmup: int = WARMUP_CALLS,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time `predict` on successive `batch`-sample slices of the QSL's in-memory samples (loaded first and unloaded
    after, as LoadGen does): `warmup` untimed calls, then calls until `window_s` has passed and at least
    `min_calls` were made. The calls run on a thread of their own, as the SUT's worker makes them: torch's OpenMP
    team differs per calling thread, and under contention the main thread's ran 10-20x slower here than a new
    thread's (its workers spin-wait). `clock` is the timer (a test's can be fake)."""
    indices = list(range(library.performance_sample_count))
    chunks = ([indices[(at + i) % len(indices)] for i in range(batch)] for at in itertools.count(0, batch))
    seconds: list[float] = []
    failure: list[BaseException] = []

    def calls() -> None:
        try:
            for _ in range(warmup):
                predict(next(chunks))
            window = clock()
            while len(seconds) < min_calls or clock() - window < window_s:
                chunk = next(chunks)
                start = clock()
                predict(chunk)
                seconds.append(clock() - start)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    library.load(indices)
    try:
        worker = threading.Thread(target=calls, name="calibration")
        worker.start()
        worker.join()
    finally:
        library.unload(indices)
    if failure:
        raise failure[0]
    return Timing(batch, tuple(seconds))


def calibrate(
    predict: Predict,
    library: SampleLibrary,
    scenario: Scenario,
    window_s: float = WINDOW_S,
    min_calls: int = MIN_CALLS,
    warmup: int = WARMUP_CALLS,
    clock: Callable[[], float] = time.perf_counter,
) -> Calibration:
    """Time `predict` at the scenario's batch shape and derive every host setting of the scenario (module doc)."""
    batch, calls = shape(scenario)
    timing = time_predict(predict, library, batch, window_s, min_calls, warmup, clock)
    if scenario.name == "offline":
        settings = {"offline_expected_qps": OFFLINE_MARGIN * batch / timing.fastest_s}
    elif scenario.name == "server":
        settings = {
            "server_target_qps": SERVER_LOAD * batch / timing.median_s,
            "server_target_latency_ms": SERVER_BOUND * 1e3 * timing.median_s + SCHEDULING_MS,
        }
    elif scenario.name == "singlestream":
        settings = {"single_stream_expected_latency_ms": LATENCY_MARGIN * 1e3 * timing.fastest_s}
    else:
        settings = {"multi_stream_expected_latency_ms": LATENCY_MARGIN * 1e3 * calls * timing.fastest_s}
    return Calibration(scenario.name, timing, {name: _round(value) for name, value in settings.items()})


def again(
    predict: Predict, library: SampleLibrary, scenario: Scenario, result: LoadgenResult, wrong: Misfit
) -> tuple[Calibration, Scenario]:
    """After the calibrated setting `wrong` made a run INVALID: a new calibration heeding what the run measured, and
    the scenario settled with it (its source says why)."""
    calibration = calibrate(predict, library, scenario).heeding(result)
    note = f" again, after {wrong.setting}={wrong.value:g} made a run INVALID ({', '.join(result.failed_checks)})"
    return calibration, calibration.settle(unsettle(scenario), note)


@dataclass(frozen=True)
class Misfit:
    """A host setting whose value made a run INVALID on this host."""

    setting: str  #: the Scenario field
    value: float
    why: str


#: LoadGen's unmet checks that a wrong setting of each kind causes, and why
_SYMPTOMS = {
    "offline_expected_qps": (
        {"min duration"},
        "too low for this host: LoadGen's one query ended before the min duration",
    ),
    "server_target_qps": ({"latency constraint", "early stopping"}, "too high for this host: queries were late"),
    "server_target_latency_ms": ({"latency constraint", "early stopping"}, "too low for this host: queries were late"),
    "single_stream_expected_latency_ms": (
        {"min duration", "min queries", "early stopping"},
        "too high for this host: LoadGen ran out of pre-generated queries",
    ),
}
_SYMPTOMS["multi_stream_expected_latency_ms"] = _SYMPTOMS["single_stream_expected_latency_ms"]


def misfit(scenario: Scenario, result: LoadgenResult, pinned: bool = True) -> Misfit | None:
    """The setting of an INVALID run whose value explains its unmet checks, among the given ones (`pinned`) or the
    calibrated ones; for Server the target before the bound (a pinned bound is MLPerf's; the target is what a host
    sets). A pinned one's value to set is a calibration's; a calibrated one calls for a fresh calibration (the
    calibration window did not foresee the run, e.g. on a host whose load changed)."""
    if result.valid:
        return None
    wanted = set(scenario.host_settings) - calibrated(scenario) if pinned else calibrated(scenario)
    for name, value in scenario.host_settings.items():
        checks, why = _SYMPTOMS[name]
        if value is not None and name in wanted and checks & set(result.failed_checks):
            return Misfit(name, value, why)
    return None
