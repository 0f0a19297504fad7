"""Calibration of LoadGen's host settings (`pytest_mlperf.run.calibration`): the timing loop on a fake clock that the
SUT advances by a known cost per call (so every figure is exact on any machine), the settings derived from what was
measured with the stated margins, what a pin does, and real LoadGen runs of sleeping SUTs that the calibrated
settings make VALID."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pytest_mlperf.results.loadgen_logs import LoadgenResult, parse_logs
from pytest_mlperf.run import calibration
from pytest_mlperf.run.calibration import Misfit, calibrate, misfit, time_predict, unsettle
from pytest_mlperf.run.loadgen import SampleLibrary, Scenario, run


class FakeSut:
    """A predict that costs `base + per_sample x batch` seconds of a fake clock, every `slow_every`-th call twice
    that (so the fastest and the median call differ), and records what it was asked and on which thread."""

    def __init__(self, base: float = 0.010, per_sample: float = 0.001, slow_every: int = 3) -> None:
        self.now, self.base, self.per_sample, self.slow_every = 100.0, base, per_sample, slow_every
        self.calls: list[list[int]] = []
        self.threads: set[str] = set()

    def clock(self) -> float:
        return self.now

    def cost(self, batch: int, slow: bool = False) -> float:
        return (self.base + self.per_sample * batch) * (2 if slow else 1)

    def __call__(self, indices: list[int]) -> np.ndarray:
        self.calls.append(indices)
        self.threads.add(threading.current_thread().name)
        self.now += self.cost(len(indices), len(self.calls) % self.slow_every == 0)
        return np.zeros((len(indices), 1), np.float32)


def test_time_predict_warms_up_then_times_calls_until_the_window_has_passed() -> None:
    sut, loaded, unloaded = FakeSut(), [], []
    library = SampleLibrary(100, 10, load=loaded.append, unload=unloaded.append)
    timing = time_predict(sut, library, 4, window_s=0.5, min_calls=3, warmup=1, clock=sut.clock)
    assert loaded == unloaded == [list(range(10))]  # the in-memory samples, as LoadGen loads them
    assert sut.calls[:3] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]  # successive slices, wrapping around
    assert len(sut.calls) == 1 + len(timing.seconds)  # one untimed warm-up call
    # calls of 14 ms, every third 28 ms (the warm-up was the first): timed until 0.5 s had passed, not one more
    expected = [sut.cost(4, (n + 2) % 3 == 0) for n in range(len(timing.seconds))]
    assert timing.seconds == pytest.approx(expected)
    assert sum(timing.seconds[:-1]) < 0.5 <= sum(timing.seconds)
    assert (timing.batch, timing.fastest_s, timing.median_s) == (4, pytest.approx(0.014), pytest.approx(0.014))
    assert sut.threads == {"calibration"}  # on a thread of its own, as the SUT's worker calls predict


def test_a_slow_predict_is_timed_min_calls_times() -> None:
    sut = FakeSut(base=2.0)
    timing = time_predict(sut, SampleLibrary(8, 8), 1, window_s=0.5, min_calls=3, warmup=2, clock=sut.clock)
    assert len(timing.seconds) == 3 and len(sut.calls) == 5


@pytest.mark.parametrize(
    ("scenario", "batch", "settings"),
    [
        # the fastest call of 32 samples takes 42 ms: 2 x 762 samples/s
        (Scenario("offline", max_batch=32), 32, {"offline_expected_qps": 2.0 * 32 / 0.042}),
        # the median call of 8 samples takes 18 ms: half of 444 samples/s, and 8 x 18 ms + 200 ms for the scheduler
        (
            Scenario("server", max_batch=8),
            8,
            {"server_target_qps": 0.5 * 8 / 0.018, "server_target_latency_ms": 8 * 18 + 200},
        ),
        (Scenario("singlestream", max_batch=8), 1, {"single_stream_expected_latency_ms": 0.5 * 11}),
        # a query of 8 samples answered in calls of 4: 2 x 14 ms
        (Scenario("multistream", max_batch=4), 4, {"multi_stream_expected_latency_ms": 0.5 * 2 * 14}),
    ],
)
def test_settings_follow_the_measured_times_with_the_stated_margins(
    scenario: Scenario, batch: int, settings: dict[str, float]
) -> None:
    sut = FakeSut()
    measured = calibrate(sut, SampleLibrary(64, 64), scenario, window_s=0.3, clock=sut.clock)
    assert measured.scenario == scenario.name and measured.timing.batch == batch
    assert {len(call) for call in sut.calls} == {batch}
    assert set(measured.settings) == set(scenario.host_settings)  # every one, pinned or not
    for name, value in settings.items():
        assert measured.settings[name] == pytest.approx(value, rel=0.005)  # three significant figures
    assert (calibration.OFFLINE_MARGIN, calibration.LATENCY_MARGIN) == (2.0, 0.5)
    assert (calibration.SERVER_LOAD, calibration.SERVER_BOUND, calibration.SCHEDULING_MS) == (0.5, 8.0, 200.0)


def figure(result: LoadgenResult) -> float:
    assert result.metric is not None
    return result.metric.value


#: the recorded INVALID runs (real LoadGen output, fixtures/loadgen/record.py), a calibration that alone would repeat
#: their mistake (so slow or so fast a SUT), and the setting each run's own figure moves in the safe direction
HEEDED = [
    # an Offline query that ended early answered at a real rate: expect at least twice it
    ("offline-short", Scenario("offline", max_batch=16), 100.0, "offline_expected_qps", lambda r: 2 * figure(r)),
    # a late Server run completed a real rate: offer at most half of it
    ("server-overloaded", Scenario("server"), 1e-6, "server_target_qps", lambda r: 0.5 * figure(r)),
    # a run that ran out of queries: expect at most half its fastest query's latency
    ("singlestream-short", Scenario("singlestream"), 100.0, "single_stream_expected_latency_ms",
     lambda r: 0.5 * r.latency_ms["min"]),
]  # fmt: skip


@pytest.mark.parametrize(("folder", "scenario", "cost", "setting", "moved"), HEEDED, ids=[h[0] for h in HEEDED])
def test_a_calibration_heeds_what_an_invalid_run_measured(
    folder: str, scenario: Scenario, cost: float, setting: str, moved: Callable[[LoadgenResult], float]
) -> None:
    result = parse_logs(Path(__file__).resolve().parent.parent / "fixtures" / "loadgen" / folder)
    assert not result.valid
    sut = FakeSut(base=cost, per_sample=0)
    measured = calibrate(sut, SampleLibrary(16, 16), scenario, window_s=0.1, clock=sut.clock)
    heeded = measured.heeding(result)
    assert heeded.settings[setting] == pytest.approx(moved(result), rel=0.005)
    assert heeded.settings[setting] != measured.settings[setting]
    assert heeded.describe().startswith(measured.timing.describe() + "; an INVALID run")
    assert heeded.settle(scenario).source(setting).endswith(heeded.heeded)
    # a run without the figure leaves the calibration as it was
    assert measured.heeding(dataclasses.replace(result, metric=None, latency_ms={})).settings == measured.settings


def test_settle_fills_what_is_unset_and_keeps_pins() -> None:
    sut = FakeSut()
    pinned = Scenario("server", server_target_latency_ms=15, sources=(("server_target_latency_ms", "system file"),))
    measured = calibrate(sut, SampleLibrary(16, 16), pinned, window_s=0.1, clock=sut.clock)
    settled = measured.settle(pinned)
    assert (
        settled.server_target_latency_ms == 15 and settled.server_target_qps == measured.settings["server_target_qps"]
    )
    assert settled.unset == [] and pinned.unset == ["server_target_qps"]
    assert settled.source("server_target_latency_ms") == "system file"
    assert settled.source("server_target_qps") == f"calibrated: {measured.timing.describe()}"
    assert settled.settings_text == f"server_target_qps={settled.server_target_qps:g}, server_target_latency_ms=15"
    assert settled.sources_text == (
        f"server_target_qps: calibrated: {measured.timing.describe()}; server_target_latency_ms: system file"
    )
    # calibrating again (after an INVALID run) replaces the calibrated setting only, and says why
    assert unsettle(settled) == pinned
    again = measured.settle(unsettle(settled), " again, after a run was INVALID")
    assert again.source("server_target_qps").startswith(
        "calibrated again, after a run was INVALID: predict of 1 sample"
    )
    assert again.source("server_target_latency_ms") == "system file"
    offline = Scenario("offline", max_batch=2)
    settled = calibrate(sut, SampleLibrary(16, 16), offline, window_s=0.1, clock=sut.clock).settle(offline)
    assert settled.sources_text.startswith("calibrated: predict of 2 samples: median ")
    assert settled.unset == []
    with pytest.raises(ValueError, match=r"Scenario\.offline_expected_qps not set for the offline scenario"):
        offline.to_settings()
    Scenario("offline", "accuracy").to_settings()  # an accuracy pass needs no rate


def test_a_failing_predict_raises_in_the_caller() -> None:
    def broken(indices: list[int]) -> None:
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError, match="boom"):
        time_predict(broken, SampleLibrary(4, 4), 2)


def sleepy(seconds: float):
    def predict(indices: list[int]) -> np.ndarray:
        time.sleep(seconds)
        return np.zeros((len(indices), 2), np.float32)

    return predict


@pytest.mark.parametrize(
    ("scenario", "seconds"),
    [
        (Scenario("offline", min_duration_ms=300, min_query_count=1, max_batch=16), 0.001),
        (Scenario("server", min_duration_ms=300, min_query_count=460, max_batch=4), 0.005),
        (Scenario("singlestream", min_duration_ms=300, min_query_count=64), 0.001),
        (Scenario("multistream", min_duration_ms=300, min_query_count=662, max_batch=8), 0.001),
    ],
    ids=lambda x: getattr(x, "name", ""),
)
def test_calibrated_settings_make_loadgen_runs_valid(scenario: Scenario, seconds: float, tmp_path: Path) -> None:
    predict, library = sleepy(seconds), SampleLibrary(64, 64)
    measured = calibrate(predict, library, scenario, window_s=0.1)
    # a sleeping SUT is at best as fast as its sleep: every figure has that floor on any machine
    assert measured.timing.fastest_s >= seconds
    done = run(predict, library, measured.settle(scenario), tmp_path)
    assert done.result.valid, done.result.message
    assert done.scenario.unset == [] and done.scenario.sources_text.startswith("calibrated: ")


def test_misfit_names_the_pinned_setting_that_made_a_run_invalid(tmp_path: Path) -> None:
    # 1 sample/s expected: LoadGen's one query of 1.1 x 0.3 s x 1 samples ends long before 0.3 s on any machine
    pinned = Scenario("offline", min_duration_ms=300, min_query_count=1, offline_expected_qps=1)
    pinned = dataclasses.replace(pinned, sources=(("offline_expected_qps", "system file"),))
    result = run(sleepy(0.001), SampleLibrary(8, 8), pinned, tmp_path).result
    assert not result.valid and "min duration" in result.failed_checks
    assert misfit(pinned, result) == Misfit(
        "offline_expected_qps", 1, "too low for this host: LoadGen's one query ended before the min duration"
    )
    calibrated = dataclasses.replace(pinned, sources=(("offline_expected_qps", "calibrated: ..."),))
    assert misfit(calibrated, result) is None  # not a pin: nothing in the system file to change
    assert misfit(calibrated, result, pinned=False) == misfit(pinned, result)  # a calibration to repeat


def test_misfit_blames_a_pinned_server_target_before_the_bound(tmp_path: Path) -> None:
    # 3000 queries/s offered to a SUT answering at most 200/s: queries are late on any machine
    server = Scenario("server", min_duration_ms=300, min_query_count=100, server_target_qps=3000,
                      server_target_latency_ms=20)  # fmt: skip
    result = run(sleepy(0.005), SampleLibrary(8, 8), server, tmp_path).result
    assert not result.valid and "latency constraint" in result.failed_checks
    found = misfit(server, result)
    assert found is not None and (found.setting, found.value) == ("server_target_qps", 3000)
    bound_only = dataclasses.replace(server, sources=(("server_target_qps", "calibrated: ..."),))
    found = misfit(bound_only, result)
    assert found is not None and found.setting == "server_target_latency_ms"
