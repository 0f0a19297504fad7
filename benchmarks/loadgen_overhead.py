"""Does our LoadGen wrapper cost throughput? A null SUT through `pytest_mlperf.run.loadgen.run` against LoadGen
driven directly by minimal Python SUTs, Offline scenario, same settings, same process, rotating order.

The direct SUTs answer inside `issue_queries` with a pointer to one preallocated 16-byte output:
- "direct": the usual minimal SUT (`ConstructSUT`, reading `s.id` from LoadGen's QuerySample objects), one
  QuerySamplesComplete for the whole Offline query;
- "direct-fast": LoadGen's fast SUT interface (`ConstructFastSUT`, ids and indices as int lists), as our wrapper
  uses, one QuerySamplesComplete for the whole query: the least Python work LoadGen can be driven with;
- "direct-fast-batched": the same, completing every max_batch samples, as a SUT running a model batch by batch does.
Ours goes through the queue, the worker thread, a `predict` that returns a preallocated (batch, 4) float32 array,
and the response packing. With a SUT this cheap, the per-sample Python work with LoadGen's bindings is the ceiling,
so any cost of ours shows. The expected QPS is set from a calibration run of each, so that the one Offline query
of the fastest lasts about 1.3 x min duration and every run is VALID.

    .venv/bin/python benchmarks/loadgen_overhead.py [--repeats 3] [--max-batch 64] [--min-duration-ms 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import mlperf_loadgen as lg
import numpy as np

from pytest_mlperf.results.loadgen_logs import parse_logs
from pytest_mlperf.run.loadgen import SampleLibrary, Scenario, run

LIBRARY = SampleLibrary(1024, 1024)
OUTPUT = np.zeros(4, np.float32)
ADDRESS, SIZE = OUTPUT.ctypes.data, OUTPUT.nbytes


def classic_sut(batch: int | None) -> tuple[int, Callable[[int], None]]:
    def issue_queries(samples: list[lg.QuerySample]) -> None:
        lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, ADDRESS, SIZE) for s in samples])

    return lg.ConstructSUT(issue_queries, lambda: None), lg.DestroySUT


def fast_sut(batch: int | None) -> tuple[int, Callable[[int], None]]:
    def issue_queries(ids: list[int], indices: list[int]) -> None:
        step = batch or len(ids)
        for start in range(0, len(ids), step):
            chunk = ids[start : start + step]
            lg.QuerySamplesComplete(list(map(lg.QuerySampleResponse, chunk, itertools.repeat(ADDRESS),
                                             itertools.repeat(SIZE))))  # fmt: skip

    return lg.ConstructFastSUT(issue_queries, lambda: None), lg.DestroyFastSUT


def direct(make_sut: Callable[[int | None], tuple[int, Callable[[int], None]]], batch: int | None,
           scenario: Scenario, outdir: Path) -> None:  # fmt: skip
    """LoadGen with a bare SUT answering inside issue_queries, every `batch` samples (or all at once)."""
    outdir.mkdir(parents=True)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(outdir)
    log_settings.enable_trace = False
    sut, destroy = make_sut(batch)
    qsl = lg.ConstructQSL(LIBRARY.count, LIBRARY.performance_sample_count, LIBRARY.load, LIBRARY.unload)
    lg.StartTestWithLogSettings(sut, qsl, scenario.to_settings(), log_settings)
    lg.DestroyQSL(qsl)
    destroy(sut)


def wrapped(scenario: Scenario, outdir: Path) -> None:
    """The same settings through our SUT with a predict that returns at once."""
    outputs = np.zeros((scenario.max_batch, 4), np.float32)
    run(lambda indices: outputs[: len(indices)], LIBRARY, scenario, outdir)


SUTS: dict[str, Callable[[Scenario, Path], None]] = {
    "direct": lambda scenario, outdir: direct(classic_sut, None, scenario, outdir),
    "direct-fast": lambda scenario, outdir: direct(fast_sut, None, scenario, outdir),
    "direct-fast-batched": lambda scenario, outdir: direct(fast_sut, scenario.max_batch, scenario, outdir),
    "wrapper": wrapped,
}


def samples_per_second(name: str, scenario: Scenario, outdir: Path) -> tuple[float, str]:
    """LoadGen's Offline figure for one run, and its validity."""
    SUTS[name](scenario, outdir)
    result = parse_logs(outdir)
    assert result.metric is not None and result.validity is not None
    return result.metric.value, result.validity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--min-duration-ms", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        calibration = Scenario("offline", min_duration_ms=500, offline_expected_qps=100_000, max_batch=args.max_batch)
        rate = max(samples_per_second(name, calibration, Path(tmp, f"calibration-{name}"))[0] for name in SUTS)
        scenario = dataclasses.replace(calibration, min_duration_ms=args.min_duration_ms,
                                       offline_expected_qps=round(rate * 1.2))  # fmt: skip
        print(f"calibration: fastest {rate:.0f} samples/s -> offline_expected_qps {scenario.offline_expected_qps}, "
              f"min_duration_ms {scenario.min_duration_ms}, wrapper max_batch {scenario.max_batch}")  # fmt: skip
        rates: dict[str, list[float]] = {name: [] for name in SUTS}
        names = list(SUTS)
        for i in range(args.repeats):
            order = names[i % len(names) :] + names[: i % len(names)]  # rotate who goes first: the machine drifts
            line = []
            for name in order:
                rate, validity = samples_per_second(name, scenario, Path(tmp, f"{i}-{name}"))
                rates[name].append(rate)
                line.append(f"{name} {rate:.0f} ({validity})")
            print(f"repeat {i + 1}: " + ", ".join(line) + " samples/s")
    for baseline in [name for name in SUTS if name != "wrapper"]:
        ratios = [w / d for w, d in zip(rates["wrapper"], rates[baseline], strict=True)]
        print(f"wrapper/{baseline} over {args.repeats} repeats: median {statistics.median(ratios):.3f}, "
              f"min {min(ratios):.3f}, max {max(ratios):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
