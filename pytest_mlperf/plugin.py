"""pytest's face of pytest-mlperf: options, ini keys, marks and hook wiring. The logic lives in the modules named."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from . import progress
from .config.matrix import Case, expand, marker_lines
from .fixtures import SESSION, bench, case, cores, dataset, device, gpus, serve  # noqa: F401  (fixtures)
from .reporting import Reporter, attach_record
from .session import PROGRESS, RUN_DIR, SLOT, MlperfSession


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mlperf", "pytest-mlperf: deep-learning hardware benchmarks as tests")
    group.addoption(
        "--system",
        dest="mlperf_system",
        metavar="NAME[,NAME...]",
        help="systems to run on (systems/NAME.yaml); 'auto' (default) detects this host's GPUs, else 'cpu'",
    )
    group.addoption(
        "--systems-dir",
        dest="mlperf_systems_dirs",
        action="append",
        default=[],
        metavar="DIR",
        help="another directory of system files; its files override same-named ones",
    )
    group.addoption(
        "--compare",
        dest="mlperf_compare",
        metavar="PATH",
        help="an earlier run's results.json: fail each test slower than it by more than --tolerance",
    )
    group.addoption(
        "--tolerance",
        dest="mlperf_tolerance",
        type=float,
        default=0.05,
        metavar="FRACTION",
        help="allowed slowdown against --compare (default 0.05)",
    )
    group.addoption(
        "--runs",
        dest="mlperf_runs",
        type=int,
        default=1,
        metavar="N",
        help="run each test's case N times (Mila's run_10, Lambda's NUM_RUN), from 2 each time in a fresh process "
        "(a LoadGen case's first run: in the test's process), "
        "and judge the trimmed mean of the runs (without the fastest and slowest from 4 runs), its interval from "
        "their spread (default 1: once, in the test's process, its interval widened by the host's between-process sd)",
    )
    group.addoption(
        "--rerun-inconclusive",
        dest="mlperf_reruns",
        type=int,
        default=0,
        metavar="N",
        help="when a test's verdict is inconclusive (its interval straddles the target), run its case again, up to N "
        "more times, until the verdict is clear; each rerun in a fresh process (default 0: report it as inconclusive)",
    )
    group.addoption(
        "--inconclusive",
        dest="mlperf_inconclusive",
        choices=("reject", "warn"),
        default="reject",
        help="what an inconclusive verdict (its interval straddles the target) does to the run: reject it, so the run "
        "exits non-zero (default), or only warn",
    )
    group.addoption(
        "--data-dir",
        dest="mlperf_data_dir",
        metavar="DIR",
        help="train on real datasets under DIR (DIR/imagenet, ...), prepared there once; "
        "default: the mlperf_data_dir ini value, else synthetic data",
    )
    group.addoption(
        "--find-peak-qps",
        dest="mlperf_find_peak",
        action="store_true",
        help="Server scenarios: search for the highest target QPS LoadGen judges VALID, from the system file's",
    )
    group.addoption(
        "--torch-compile",
        dest="mlperf_compile",
        action="store_true",
        help="torch.compile every workload's models (as a system file's `compile: true` does for one benchmark)",
    )
    group.addoption(
        "--runner",
        dest="mlperf_runner",
        choices=("local", "container"),
        help="run training tests in this process, or inside the system's container image (a system without one: an "
        "image of this host's Python); default: the system file's `runner`, else local",
    )
    group.addoption(
        "--launcher",
        dest="mlperf_launcher",
        choices=("torchrun", "slurm"),
        help="how tests on several devices start their ranks: torchrun on this host, or a Slurm job "
        "(default: the system file's launch.launcher, else torchrun)",
    )
    group.addoption(
        "--strict-telemetry",
        dest="mlperf_strict_telemetry",
        action="store_true",
        help="fail a test whose measured phase ran on a throttling or mostly idle GPU, or above its memory share "
        "(without it these are flagged in the results)",
    )
    group.addoption(
        "--nvml-replay",
        dest="mlperf_nvml_replay",
        metavar="PATH",
        help="answer NVML calls from a replay file (fixtures/nvml/*.json) instead of the driver: a simulated GPU "
        "inventory for testing leasing and telemetry on a machine without those GPUs",
    )
    group.addoption(
        "--gpu-wait",
        dest="mlperf_gpu_wait",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="how long a test waits for busy GPUs (held by other workers or sessions) before failing (default 3600)",
    )
    group.addoption(
        "--progress",
        dest="mlperf_progress",
        choices=("auto", "on", "off"),
        default="auto",
        help="show long tests' progress (block k of N, items/s, ETA) between pytest's lines; auto: when the output "
        "is a terminal (default)",
    )
    group.addoption(
        "--progress-every",
        dest="mlperf_progress_every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the least time between two progress lines of a test (default 10)",
    )
    group.addoption(
        "--mlperf-reports",
        dest="mlperf_reports",
        metavar="DIR",
        help="where run folders are written (default: the mlperf_reports ini value, 'reports' under the rootdir)",
    )
    parser.addini("mlperf_systems", "directories of system files (default: systems/ under the rootdir)", type="paths")
    parser.addini("mlperf_reports", "directory for run folders, relative to the rootdir", default="reports")
    parser.addini("mlperf_data_dir", "directory of real datasets (as --data-dir), relative to the rootdir")
    parser.addini(
        "mlperf_plots",
        "draw the plots (each test's as it ends, the run's at the end; ~0.3 s a test): true (default) or false",
        type="bool",
        default=True,
    )
    parser.addini(
        "mlperf_sd_limit",
        "suite statistics: the most the 80th percentile of sd% across tests may be, in percent (default 5)",
        default="5",
    )
    parser.addini("mlperf_gpu_locks", "host-wide folder of GPU lease locks (default: pytest-mlperf-gpu-locks in /tmp)")
    parser.addini(
        "mlperf_between_sd",
        "the between-process sd (percent of the figure) that widens a single run's interval, pinned; default: "
        "measured once per host, device kind, torch version and thread count by a probe in fresh processes",
        default="",
    )
    parser.addini(
        "mlperf_cache_dir",
        "folder of host measurements kept between runs, e.g. the between-process sd (default: pytest-mlperf in the "
        "user's cache folder, $XDG_CACHE_HOME or ~/.cache)",
    )


@pytest.hookimpl(tryfirst=True)  # before pytest-html's, which reads --html
def pytest_configure(config: pytest.Config) -> None:
    for line in marker_lines():
        config.addinivalue_line("markers", line)
    if config.option.help:
        return
    session = MlperfSession.from_config(config)
    config.stash[SESSION] = session
    if session.store:  # the controller, or a run without xdist
        config.pluginmanager.register(Reporter(session, config), "mlperf-reporter")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, on the controller: hand each worker the run folder, so what its tests write beside the results
    (LoadGen logs) lands there, not in a temporary folder."""
    session = node.config.stash[SESSION]
    node.workerinput[RUN_DIR] = str(session.run_dir)
    node.workerinput[PROGRESS] = session.progress_every
    node.workerinput[SLOT] = session.take_slot(node.gateway.id, node.workerinput["workercount"])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """A worker that ended (or crashed) gives its slot back for the one that replaces it."""
    node.config.stash[SESSION].slots.pop(node.gateway.id, None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    mark = metafunc.definition.get_closest_marker("mlperf")
    if mark is None or "case" not in metafunc.fixturenames:
        return
    task, *benchmarks = mark.args
    systems = metafunc.config.stash[SESSION].require_systems()
    accuracy = metafunc.definition.get_closest_marker("accuracy") is not None  # inference's accuracy pass
    try:
        launcher = metafunc.config.getoption("mlperf_launcher")
        cases = expand(task, benchmarks, systems, accuracy=accuracy, launcher=launcher)
    except ValueError as exc:
        problem = f"{metafunc.definition.nodeid}: @pytest.mark.mlperf: {exc}"
    else:
        problem = ""
    if problem:  # outside the except block, so the report shows no chained traceback
        pytest.fail(problem, pytrace=False)
    params = []
    for c in cases:
        for name in c.marks:  # workloads registered after configure get their marks registered here
            metafunc.config.addinivalue_line("markers", f"{name}: pytest-mlperf mark")
        params.append(pytest.param(c, id=c.id, marks=[getattr(pytest.mark, name) for name in c.marks]))
    metafunc.parametrize("case", params, indirect=True)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Which cases the session runs: a test on several devices measures its own one-device reference unless the
    session runs that case too."""
    mlperf = session.config.stash.get(SESSION, None)
    if mlperf is not None:
        params = (getattr(item, "callspec", None) for item in session.items)
        mlperf.selected = {c.id for p in params if p and isinstance(c := p.params.get("case"), Case)}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    attach_record(item, call, report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    """The xdist controller relays its workers' progress lines while they run tests."""
    mlperf = session.config.stash.get(SESSION, None)
    xdist = session.config.pluginmanager.hasplugin("dsession")
    if mlperf is None or mlperf.progress_every is None or not xdist or mlperf.run_dir is None:
        return (yield)
    with progress.relay(mlperf.run_dir / progress.DIR, session.config):
        return (yield)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove any container this process's tests left behind (a runner removes its own; this covers Ctrl-C between
    create and remove, and engines that keep failed starts)."""
    mlperf = session.config.stash.get(SESSION, None)
    if mlperf is not None and mlperf.containers is not None:
        mlperf.containers.close()
