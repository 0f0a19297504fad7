"""Running a test's ranks as a Slurm job: one task per rank, on one node or several, through `srun`.

`submit_and_wait` runs a `SlurmJob` to completion and returns a `SlurmResult`, or raises `SlurmJobFailed` with the log
tail of the task that failed first. Every task's output goes to a file of its own (`<workdir>/<job id>-<task>.out`),
and no job outlives the call: at its time limit, on Ctrl-C or on any error the job is cancelled with `scancel`, and the
call returns only once `squeue` no longer lists it.

Inside a task, `rank_env()` turns Slurm's variables into the ones torch.distributed's `env://` rendezvous reads:
SLURM_PROCID -> RANK, SLURM_NTASKS -> WORLD_SIZE, SLURM_LOCALID -> LOCAL_RANK, the job's first node -> MASTER_ADDR and
a port derived from the job id -> MASTER_PORT (so concurrent jobs on a node do not collide). A task's entry point
calls `os.environ.update(rank_env())` before `torch.distributed.init_process_group()`; no torchrun is needed.

`SlurmCluster` starts a real, private Slurm cluster on this machine for the tests (Debian's Slurm 22.05 and munge, as
root): its own munged, slurmctld and one slurmd per fake node, all on ports and in a folder of their own, so that
several clusters (a developer's test run beside a CI run) can live on one host.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ..processes import terminate

INSTALL = "apt-get update && apt-get install -y slurm-wlm munge"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("munge", "srun", "squeue", "scancel", "sinfo", "scontrol")
#: lines of a task's log quoted in a failure
TAIL_LINES = 30
#: how long a cancelled job may take to leave squeue (Slurm's KillWait, 30 s by default, plus slack)
CANCEL_GRACE_S = 45.0
#: timeout of one Slurm client command (squeue, scancel...)
CLIENT_TIMEOUT_S = 30.0
#: MASTER_PORT = MASTER_PORT_BASE + job id % MASTER_PORT_SPAN: below Linux's ephemeral ports (32768-60999), where
#: the daemons' own ports and outgoing connections live
MASTER_PORT_BASE = 10000
MASTER_PORT_SPAN = 20000
#: set by a cluster whose node names do not resolve (fake nodes on one host): MASTER_ADDR for `rank_env()`
MASTER_ADDR_VAR = "PYTEST_MLPERF_MASTER_ADDR"
_SUN_PATH_MAX = 107


class SlurmError(Exception):
    """Slurm is missing, a cluster did not come up, or a Slurm command failed; the message says which and why."""


@dataclass
class SlurmJob:
    """What to run: `command` (an argv, never a shell string) in each of nodes x tasks_per_node tasks.

    time_limit_s is wall-clock from submission, queue wait included: Slurm's own `--time` counts whole minutes, too
    coarse for a test, so `submit_and_wait` enforces the limit itself (and passes Slurm the limit rounded up, as a
    backstop). env is added to the submitting environment, which srun exports to every task. container_image is for
    sites with pyxis/enroot (`--container-image`); extra_args go to srun as they are, before the command.
    """

    command: list[str]
    workdir: Path
    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_task: int = 0
    cpus_per_task: int | None = None
    partition: str | None = None
    time_limit_s: float = 3600.0
    env: dict[str, str] = field(default_factory=dict, repr=False)  # may hold tokens: kept out of tracebacks
    name: str = "pytest-mlperf"
    container_image: str | None = None
    extra_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.command, str) or not self.command:
            raise TypeError(f"SlurmJob.command must be a non-empty argv list, not {self.command!r}")
        if self.nodes < 1 or self.tasks_per_node < 1:
            raise ValueError(
                f"SlurmJob needs at least one node and a task per node, not {self.nodes}x{self.tasks_per_node}"
            )
        if self.time_limit_s <= 0:
            raise ValueError(f"SlurmJob.time_limit_s must be positive, not {self.time_limit_s}")
        self.workdir = Path(self.workdir).absolute()

    @property
    def tasks(self) -> int:
        return self.nodes * self.tasks_per_node


@dataclass(frozen=True)
class SlurmResult:
    """A finished job. state is Slurm's (COMPLETED, FAILED, CANCELLED...), or TIMEOUT when `submit_and_wait`
    cancelled it at its time limit, or NOT_SUBMITTED when srun never created it (job_id is then None). exit_code is
    the first failing task's when srun names one, else the job's (128 + signal for a signal). srun_log holds srun's
    own messages."""

    job_id: int | None
    state: str
    exit_code: int
    task_logs: dict[int, Path]
    seconds: float
    name: str
    srun_log: Path

    def log(self, task: int) -> str:
        """The output (stdout and stderr) of one task."""
        return self.task_logs[task].read_text(encoding="utf-8", errors="replace")


class SlurmJobFailed(SlurmError):
    """A job that did not complete: the message names the job id, state and exit code, and ends with the last
    TAIL_LINES lines of the first failing task's log (every task's when none can be singled out: a hang, a timeout)."""

    def __init__(self, result: SlurmResult, why: str, task: int | None) -> None:
        self.result = result
        self.job_id = result.job_id
        self.state = result.state
        self.exit_code = result.exit_code
        self.task = task
        tasks = [task] if task is not None and task in result.task_logs else sorted(result.task_logs)
        parts = [
            f"Slurm job {result.job_id if result.job_id is not None else '(none)'} ({result.name}) {result.state}, "
            f"exit code {result.exit_code}: {why}"
        ]
        for t in tasks:
            parts.append(
                f"--- last {TAIL_LINES} lines of task {t} ({result.task_logs[t]}) ---\n{_tail(result.task_logs[t])}"
            )
        parts.append(f"--- srun ({result.srun_log}) ---\n{_tail(result.srun_log, 10)}")
        super().__init__("\n".join(parts))


def srun_argv(job: SlurmJob, name: str, srun: str = "srun") -> list[str]:
    """The srun command line for `job`, submitted under the (unique) job name `name`. --kill-on-bad-exit ends every
    task once one fails, as torchrun does: the others would wait in a collective until torch's own timeout."""
    argv = [
        srun,
        f"--job-name={name}",
        f"--nodes={job.nodes}",
        f"--ntasks={job.tasks}",
        f"--ntasks-per-node={job.tasks_per_node}",
        f"--time={max(1, -(-int(job.time_limit_s) // 60))}",
        "--kill-on-bad-exit=1",
        f"--output={job.workdir / '%j-%t.out'}",  # stderr follows stdout when --error is not given
    ]
    if job.partition:
        argv.append(f"--partition={job.partition}")
    if job.cpus_per_task:
        argv.append(f"--cpus-per-task={job.cpus_per_task}")
    if job.gpus_per_task:
        argv.append(f"--gpus-per-task={job.gpus_per_task}")
    if job.container_image:
        argv.append(f"--container-image={job.container_image}")
    return [*argv, *job.extra_args, *job.command]


def submit_and_wait(job: SlurmJob, env: Mapping[str, str] | None = None) -> SlurmResult:
    """Run `job` with srun, wait for it, and return its result; raise SlurmJobFailed unless every task exited 0.

    `env` is what Slurm's clients need (SLURM_CONF for a private cluster: `SlurmCluster.env`). srun rather than
    sbatch: srun blocks until the job ends and takes the argv as it is, so there is no batch script to quote, no
    polling loop, and its own messages ("Invalid partition name", "task 1: Exited with exit code 3") say why a job
    failed. srun runs in a session of its own, so a Ctrl-C in the terminal reaches only us; we then `scancel` the job
    by its unique name (which works even before srun has a job id) and wait until squeue no longer lists it.
    """
    workdir = job.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    name = f"{_safe(job.name)}-{secrets.token_hex(4)}"
    srun_log = workdir / f"{name}.srun.log"
    client_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {}), **job.env}
    argv = srun_argv(job, name, _which("srun") or "srun")
    started = time.monotonic()
    timed_out = False
    with srun_log.open("wb") as log:
        try:
            process = subprocess.Popen(
                argv, env=client_env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise SlurmError(f"cannot run srun ({exc}): {INSTALL}") from None
        try:
            code = process.wait(timeout=job.time_limit_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            code = cancel(name, client_env, process)
        except BaseException:  # Ctrl-C, or anything else: no job may outlive the call
            cancel(name, client_env, process)
            raise
    _wait_gone(name, client_env, CANCEL_GRACE_S)
    seconds = time.monotonic() - started
    job_id, state, job_exit = _record(name, client_env)
    srun_text = srun_log.read_text(encoding="utf-8", errors="replace")
    failed = _first_failure(srun_text)
    if failed and failed[2] is not None:
        exit_code = failed[2]
    elif job_exit is not None:
        exit_code = job_exit
    else:
        exit_code = code if code is not None else -1
    logs = {t: workdir / f"{job_id}-{t}.out" for t in range(job.tasks)} if job_id is not None else {}
    result = SlurmResult(
        job_id=job_id,
        state="TIMEOUT" if timed_out else state,
        exit_code=exit_code,
        task_logs={t: path for t, path in logs.items() if path.exists()},
        seconds=seconds,
        name=name,
        srun_log=srun_log,
    )
    if timed_out:
        why = f"still running after its time limit of {job.time_limit_s:g} s; cancelled with scancel (Slurm: {state})"
        raise SlurmJobFailed(result, why, None)
    if code != 0 or state != "COMPLETED":
        if job_id is None:
            raise SlurmJobFailed(result, f"srun exited with code {code} without creating a job", None)
        why = f"task {failed[0]} on {failed[1]} failed first" if failed else f"srun exited with code {code}"
        raise SlurmJobFailed(result, why, failed[0] if failed else None)
    return result


def cancel(name: str, env: Mapping[str, str], process: subprocess.Popen[bytes] | None = None) -> int | None:
    """Cancel the job(s) named `name` and wait until squeue no longer lists them; stop `process` (the srun that
    submitted them) too, and return its exit code. Problems are warned about, not raised: this runs while another
    exception (a Ctrl-C) is on its way."""
    _scancel(name, env)
    code = None
    if process is not None:
        try:
            code = process.wait(timeout=CANCEL_GRACE_S)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):  # srun exited meanwhile
                os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
        _scancel(name, env)  # a job that srun submitted after the first scancel
    if not _wait_gone(name, env, CANCEL_GRACE_S):
        warnings.warn(f"Slurm job {name} is still in squeue {CANCEL_GRACE_S:g} s after scancel", RuntimeWarning, 2)
    return code


def active_jobs(env: Mapping[str, str], name: str | None = None) -> list[int]:
    """The ids of the jobs squeue lists (pending, running, completing...), only those named `name` when given."""
    argv = [_which("squeue") or "squeue", "-h", "-o", "%i"] + ([f"--name={name}"] if name else [])
    out = _client(argv, env)
    return [int(line) for line in out.split() if line.isdigit()]


def rank_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Inside a Slurm task: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for torch.distributed's env://
    rendezvous. MASTER_ADDR is the job's first node, or PYTEST_MLPERF_MASTER_ADDR where the cluster sets it (fake
    nodes whose names do not resolve); MASTER_PORT is derived from the job id."""
    env = os.environ if environ is None else environ
    missing = [n for n in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_JOB_ID") if n not in env]
    if missing:
        raise SlurmError(f"rank_env() must run inside a Slurm task (started by srun): {', '.join(missing)} not set")
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or ""
    master = env.get(MASTER_ADDR_VAR) or first_node(nodelist)
    if not master:
        raise SlurmError("rank_env(): neither SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST names a node")
    return {
        "RANK": env["SLURM_PROCID"],
        "WORLD_SIZE": env["SLURM_NTASKS"],
        "LOCAL_RANK": env["SLURM_LOCALID"],
        "MASTER_ADDR": master,
        "MASTER_PORT": str(MASTER_PORT_BASE + int(env["SLURM_JOB_ID"]) % MASTER_PORT_SPAN),
    }


def first_node(nodelist: str) -> str:
    """The first host of a Slurm hostlist ("gpu[07-09,12],cpu1" -> "gpu07"), without scontrol (a container image
    running the task may not have it)."""
    depth, end = 0, len(nodelist)
    for i, char in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            end = i
            break
    return re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[,-]", m.group(1))[0], nodelist[:end]).strip()


def slurm_available() -> str | None:
    """None when a local cluster can be started here; otherwise why not, with the command that fixes it."""
    missing = [n for n in DAEMONS + CLIENTS if _which(n) is None]
    if missing:
        return f"Slurm/munge not installed ({', '.join(missing)} not found): {INSTALL}"
    if os.geteuid() != 0:
        return "a local Slurm cluster needs root: slurmd starts every task as its user"
    return None


class SlurmCluster:
    """A private Slurm cluster on this machine: munged, slurmctld and `nodes` slurmd daemons (fake nodes n1..nN, all
    on 127.0.0.1 with ports of their own), until stopped. Use as a context manager, or call start() and stop().

    Everything lives in `folder`: a munge key and socket (a munged of our own rather than the host's: it may be
    absent, or another session's, and ours can be stopped by PID), slurm.conf, state, spool and each daemon's log,
    whose tail is quoted when the cluster does not come up. The daemons run as root (SlurmUser=root: pytest's tmp
    folders are private to root, so the slurm user could not write there). Each node claims cpus_per_node CPUs (by
    default all of this host's: nodes share the cores, which SlurmdParameters=config_overrides allows). Clients reach
    it through `env` (SLURM_CONF, plus MASTER_ADDR_VAR since the node names do not resolve); `partition` is its only
    partition, the default.
    """

    def __init__(
        self,
        folder: Path | str,
        nodes: int = 1,
        cpus_per_node: int | None = None,
        startup_timeout_s: float = 30.0,
    ) -> None:
        if nodes < 1:
            raise ValueError(f"SlurmCluster needs at least one node, not {nodes}")
        self.folder = Path(folder).absolute()
        self.nodes = nodes
        self.cpus_per_node = cpus_per_node or os.cpu_count() or 1
        self.startup_timeout_s = startup_timeout_s
        self.partition = "pytest"
        self.conf = self.folder / "slurm.conf"
        self.munge_socket = self.folder / "munge.sock"
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def node_names(self) -> list[str]:
        return [f"n{i}" for i in range(1, self.nodes + 1)]

    @property
    def env(self) -> dict[str, str]:
        """What Slurm clients (srun, squeue...) and the tasks they start need to use this cluster."""
        return {"SLURM_CONF": str(self.conf), MASTER_ADDR_VAR: "127.0.0.1"}

    def start(self) -> SlurmCluster:
        """Start munged, write slurm.conf, start slurmctld and the slurmds, and wait until every node is idle."""
        if self._processes:
            return self
        reason = slurm_available()
        if reason is not None:
            raise SlurmError(f"SlurmCluster: {reason}")
        if len(str(self.munge_socket)) > _SUN_PATH_MAX:
            raise SlurmError(f"SlurmCluster: {self.munge_socket} is too long for a unix socket; use a shorter folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._start_munged()
            self.conf.write_text(self.slurm_conf(), encoding="utf-8")
            for sub in ("state", "spool", *(f"spool/{n}" for n in self.node_names)):
                (self.folder / sub).mkdir(parents=True, exist_ok=True)
            self._spawn("slurmctld", [_which("slurmctld") or "slurmctld", "-D", "-i", "-f", str(self.conf)])
            for node in self.node_names:
                self._spawn(f"slurmd-{node}", [_which("slurmd") or "slurmd", "-D", "-N", node, "-f", str(self.conf)])
            self._wait(self._nodes_idle, f"all of {', '.join(self.node_names)} idle in sinfo")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel what still runs, then stop the daemons we started (SIGTERM, SIGKILL after 10 s), munged last."""
        if "slurmctld" in self._processes and self._processes["slurmctld"].poll() is None:
            try:
                _client([_which("scancel") or "scancel", f"--user={os.geteuid()}"], self.env)
            except SlurmError as exc:
                warnings.warn(f"SlurmCluster.stop: {exc}", RuntimeWarning, 2)
        for name in reversed(list(self._processes)):
            terminate(self._processes.pop(name))

    def slurm_conf(self) -> str:
        """The cluster's slurm.conf. Ports are picked free at each start and FirstJobId at random, so that jobs of two
        clusters on one host do not derive the same MASTER_PORT."""
        host = socket.gethostname().split(".")[0]
        folder = self.folder
        lines = [
            f"ClusterName=pytest{secrets.token_hex(3)}",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={folder / 'state'}",
            f"SlurmdSpoolDir={folder / 'spool' / '%n'}",
            f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
            f"SlurmdPidFile={folder / 'slurmd-%n.pid'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "MpiDefault=none",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",
            "KillWait=5",
            f"FirstJobId={secrets.randbelow(10_000_000) + 1000}",
        ]
        lines += [
            f"NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 Port={_free_port()} "
            f"CPUs={self.cpus_per_node} RealMemory=1000 State=UNKNOWN"
            for node in self.node_names
        ]
        nodes = ",".join(self.node_names)
        lines.append(f"PartitionName={self.partition} Nodes={nodes} Default=YES MaxTime=INFINITE State=UP")
        return "\n".join(lines) + "\n"

    def log_tails(self, lines: int = 20) -> str:
        """The last lines of every daemon's log, for an error message."""
        logs = sorted(self.folder.glob("*.log"))
        return "\n".join(f"--- {path.name} ---\n{_tail(path, lines)}" for path in logs)

    def _start_munged(self) -> None:
        key = self.folder / "munge.key"
        key.unlink(missing_ok=True)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(128))
        self.munge_socket.unlink(missing_ok=True)
        argv = [
            _which("munged") or "munged", "--foreground", "--force", f"--socket={self.munge_socket}",
            f"--key-file={key}", f"--pid-file={self.folder / 'munged.pid'}",
            f"--seed-file={self.folder / 'munged.seed'}",
        ]  # fmt: skip
        self._spawn("munged", argv)
        munge = [_which("munge") or "munge", f"--socket={self.munge_socket}", "--no-input"]
        self._wait(lambda: subprocess.run(munge, capture_output=True, timeout=10).returncode == 0, "munged answering")

    def _spawn(self, name: str, argv: list[str]) -> None:
        with (self.folder / f"{name}.log").open("ab") as log:
            try:
                self._processes[name] = subprocess.Popen(
                    argv, env={**os.environ, **self.env}, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,  # a Ctrl-C is for the test run, not the daemons
                )  # fmt: skip
            except OSError as exc:
                raise SlurmError(f"SlurmCluster: cannot start {argv[0]}: {exc}; {INSTALL}") from None

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            dead = {name: p.returncode for name, p in self._processes.items() if p.poll() is not None}
            if dead:
                why = ", ".join(f"{name} exited with code {code}" for name, code in dead.items())
                raise SlurmError(f"SlurmCluster: waiting for {what}: {why}.\n{self.log_tails()}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise SlurmError(f"SlurmCluster: no {what} after {self.startup_timeout_s:g} s.\n{self.log_tails()}")
            time.sleep(0.2)

    def _nodes_idle(self) -> bool:
        try:
            out = _client([_which("sinfo") or "sinfo", "-h", "-N", "-o", "%N %T"], self.env)
        except SlurmError:
            return False  # slurmctld not listening yet
        states = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
        return all(states.get(node) == "idle" for node in self.node_names)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _record(name: str, env: Mapping[str, str]) -> tuple[int | None, str, int | None]:
    """The job id, state and exit code (128 + signal for a signal) Slurm keeps of the job named `name` (for
    MinJobAge, 300 s by default); None, NOT_SUBMITTED, None when it never existed."""
    out = _client([_which("squeue") or "squeue", "-h", "--states=all", f"--name={name}", "-o", "%i"], env)
    ids = [int(word) for word in out.split() if word.isdigit()]
    if not ids:
        return None, "NOT_SUBMITTED", None
    job_id = ids[-1]
    show = _client([_which("scontrol") or "scontrol", "show", "job", "-o", str(job_id)], env)
    state = re.search(r"\bJobState=(\S+)", show)
    code = re.search(r"\bExitCode=(\d+):(\d+)", show)
    exit_code = None
    if code:
        status, sig = int(code.group(1)), int(code.group(2))
        exit_code = status or (128 + sig if sig else 0)
    return job_id, state.group(1) if state else "UNKNOWN", exit_code


def _first_failure(srun_log: str) -> tuple[int, str, int | None] | None:
    """The task srun reported first as failed ("srun: error: n1: task 1: Exited with exit code 3", or "tasks 0-1:
    Killed"), its node and exit code; None when srun named none."""
    match = re.search(r"^srun: error: (\S+): tasks? (\d+)[\d,\-]*: (.*)$", srun_log, re.MULTILINE)
    if match is None:
        return None
    code = re.search(r"exit code (\d+)", match.group(3))
    return int(match.group(2)), match.group(1), int(code.group(1)) if code else None


def _wait_gone(name: str, env: Mapping[str, str], timeout_s: float) -> bool:
    """Wait until squeue lists no job named `name` (a finished job stays COMPLETING for a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if not active_jobs(env, name):
                return True
        except SlurmError as exc:
            warnings.warn(str(exc), RuntimeWarning, 2)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def _scancel(name: str, env: Mapping[str, str]) -> None:
    try:
        _client([_which("scancel") or "scancel", f"--name={name}"], env)
    except SlurmError as exc:
        warnings.warn(f"could not cancel Slurm job {name}: {exc}", RuntimeWarning, 2)


def _client(argv: list[str], env: Mapping[str, str]) -> str:
    """Run a Slurm client command and return its stdout; SlurmError with its stderr when it fails."""
    try:
        done = subprocess.run(
            argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmError(f"`{' '.join(argv)}` failed: {exc}") from None
    if done.returncode != 0:
        raise SlurmError(f"`{' '.join(argv)}` exited with code {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _which(name: str) -> str | None:
    """A Slurm or munge program, also where root's PATH may lack it (/usr/sbin)."""
    found = shutil.which(name)
    if found:
        return found
    return next((str(Path(d, name)) for d in ("/usr/sbin", "/sbin") if Path(d, name).is_file()), None)


def _free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick), for a daemon to listen on soon after."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def _safe(text: str) -> str:
    """`text` as a job-name fragment."""
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-.") or "job"
