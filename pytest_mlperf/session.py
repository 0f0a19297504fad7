"""The state of one pytest session: selected systems, the earlier run to compare with, and where results go.

Built once per process at configure time; any bad input becomes a `pytest.UsageError` here, before a test runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from . import progress
from .config.matrix import Case
from .config.schema import System, SystemFileError
from .config.systems import AUTO, SystemSelectionError, select
from .containers.launch import Containers
from .progress import Progress
from .resources import slices, sysinfo
from .resources.leasing import Lease, Leaser, default_lock_dir, home_devices
from .resources.nvml import Gpu, Nvml, inventory
from .resources.telemetry import Sampler
from .results.compare import figures_by_key
from .results.record import Key, Record
from .results.store import RunStore, load_results, new_run_id
from .results.verdict import Figure, Judge
from .run.probe import Between, between_processes, default_cache_dir

RUN_DIR = "mlperf_run_dir"  #: the key of xdist's workerinput that carries the run folder to the workers
PROGRESS = "mlperf_progress"  #: the key of xdist's workerinput that says whether, and how often, to show progress
SLOT = "mlperf_slot"  #: the key of xdist's workerinput that carries the worker's slot (its share of the devices)


@dataclass
class MlperfSession:
    systems: list[System] | None  #: None when they could not be chosen; mlperf tests then fail with `problem`
    problem: str
    tolerance: float
    earlier: dict[Key, Figure] = field(default_factory=dict)
    earlier_records: list[Record] = field(default_factory=list)  #: the --compare run's, for comparison.md
    earlier_source: str = ""  #: the --compare path, empty without one
    store: RunStore | None = None  #: on the controller only
    #: the run folder, which xdist workers learn from the controller (LoadGen logs go under it)
    run_dir: Path | None = None
    args: list[str] = field(default_factory=list)  #: the command line, for the record
    system_info: dict[str, str] = field(default_factory=dict)  #: what the run ran on; on the controller only
    started: float = field(default_factory=time.time)
    nvml: Nvml | None = None  #: open for the session's telemetry; None without NVIDIA's library
    gpus: list[Gpu] = field(default_factory=list)  #: the host's leasable devices (CUDA_VISIBLE_DEVICES applied)
    gpu_source: str = ""  #: where `gpus` come from (NVML, a replay file), or why there are none
    visible: list[Gpu] = field(default_factory=list)  #: the devices this process sees: its worker's own, or all
    leaser: Leaser | None = None
    gpu_wait: float = 3600.0  #: seconds a test waits for busy GPUs
    slice: slices.Slice | None = None  #: this process's share of the CPUs and memory
    slots: dict[str, int] = field(default_factory=dict)  #: on the controller: each live worker's slot
    runner: str | None = None  #: --runner: local or container for every system; None: each system file's choice
    containers: Containers | None = None  #: the container engine, connected when a test first needs it
    runs: int = 1  #: --runs: how many times each test runs its case
    reruns: int = 0  #: --rerun-inconclusive: the most extra runs a test makes while its verdict is inconclusive
    sd_limit: float = 5.0  #: ini mlperf_sd_limit: the suite statistics' limit on sd%'s 80th percentile
    plots: bool = True  #: ini mlperf_plots: draw each test's plots and the run's
    progress_every: float | None = None  #: seconds between a test's progress lines; None: no progress shown
    #: ini mlperf_between_sd: the between-process sd pinned (percent), else None: measured by the probe
    between_sd: float | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)  #: ini mlperf_cache_dir: host measurements kept
    _between: dict[tuple[str, int], Between] = field(default_factory=dict)  #: the probe's, per device kind and threads
    inconclusive: str = "reject"  #: --inconclusive: whether an inconclusive figure rejects the run or only warns
    selected: set[str] = field(default_factory=set)  #: the ids of the session's selected cases (after -m and -k)

    @classmethod
    def from_config(cls, config: pytest.Config) -> MlperfSession:
        tolerance = config.getoption("mlperf_tolerance")
        if not 0 <= tolerance < 1:
            raise pytest.UsageError(f"--tolerance must be a fraction in [0, 1), e.g. 0.05; got {tolerance}")
        runs, reruns = config.getoption("mlperf_runs"), config.getoption("mlperf_reruns")
        if runs < 1 or reruns < 0:
            problem = f"--runs must be at least 1 and --rerun-inconclusive at least 0; got {runs} and {reruns}"
            raise pytest.UsageError(problem)
        systems, problem = _systems(config)
        args = list(config.invocation_params.args)
        session = cls(systems=systems, problem=problem, tolerance=tolerance, args=args)
        session.runs, session.reruns = runs, reruns
        session.inconclusive = config.getoption("mlperf_inconclusive")
        session.plots = bool(config.getini("mlperf_plots"))
        try:
            session.sd_limit = float(config.getini("mlperf_sd_limit"))
        except ValueError:
            raise pytest.UsageError(
                f"ini mlperf_sd_limit: expected a number of percent, e.g. 5; got {config.getini('mlperf_sd_limit')!r}"
            ) from None
        session.between_sd = _between_sd(config.getini("mlperf_between_sd"))
        cache = config.getini("mlperf_cache_dir")
        if cache:  # relative to the rootdir, like the other folders' keys
            folder = Path(cache).expanduser()
            session.cache_dir = folder if folder.is_absolute() else config.rootpath / folder
        compare = config.getoption("mlperf_compare")
        if compare:
            session.earlier_records = _earlier(Path(compare))
            session.earlier, session.earlier_source = figures_by_key(session.earlier_records), compare
        session._resources(config)
        session.runner = config.getoption("mlperf_runner")
        if hasattr(config, "workerinput"):
            session.progress_every = config.workerinput[PROGRESS]
            session.run_dir = Path(config.workerinput[RUN_DIR])
            session.containers = Containers(f"{session.run_dir.name}-{config.workerinput['workerid']}")
        else:
            root = Path(config.getoption("mlperf_reports") or config.getini("mlperf_reports"))
            root = root if root.is_absolute() else config.rootpath / root
            session.store = RunStore(root, new_run_id(root))
            shown = config.getoption("mlperf_progress")
            if shown == "on" or (shown == "auto" and sys.stdout.isatty()):
                session.progress_every = config.getoption("mlperf_progress_every")
            session.run_dir = session.store.dir
            replay = config.getoption("mlperf_nvml_replay")
            session.system_info = sysinfo.collect(Path(replay) if replay else None)
            session.containers = Containers(session.store.run_id)
        return session

    def _resources(self, config: pytest.Config) -> None:
        """The devices and the CPU/memory slice of this process: an xdist worker gets its share of each from its
        index (not from xdist groups, which pytest 9.2's xdist ignores) and sees only its own GPUs."""
        replay = config.getoption("mlperf_nvml_replay")
        self.nvml, self.gpus, self.gpu_source = inventory(Path(replay) if replay else None)
        workerinput = getattr(config, "workerinput", None)
        worker, workers = (workerinput[SLOT], workerinput["workercount"]) if workerinput else (0, 1)
        self.visible = home_devices(self.gpus, worker, workers) if workerinput else self.gpus
        if self.visible and not replay and not torch.cuda.is_initialized():
            os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # NVML's order, which `visible` is in
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(g.uuid for g in self.visible)
        lock_dir = config.getini("mlperf_gpu_locks")
        holder = f"{workerinput['workerid'] if workerinput else 'pytest'} pid {os.getpid()} on {socket.gethostname()}"
        self.gpu_wait = config.getoption("mlperf_gpu_wait")
        self.leaser = Leaser(self.gpus, Path(lock_dir) if lock_dir else default_lock_dir(), holder)
        self.slice = slices.cut(worker, workers)
        if workerinput:
            slices.apply(self.slice)

    def take_slot(self, worker: str, workers: int) -> int:
        """The controller's choice of a new worker's slot: the lowest one no live worker has, so a worker that
        replaces a crashed one takes over its devices and cores."""
        free = sorted(set(range(workers)) - set(self.slots.values()))
        self.slots[worker] = free[0] if free else len(self.slots) % workers
        return self.slots[worker]

    def require_systems(self) -> list[System]:
        """The selected systems; a collection error (no traceback) when there are none."""
        if self.systems is None:
            pytest.fail(f"pytest-mlperf: {self.problem}", pytrace=False)
        return self.systems

    def progress(self, node: pytest.Item, case: Case) -> Progress | None:
        """The progress reporter of a test's measured blocks: to the terminal, or from an xdist worker to the run
        folder's progress/ where the controller picks it up."""
        if self.progress_every is None:
            return None
        workerinput = getattr(node.config, "workerinput", None)
        if workerinput is None:
            emit = progress.terminal(node.config)
        else:
            assert self.run_dir is not None  # set at configure
            emit = progress.to_file(self.run_dir / progress.DIR / f"{workerinput['workerid']}.txt")
        return Progress(case.id, case.workload.unit, emit, self.progress_every)

    def sampler(self, lease: Lease, cores: slices.Slice) -> Sampler:
        """A telemetry sampler of a test's leased GPUs and its CPU cores."""
        return Sampler(self.nvml, lease.devices, cpus=cores.cpus)

    @property
    def slice_memory_gb(self) -> float | None:
        """The memory share telemetry checks the process against: only when the host is shared by workers."""
        return self.slice.memory_gb if self.slice and self.slice.workers > 1 else None

    @property
    def fresh_processes(self) -> bool:
        """Whether a case may run more than once (--runs N, --rerun-inconclusive): then each run is a fresh process
        of its own, so their spread shows the noise between processes."""
        return self.runs > 1 or self.reruns > 0

    def between(self, device: torch.device, lease: Lease) -> Between:
        """The between-process sd a single run's interval is widened by: pinned by mlperf_between_sd, else the
        host's, measured once by the probe (in fresh processes on this worker's slice) and cached."""
        if self.between_sd is not None:
            return Between(self.between_sd, "pinned by the ini key mlperf_between_sd")
        threads = torch.get_num_threads()  #: the test's cores' (the `cores` fixture)
        key = (str(device), threads)
        if key not in self._between:
            self._between[key] = between_processes(device, threads, self.cache_dir, lease.env)
        return self._between[key]

    def runs_in_container(self, case: Case) -> bool:
        return (self.runner or case.system.spec.runner) == "container"

    def judge(self, case: Case, compiled: bool, data: str) -> Judge:
        """What the case's figure is judged against: its baseline, its peak-fraction floor and, with --compare, the
        earlier run's figure of the same case (compiled or not, on the same data)."""
        s, earlier = case.settings, self.earlier.get(case.key(compiled, data))
        return Judge(s.baseline, s.floor, earlier, self.tolerance, self.earlier_source)

    def run_info(self, exitstatus: int, missing: list[str]) -> dict[str, object]:
        """The run as results.json records it; `missing`: the --compare run's cases that did not run here."""
        return {
            "run_id": self.store.run_id if self.store else "",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "exitstatus": exitstatus,
            "args": self.args,
            "systems": [s.name for s in self.systems or []],
            "compare": self.earlier_source,
            "missing": missing,
            "tolerance": self.tolerance,
            "inconclusive": self.inconclusive,
            "runs": self.runs,
            "torch": str(torch.__version__),
            "python": platform.python_version(),
            "host": socket.gethostname(),
            "system_info": self.system_info,
            "system_files": {s.name: digest(s.path) for s in self.systems or []},
        }


def _systems(config: pytest.Config) -> tuple[list[System] | None, str]:
    """Systems chosen by --system (or why there are none); a bad explicit choice is a usage error at once, while
    a failed automatic one only matters to sessions that collect mlperf tests (pytest-mlperf is loaded in every
    session of the venv)."""
    dirs = [Path(p) for p in config.getini("mlperf_systems")] or [config.rootpath / "systems"]
    dirs += [Path(p).resolve() for p in config.getoption("mlperf_systems_dirs")]
    option = config.getoption("mlperf_system")
    if option is None:
        dirs = [d for d in dirs if d.is_dir()]
        if not dirs:
            return None, "no systems directory: add systems/NAME.yaml under the rootdir or pass --systems-dir=DIR"
    try:
        return select(option or AUTO, dirs), ""
    except (SystemSelectionError, SystemFileError) as exc:
        if option is None:
            return None, str(exc)
        raise pytest.UsageError(str(exc)) from None


def _between_sd(value: str) -> float | None:
    """ini mlperf_between_sd: a percentage >= 0, or empty (measure it)."""
    if not value.strip():
        return None
    try:
        pinned = float(value)
    except ValueError:
        pinned = -1.0
    if not 0 <= pinned < 100:
        raise pytest.UsageError(f"ini mlperf_between_sd: expected a percentage in [0, 100), e.g. 5; got {value!r}")
    return pinned


def digest(path: Path) -> str:
    """A system file's content, as a gate compares it between runs: its SHA-256 (unreadable: why)."""
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


def _earlier(path: Path) -> list[Record]:
    """The records of an earlier run's results.json; a usage error when it is missing or not one."""
    try:
        records = load_results(path)
    except FileNotFoundError:
        raise pytest.UsageError(f"--compare={path}: no such file (expected an earlier run's results.json)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise pytest.UsageError(f"--compare={path}: not a pytest-mlperf results.json ({exc!r})") from None
    return records
