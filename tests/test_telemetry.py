"""Telemetry: summaries and flags from replayed GPUs (the busy and the idle A100 of 2x-a100.json, the throttling one
of throttling.json), CPU and memory sampling on this machine, a failing read ending sampling without failing the
test, prompt stopping, the JSON round trip, and the cost of one sample."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest

from pytest_mlperf.resources.nvml import Gpu, Nvml, Reading, open_nvml
from pytest_mlperf.resources.telemetry import MIN_SAMPLES, Sampler, Telemetry

REPLAYS = Path(__file__).resolve().parent.parent / "fixtures" / "nvml"


def replay(name: str) -> Nvml:
    nvml = open_nvml(REPLAYS / name)
    assert isinstance(nvml, Nvml)
    return nvml


def sampled(name: str, samples: int) -> Telemetry:
    """`samples` samples of every GPU of a replay, taken directly (no thread, so exactly that many)."""
    nvml = replay(name)
    sampler = Sampler(nvml, nvml.gpus(), cpus=[0])
    for _ in range(samples):
        sampler.sample()
    return sampler.telemetry


def test_summary_of_a_busy_and_an_idle_gpu() -> None:
    devices = json.loads((REPLAYS / "2x-a100.json").read_text())["devices"]
    readings = [r for d in devices for r in d["readings"]]  # each device's 4 readings, once each
    summary = sampled("2x-a100.json", 4).summary()

    def mean(key: str, scale: float = 1) -> float:
        return statistics.fmean(r[key] / scale for r in readings)

    def peak(key: str, scale: float = 1) -> float:
        return max(r[key] / scale for r in readings)

    assert summary["samples"] == 4
    assert summary["gpu_util_mean"] == pytest.approx(mean("gpu")) == pytest.approx(49.25)
    assert summary["gpu_util_max"] == peak("gpu") == 100
    assert summary["gpu_power_w_mean"] == pytest.approx(mean("power_mw", 1000))
    assert summary["gpu_power_w_max"] == pytest.approx(peak("power_mw", 1000)) == pytest.approx(356.0)
    assert summary["gpu_temp_c_mean"] == pytest.approx(mean("temperature"))
    assert summary["gpu_temp_c_max"] == peak("temperature") == 61
    assert summary["gpu_sm_clock_mhz_mean"] == pytest.approx(mean("sm_clock")) == pytest.approx(810)
    assert summary["gpu_sm_clock_mhz_max"] == 1410
    assert summary["gpu_mem_gb_mean"] == pytest.approx(mean("memory_used", 2**30), abs=1e-3)
    assert summary["gpu_mem_gb_max"] == pytest.approx(peak("memory_used", 2**30), abs=1e-3)
    assert {"cpu_util_mean", "cpu_util_max", "rss_gb_mean", "rss_gb_max"} <= set(summary)


def test_no_gpu_keys_without_gpus() -> None:
    sampler = Sampler(None, cpus=[0])
    sampler.sample()
    summary = sampler.telemetry.summary()
    assert not [key for key in summary if key.startswith("gpu_")]
    assert summary["samples"] == 1 and summary["rss_gb_max"] > 0


def test_the_idle_gpu_is_flagged_and_the_busy_one_not() -> None:
    telemetry = sampled("2x-a100.json", 4)
    assert telemetry.flags() == ["GPU 1 mostly idle: mean utilisation 0% (below 50%)"]
    assert telemetry.flags(idle_below=99.5) == [
        "GPU 0 mostly idle: mean utilisation 98% (below 99.5%)",
        "GPU 1 mostly idle: mean utilisation 0% (below 99.5%)",
    ]


def test_throttling_is_flagged_with_its_reason_and_share() -> None:
    telemetry = sampled("throttling.json", 10)  # power cap in 7 of its readings, hw thermal in 2, sw thermal in 1
    assert telemetry.flags() == [
        "GPU 0 slowed by power cap in 70% of samples",
        "GPU 0 slowed by software thermal slowdown in 10% of samples",
        "GPU 0 slowed by hardware thermal slowdown in 20% of samples",
    ]
    assert telemetry.flags(throttle_share=0.5) == ["GPU 0 slowed by power cap in 70% of samples"]
    assert telemetry.summary()["gpu_sm_clock_mhz_mean"] < 1410


def test_memory_above_the_slice_is_flagged() -> None:
    telemetry = sampled("2x-a100.json", 4)
    rss = telemetry.summary()["rss_gb_max"]
    assert telemetry.flags(memory_gb=rss * 2) == telemetry.flags()
    (flag,) = [f for f in telemetry.flags(memory_gb=rss / 2) if f.startswith("process memory")]
    assert f"above its {rss / 2:g} GB slice" in flag


def test_too_few_samples_give_no_verdict() -> None:
    telemetry = sampled("throttling.json", MIN_SAMPLES - 1)  # readings 1 and 2: no throttle reasons yet
    (flag,) = telemetry.flags(idle_below=100.5)  # would call the busy GPU idle, had it enough samples
    assert flag.startswith(f"too few samples ({MIN_SAMPLES - 1}) to judge")
    assert sampled("throttling.json", MIN_SAMPLES).flags(idle_below=100.5)[0].startswith("GPU 0 mostly idle")
    assert Sampler(None, cpus=[0]).telemetry.flags() == []  # CPU only: no GPU verdict to withhold


def test_the_thread_samples_cpu_memory_and_gpus() -> None:
    nvml = replay("2x-a100.json")
    with Sampler(nvml, nvml.gpus(), cpus=[0], interval_s=0.02) as sampler:
        time.sleep(0.2)
    telemetry = sampler.telemetry
    assert telemetry.error is None and telemetry.cpus == [0] and telemetry.gpus == [0, 1]
    assert 3 <= len(telemetry.samples) <= 11 and 0.2 <= telemetry.duration_s < 1  # loose: a busy machine is late
    times = [s.t_s for s in telemetry.samples]
    assert times == sorted(times) and times[0] >= 0.02
    for sample in telemetry.samples:
        assert 0 <= sample.cpu_util <= 100 and sample.rss_gb > 0
        assert sample.cpu_freq_mhz is None or sample.cpu_freq_mhz > 0
        assert [g.index for g in sample.gpus] == [0, 1]
    assert telemetry.sampling_s > 0


def test_a_failing_read_ends_sampling_and_is_reported() -> None:
    nvml = replay("2x-a100.json")
    real_read, reads = nvml.read, []

    def read(gpu: Gpu) -> Reading:
        reads.append(gpu)
        if len(reads) > 3:
            raise RuntimeError("GPU fell off the bus")
        return real_read(gpu)

    nvml.read = read  # type: ignore[method-assign]
    with Sampler(nvml, nvml.gpus()[:1], cpus=[0], interval_s=0.01) as sampler:
        deadline = time.perf_counter() + 5
        while sampler.telemetry.error is None and time.perf_counter() < deadline:
            time.sleep(0.01)  # the test body goes on after the thread's exception
    telemetry = sampler.telemetry
    assert len(telemetry.samples) == 3 and len(reads) == 4
    assert telemetry.error is not None and "GPU fell off the bus" in telemetry.error
    assert telemetry.flags()[0] == f"telemetry incomplete: {telemetry.error}"


def test_stopping_is_prompt_even_with_a_long_interval() -> None:
    """...and a phase shorter than one interval still gets its one closing sample, however short it is (a fast host
    runs phases a slow one samples several times)."""
    sampler = Sampler(None, cpus=[0], interval_s=60)
    with sampler:
        time.sleep(0.05)
        exiting = time.perf_counter()
    assert time.perf_counter() - exiting < 0.2
    (closing,) = sampler.telemetry.samples
    assert closing.t_s >= 0.05 and sampler.telemetry.error is None
    with Sampler(None, cpus=[0], interval_s=60) as instant:
        pass
    assert len(instant.telemetry.samples) == 1
    with pytest.raises(RuntimeError, match="one phase"):
        sampler.start()


def test_mig_instances_are_read_once_as_their_gpu() -> None:
    nvml = replay("a100-mig.json")
    assert [(g.index, g.mig) for g in nvml.gpus()] == [(0, 0), (0, 1), (1, None)]
    sampler = Sampler(nvml, nvml.gpus(), cpus=[0])
    assert [g.index for g in sampler.sample().gpus] == [0, 1]


def test_round_trip_through_json() -> None:
    telemetry = sampled("throttling.json", 5)
    telemetry.error = "an example"
    data = json.loads(json.dumps(telemetry.to_dict()))
    assert Telemetry.from_dict(data) == telemetry
    assert Telemetry.from_dict(data).flags() == telemetry.flags()


def test_a_slice_outside_the_host_is_refused() -> None:
    with pytest.raises(ValueError, match="CPU slice"):
        Sampler(None, cpus=[10_000])


def test_one_sample_is_cheap() -> None:
    """A generous bound against a regression (a per-sample scan of every process, say); the 1% budget is checked
    by benchmarks/telemetry_overhead.py."""
    sampler = Sampler(None, cpus=[0])
    sampler.sample()
    start = time.perf_counter()
    for _ in range(50):
        sampler.sample()
    assert (time.perf_counter() - start) / 50 < 0.005
