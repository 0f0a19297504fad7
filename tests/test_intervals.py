"""Honest intervals: runs in fresh processes (--runs N), a single run's interval widened by the host's between-process
sd (the probe and its cache), and blocks long enough whatever the host's speed (autorange). No assertion rests on
how fast this machine is: relations between what was timed, never absolute timings."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch
from helpers import TOY_CONFTEST, TOY_SUITE, Project, baseline, system

from pytest_mlperf.results.repeats import across_runs, training_interval
from pytest_mlperf.results.stats import summarize, widen
from pytest_mlperf.run import probe
from pytest_mlperf.run.measure import Plan, measure
from pytest_mlperf.run.probe import Between, between_processes

Z95 = 1.959963984540054  #: the normal distribution's two-sided 95% quantile


def test_widening_adds_the_between_process_term_in_quadrature() -> None:
    blocks = summarize([98.0, 100.0, 102.0, 100.0])
    half = (blocks.ci_high - blocks.ci_low) / 2
    wide = widen(blocks, 5.0)
    between = Z95 * 0.05 * blocks.mean
    assert (wide.ci_high - wide.ci_low) / 2 == pytest.approx(math.hypot(half, between))
    assert (wide.ci_low + wide.ci_high) / 2 == pytest.approx(blocks.mean)  # centred where it was
    assert (wide.mean, wide.sd, wide.count) == (blocks.mean, blocks.sd, blocks.count)  # the figure stays the blocks'
    assert widen(blocks, 0.0) == blocks
    one = widen(summarize([50.0]), 10.0)  # a single block: the between-process term alone
    assert (one.ci_low, one.ci_high) == pytest.approx((50 - Z95 * 5, 50 + Z95 * 5))


def test_across_runs_widens_one_run_only() -> None:
    one, term = summarize([9.0, 10.0, 11.0]), Between(4.0, "pinned")
    assert across_runs([one], term) == widen(one, 4.0)
    assert across_runs([one], Between(None, "the between-process probe failed: x")) == one
    runs = [summarize([v]) for v in (10.0, 11.0, 12.0)]
    assert across_runs(runs, term) == across_runs(runs)  # several runs: their own spread, no term
    assert training_interval(3, term) == "the spread of 3 runs, each in a fresh process"
    assert "widened by a between-process sd of 4%" in training_interval(1, term)
    unknown = training_interval(1, Between(None, "the between-process probe failed: x"))
    assert unknown.startswith("the blocks of one process only") and "probe failed" in unknown


class SleepStep:
    """A step whose duration is under the test's control: it sleeps (at least) `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls = seconds, 0

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.seconds)
        return torch.tensor(1.0)


def test_autorange_sizes_blocks_from_the_warmup_step_time() -> None:
    step, asked = SleepStep(0.002), []
    plan = Plan(warmup=2, repeat=3, number=1, items_per_step=4, min_block_s=0.02)
    result = measure(step, plan, sync=lambda: None, agree=lambda n: asked.append(n) or n)
    number = result.plan.number
    # a step lasts at least 2 ms, so no more than ceil(0.02 / 0.002) steps are needed; fewer when a step ran longer
    assert 1 < number <= 10 and asked == [number, number]  # after the warm-up, and the first block's check
    assert step.calls == 2 + 3 * number and len(result.losses) == step.calls
    assert all(ns >= number * 0.002e9 for ns in result.block_ns)  # each block timed the number chosen
    assert result.rates == pytest.approx([4 * number * 1e9 / ns for ns in result.block_ns])


class WarmingStep(SleepStep):
    """Slow for its first `slow` calls (caches and kernels built), then fast."""

    def __init__(self, slow: int) -> None:
        super().__init__(0.02)
        self.slow = slow

    def __call__(self) -> torch.Tensor:
        self.seconds = 0.02 if self.calls < self.slow else 0.001
        return super().__call__()


def test_a_first_block_far_shorter_than_asked_becomes_warm_up_and_sizes_the_blocks() -> None:
    """Warm-up steps 20x slower than the steady ones chose 1 step a block: the first block (of ~1 ms) is warm-up too,
    and the blocks are sized from its pace."""
    step = WarmingStep(slow=2)
    result = measure(step, Plan(warmup=2, repeat=2, number=1, items_per_step=1, min_block_s=0.02), sync=lambda: None)
    number = result.plan.number
    assert 5 < number <= 20 and result.plan.warmup == 3 and len(result.block_ns) == 2
    assert step.calls == 3 + 2 * number and len(result.losses) == step.calls
    assert all(ns >= 0.01e9 for ns in result.block_ns)


def test_autorange_keeps_number_as_the_least_and_ranks_agree_on_the_largest() -> None:
    long_enough = measure(SleepStep(0.001), Plan(2, 2, 50, 1, min_block_s=0.005), sync=lambda: None)
    assert long_enough.plan.number == 50  # 50 steps of 1 ms already last over 5 ms
    agreed = measure(SleepStep(0.001), Plan(2, 2, 1, 1, min_block_s=0.005), sync=lambda: None, agree=lambda n: 7)
    assert agreed.plan.number == 7 and len(agreed.block_ns) == 2
    without_warmup = measure(SleepStep(0.001), Plan(0, 2, 3, 1, min_block_s=10.0), sync=lambda: None)
    assert without_warmup.plan.number == 3  # nothing timed to choose from: the number as given
    assert Plan(1, 1, 4, 1, min_block_s=1.0).autoranged(0.1e9).number == 10
    assert Plan(1, 1, 4, 1).autoranged(1.0).number == 4  # no min_block_s: as given


def test_a_record_keeps_the_number_its_blocks_timed(project: Project) -> None:
    project.add_system(system(number=1, min_block_s=0.02))
    project.run("--system=toy").assert_outcomes(passed=1)
    (row,) = project.results()
    assert row["number"] >= 1 and len(row["losses"]) == 1 + row["warmup"] + row["repeat"] * row["number"]
    for rate, ns in zip(row["rates"], row["block_ns"], strict=True):
        assert rate == pytest.approx(row["global_batch"] * row["number"] / (ns / 1e9))


def job_lines(folder: Path) -> list[str]:
    """The entry point's opening line in each fresh-process run's log under `folder`, in run order."""
    logs = sorted(folder.glob("run-*/process.log"))
    return [next(line for line in log.read_text().splitlines() if "rank 0 of 1" in line) for log in logs]


def test_runs_each_run_in_a_fresh_process_on_the_workers_slice(project: Project) -> None:
    """--runs 2 under xdist: two processes of our entry point, neither the worker, each with the worker's threads and
    cores; the verdict rests on their spread, and says so."""
    project.add_system(system(precisions={"fp32": {"batch_size": 4, "baseline": baseline(1e12)}}))
    result = project.run("--system=toy", "--runs=2", "-n", "2")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*is below the target*the interval rests on the spread of 2 runs, each in a fresh*"])
    (row,) = project.results()
    assert row["runs"] == 2 and len(row["run_means"]) == 2 and row["count"] == 2 and row["between_sd_pct"] is None
    assert row["interval"] == "the spread of 2 runs, each in a fresh process"
    lines = job_lines(project.latest / "processes" / "toy-fp32-toy")
    assert len(lines) == 2
    pids = {line.split(", pid ")[1].split(",")[0] for line in lines}
    assert len(pids) == 2 and str(os.getpid()) not in pids
    cpus = ",".join(str(cpu) for cpu in cpuset(row["cpus"]))
    assert all(line.endswith(f", {row['threads']} threads on cpus {cpus}") for line in lines)


def cpuset(text: str) -> list[int]:
    """A cpuset list ("0-3,8") as the cores it names."""
    cores: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        cores += range(int(first), int(last or first) + 1)
    return cores


SLEEPY = """

def build_sleepy(setup):
    import pathlib
    pathlib.Path(os.environ["SLEEPY_PIDS"]).open("a").write(f"{os.getpid()}\\n")
    time.sleep(600)


if "sleepy" not in known():
    register(Workload(
        name="sleepy", family="toys", task="training", unit="samples/s", description="builds for ten minutes",
        presets={"cpu": {}}, build=build_sleepy, quality=Quality("MSE", target=0.5, max_steps=1, eval_every=1),
    ))
"""


@pytest.fixture
def sleepy(project: Project, tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, Path]:
    """The project with a workload that hangs in its build, writing the pid of each process it hangs in."""
    pids = tmp_path_factory.mktemp("sleepy") / "pids"
    (project.path / "conftest.py").write_text(TOY_CONFTEST + SLEEPY)
    project.pytester.makepyfile(test_sleepy=TOY_SUITE.replace('"toy"', '"sleepy"'))
    return project, pids


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pids_in(path: Path, timeout_s: float = 120.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().endswith("\n"):
            return [int(line) for line in path.read_text().split()]
        time.sleep(0.2)
    raise AssertionError(f"no process wrote its pid to {path} in {timeout_s:g} s")


def test_a_fresh_process_past_its_timeout_is_stopped(sleepy: tuple[Project, Path], monkeypatch) -> None:
    project, pids = sleepy
    monkeypatch.setenv("SLEEPY_PIDS", str(pids))  # where it gets to build the model
    project.add_system({**system(benchmark="sleepy"), "launch": {"timeout_s": 3}})
    result = project.run("--system=toy", "--runs=2", "test_sleepy.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*sleepy-fp32-toy: its process was still running after 3 s and was stopped*"])
    assert not ours(project)  # stopped while it imported or while it slept: gone either way


def ours(project: Project) -> list[str]:
    """Our entry point's processes still running for this project's jobs."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if "pytest_mlperf.run.job" in line and str(project.path) in line and alive(process.pid):
            found.append(line)
    return found


def test_ctrl_c_leaves_no_fresh_process_behind(sleepy: tuple[Project, Path]) -> None:
    project, pids = sleepy
    project.add_system(system(benchmark="sleepy"))
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--system=toy", "--runs=2", "test_sleepy.py"]
    env = {**os.environ, "SLEEPY_PIDS": str(pids)}
    pytest_run = subprocess.Popen(argv, cwd=project.path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        (child,) = pids_in(pids)
        assert alive(child) and child != pytest_run.pid
        pytest_run.send_signal(signal.SIGINT)  # as Ctrl-C does: the fresh process is in a session of its own
        assert pytest_run.wait(timeout=60) == pytest.ExitCode.INTERRUPTED
        assert not alive(child) and not ours(project)
    finally:
        pytest_run.kill()


def test_the_probe_measures_in_fresh_processes_once_and_caches(tmp_path: Path, monkeypatch) -> None:
    """The real probe, in two short processes; then the cache answers (a probe that ran again would fail here)."""
    measured = between_processes(torch.device("cpu"), 1, tmp_path, processes=2, block_s=0.05)
    assert measured.sd_pct is not None and math.isfinite(measured.sd_pct) and measured.sd_pct >= 0
    (cached,) = (tmp_path / probe.FOLDER).glob("*.json")
    data = json.loads(cached.read_text())
    assert len(data["rates"]) == 2 and all(r > 0 for r in data["rates"]) and data["threads"] == 1
    first, second = data["rates"]
    assert data["sd_pct"] == pytest.approx(100 * abs(first - second) / math.sqrt(2) / ((first + second) / 2))

    def refuse(*args: object) -> float:
        raise AssertionError("the probe ran again")

    monkeypatch.setattr(probe, "one_process", refuse)
    again = between_processes(torch.device("cpu"), 1, tmp_path, processes=2, block_s=0.05)
    assert again == measured and "2 fresh processes" in again.source
    data["at"] -= probe.MAX_AGE_S + 1  # an hour later: measured again
    cached.write_text(json.dumps(data))
    monkeypatch.setattr(probe, "one_process", lambda *args: 50.0)
    assert between_processes(torch.device("cpu"), 1, tmp_path, processes=2, block_s=0.05).sd_pct == 0
    assert probe.host_key("cpu", 1) in cached.name and probe.host_key("cpu", 2) != probe.host_key("cpu", 1)


def test_parallel_workers_probe_once_and_a_failed_probe_is_not_cached(tmp_path: Path, monkeypatch) -> None:
    calls: list[int] = []

    def fake(device: str, threads: int, block_s: float, env: object) -> float:
        calls.append(threads)
        time.sleep(0.05)  # long enough for the other thread to wait on the lock
        return 100.0 + len(calls)

    monkeypatch.setattr(probe, "one_process", fake)
    found: list[Between] = []
    workers = [
        threading.Thread(target=lambda: found.append(between_processes(torch.device("cpu"), 3, tmp_path)))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(calls) == probe.PROCESSES and found[0] == found[1]

    def failing(*args: object) -> float:
        raise probe.ProbeFailed("a probe process exited with code 1: boom")

    monkeypatch.setattr(probe, "one_process", failing)
    failed = between_processes(torch.device("cpu"), 4, tmp_path)
    assert (
        failed.sd_pct is None
        and failed.source == "the between-process probe failed: a probe process exited with code 1: boom"
    )
    assert len(list((tmp_path / probe.FOLDER).glob("*.json"))) == 1  # only the measured one


def test_a_single_run_is_widened_by_the_cached_term_and_says_so(project: Project, tmp_path: Path) -> None:
    """Without a pinned term the session asks the cache (the probe's), in the ini key's folder; the record and the
    verdict say what the interval rests on."""
    cache = tmp_path / "cache"
    (cache / probe.FOLDER).mkdir(parents=True)
    for threads in range(1, len(os.sched_getaffinity(0)) + 1):  # the test's threads: its free cores (`slices.free`)
        path = cache / probe.FOLDER / f"{probe.host_key('cpu', threads)}.json"
        path.write_text(json.dumps({"sd_pct": 7.5, "processes": 5, "measured": "2026-12-01", "at": time.time()}))
    project.add_system(system(precisions={"fp32": {"batch_size": 4, "baseline": baseline(1e12)}}))
    result = project.run("--system=toy", "-o", "mlperf_between_sd=", "-o", f"mlperf_cache_dir={cache}")
    result.assert_outcomes(failed=1)
    basis = "the blocks of one process, widened by a between-process sd of 7.5% (the host's, measured 2026-12-01 in 5"
    result.stdout.fnmatch_lines([f"*is below the target*; the interval rests on {basis} fresh processes*"])
    (row,) = project.results()
    assert row["between_sd_pct"] == 7.5 and row["interval"].startswith("the blocks of one process, widened by")
    blocks = summarize(row["rates"])
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((widen(blocks, 7.5).ci_low, widen(blocks, 7.5).ci_high))


def test_a_bad_between_sd_is_a_usage_error(project: Project) -> None:
    project.add_system(system())
    result = project.run("--system=toy", "-o", "mlperf_between_sd=lots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini mlperf_between_sd: expected a percentage in [[]0, 100), e.g. 5; got 'lots'*"])
