"""Running one benchmark command in a container, through the docker SDK (Docker Engine or podman alike).

What users of the published container benchmarks ran into, and what this module does about it: a run that hangs
(multi-GPU SSD) is killed at its timeout and fails with its log tail; a run that fails is never reported as a result
(its exit code decides, not the absence of "RuntimeError" in a log); containers are never left behind holding GPU
memory: every container carries the labels pytest-mlperf=1 and pytest-mlperf.session=<session>, `Runner.run`
removes its container whatever happens (failure, timeout, an exception from `on_line`, Ctrl-C), including one left
in "Created" by a failed start, and `Runner.cleanup` / `remove_labelled` sweep whatever an interrupted session left.
"""

from __future__ import annotations

import codecs
import re
import secrets
import shlex
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.types
import requests

from .images import ImageIdentity, image_identity

LABEL = "pytest-mlperf"
SESSION_LABEL = "pytest-mlperf.session"
#: lines of log attached to a failure
TAIL_LINES = 40
#: env names whose values never appear in a description of a spec
SECRET_NAME = re.compile(r"TOKEN|KEY|PASSWORD|PASSWD|SECRET|CREDENTIAL|AUTH", re.IGNORECASE)
MASK = "***"
#: after killing a timed-out container, how long its log stream may take to end before it is cut
_KILL_GRACE_S = 5.0
#: after a container exits, how long its log stream may take to end before it is cut and the log read whole
_EXIT_GRACE_S = 2.0
#: the first and the longest interval between two looks at whether a container has exited
_POLL_FIRST_S, _POLL_MAX_S = 0.25, 10.0


@dataclass(frozen=True)
class Mount:
    """A bind mount of a host path; read-only unless said otherwise (a benchmark writes only to its output folder)."""

    source: Path
    target: str
    read_only: bool = True

    def to_docker(self) -> docker.types.Mount:
        return docker.types.Mount(target=self.target, source=str(self.source), type="bind", read_only=self.read_only)


@dataclass
class ContainerSpec:
    """What to run: an image and an argv (never a shell string: quoting is the commonest way such scripts break).

    gpus are device indices or UUIDs (["all"] for every GPU), passed as an NVIDIA device request; shm_size and
    ipc_mode="host" are what NGC containers recommend for PyTorch data loaders. ulimits (name -> (soft, hard)) reach
    both engines, but podman 4.3 then drops containers.conf's default_ulimits, and falls back to limits the hosts here
    do not permit: with podman, name nofile and nproc too, within the host's hard limits, or leave ulimits empty.
    network_mode defaults to "none": a benchmark has no business on the network; use "host" for multi-node NCCL.
    """

    image: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    gpus: list[str] = field(default_factory=list)
    shm_size: str | None = None
    ipc_mode: str | None = None
    ulimits: dict[str, tuple[int, int]] = field(default_factory=dict)
    network_mode: str | None = "none"
    cpuset_cpus: str | None = None
    mem_limit: str | None = None
    workdir: str | None = None
    timeout_s: float = 3600.0
    name_prefix: str = "pytest-mlperf"

    def __post_init__(self) -> None:
        if isinstance(self.command, str) or not self.command:
            raise TypeError(f"ContainerSpec.command must be a non-empty argv list, not {self.command!r}")
        if self.timeout_s <= 0:
            raise ValueError(f"ContainerSpec.timeout_s must be positive, not {self.timeout_s}")

    def describe(self) -> str:
        """One line for logs and reports, with the values of secret-looking env variables masked."""
        env = " ".join(f"{k}={MASK if SECRET_NAME.search(k) else shlex.quote(v)}" for k, v in self.env.items())
        mounts = " ".join(f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}" for m in self.mounts)
        parts = [f"image={self.image}", f"command={shlex.join(self.command)}", f"env=[{env}]", f"mounts=[{mounts}]"]
        parts += [f"gpus={','.join(self.gpus)}"] if self.gpus else []
        parts += [f"timeout={self.timeout_s:g}s"]
        return " ".join(parts)

    def __repr__(self) -> str:  # a dataclass repr would print secrets into tracebacks and pytest's assertion output
        return f"ContainerSpec({self.describe()})"


def masked(env: dict[str, str]) -> dict[str, str]:
    """`env` with the values of TOKEN/KEY/PASSWORD/SECRET-like names replaced by MASK."""
    return {k: MASK if SECRET_NAME.search(k) else v for k, v in env.items()}


@dataclass(frozen=True)
class ContainerRun:
    """A finished container: its exit code, its output (stdout and stderr interleaved as they were streamed), the
    seconds from start to exit, its name and the image it ran in."""

    exit_code: int
    logs: str
    seconds: float
    name: str
    image: ImageIdentity

    def tail(self, lines: int = TAIL_LINES) -> list[str]:
        return self.logs.splitlines()[-lines:]


class ContainerFailed(Exception):
    """A container that exited non-zero. The message names the image, the command and the exit code and ends with
    the log's last TAIL_LINES lines; `run` holds the whole log when the container ran at all."""

    def __init__(
        self, spec: ContainerSpec, why: str, log_tail: list[str], run: ContainerRun | None = None, name: str = ""
    ) -> None:
        self.image = spec.image
        self.command = list(spec.command)
        self.exit_code = run.exit_code if run else None
        self.log_tail = log_tail
        self.run = run
        self.name = run.name if run else name
        tail = "\n".join(log_tail) if log_tail else "(no output)"
        super().__init__(
            f"container {self.name or '(not created)'} (image {spec.image}) {why}: {shlex.join(spec.command)}\n"
            f"--- last {len(log_tail)} log lines ---\n{tail}"
        )


class ContainerTimeout(ContainerFailed):
    """A container still running at its timeout: it was killed; the log tail shows where it hung."""


class ContainerStartFailed(ContainerFailed):
    """A container that never ran: the image is missing, the command does not exist in it, a mount source is
    missing... The engine's own message is quoted."""


class Runner:
    """Runs ContainerSpecs on one engine for one session; `session` labels every container it creates, so that
    `cleanup` (at session end, or after Ctrl-C) removes exactly this session's leftovers and no one else's."""

    def __init__(self, client: docker.DockerClient, session: str) -> None:
        self.client = client
        self.session = session

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL: "1", SESSION_LABEL: self.session}

    def run(self, spec: ContainerSpec, on_line: Callable[[str], None] | None = None) -> ContainerRun:
        """Run `spec` to completion, passing each output line to `on_line` as it comes, and return the run; raise
        ContainerFailed (non-zero exit), ContainerTimeout (killed at spec.timeout_s) or ContainerStartFailed. The
        container is removed in every case."""
        try:
            identity = image_identity(self.client, spec.image)
        except docker.errors.ImageNotFound:
            raise ContainerStartFailed(
                spec, "cannot start: the image is not on this engine (pull or build it first)", []
            ) from None
        name = f"{_safe(spec.name_prefix)}-{_safe(self.session)}-{secrets.token_hex(4)}"
        lines: list[str] = []
        container = None
        watchdog: _Watchdog | None = None
        try:
            try:
                container = self.client.containers.create(**create_kwargs(spec, name, self.labels))
                container.start()
            except docker.errors.APIError as exc:
                message = _engine_message(exc)
                raise ContainerStartFailed(
                    spec, f"failed to start ({message}){_start_hint(spec, message)}", [], name=name
                ) from None
            started = time.monotonic()
            stream = container.logs(stream=True, follow=True, stdout=True, stderr=True)
            watchdog = _Watchdog(container, stream, spec.timeout_s)
            try:
                for line in _lines(stream):
                    lines.append(line)
                    if on_line is not None:
                        on_line(line)
            except (requests.exceptions.RequestException, OSError, ValueError, AttributeError):
                if not (watchdog.fired or watchdog.cut):  # the stream is cut on purpose only by the watchdog
                    raise
            if watchdog.cut:  # podman's follower missed the exit: what it did not pass on is in the whole log
                whole = list(_lines([container.logs(stdout=True, stderr=True)]))
                for line in whole[len(lines) :]:
                    if on_line is not None:
                        on_line(line)
                lines = whole
            left = spec.timeout_s - (time.monotonic() - started)
            exit_code = int(container.wait(timeout=max(left, 0) + 30)["StatusCode"])
            seconds = time.monotonic() - started
            timed_out = watchdog.fired
        finally:
            if watchdog is not None:
                watchdog.finish()
            _remove(self.client, container, name)
        logs = "".join(f"{line}\n" for line in lines)
        run = ContainerRun(exit_code=exit_code, logs=logs, seconds=seconds, name=name, image=identity)
        if timed_out:
            raise ContainerTimeout(spec, f"timed out after {spec.timeout_s:g} s and was killed", run.tail(), run)
        if exit_code != 0:
            raise ContainerFailed(spec, f"exited with code {exit_code}", run.tail(), run)
        return run

    def cleanup(self) -> list[str]:
        """Remove every container of this session, in any state; the names removed."""
        return remove_labelled(self.client, self.session)

    def containers(self) -> list[Any]:
        """This session's containers, in any state (for tests and for a report of leftovers)."""
        return _labelled(self.client, self.session)


def create_kwargs(spec: ContainerSpec, name: str, labels: dict[str, str]) -> dict[str, Any]:
    """The `containers.create` arguments for `spec` (a function of its own so that what reaches Docker Engine, GPU
    requests included, can be checked without one)."""
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command),
        "name": name,
        "labels": dict(labels),
        "environment": dict(spec.env),
        "mounts": [m.to_docker() for m in spec.mounts],
        "detach": True,
    }
    if spec.gpus:
        gpus = {"count": -1} if spec.gpus == ["all"] else {"device_ids": list(spec.gpus)}
        kwargs["device_requests"] = [docker.types.DeviceRequest(**gpus, capabilities=[["gpu"]])]
    if spec.ulimits:
        kwargs["ulimits"] = [docker.types.Ulimit(name=k, soft=s, hard=h) for k, (s, h) in spec.ulimits.items()]
    optional = {
        "shm_size": spec.shm_size,
        "ipc_mode": spec.ipc_mode,
        "network_mode": spec.network_mode,
        "cpuset_cpus": spec.cpuset_cpus,
        "mem_limit": spec.mem_limit,
        "working_dir": spec.workdir,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    return kwargs


def remove_labelled(client: docker.DockerClient, session: str | None = None) -> list[str]:
    """Remove the containers labelled pytest-mlperf=1 (only `session`'s when given), in any state; the names
    removed. Running ones are killed first: podman's forced removal would wait for the stop timeout."""
    removed = []
    for container in _labelled(client, session):
        if _remove(client, container, container.name):
            removed.append(container.name)
    return removed


def _labelled(client: docker.DockerClient, session: str | None) -> list[Any]:
    labels = [f"{LABEL}=1"] + ([f"{SESSION_LABEL}={session}"] if session is not None else [])
    return client.containers.list(all=True, filters={"label": labels})


def _remove(client: docker.DockerClient, container: Any, name: str) -> bool:
    """Kill and remove a container, found by name when its creation did not return (an interrupt while the create
    call was on the wire may still have created it). Failures are warned about, never raised: this runs in
    `finally`, where an error would hide the one that matters."""
    try:
        if container is None:
            container = client.containers.get(name)
        with suppress(docker.errors.APIError):
            container.kill()
        container.remove(force=True, v=True)
        return True
    except docker.errors.NotFound:
        return False
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        warnings.warn(f"could not remove container {name}: {exc}; remove_labelled() sweeps it later", RuntimeWarning, 2)
        return False


class _Watchdog:
    """Ends the log stream that the engine does not end: a container still running at its timeout is killed and its
    stream cut after a grace; one that exited has its stream cut after a shorter grace (`cut`), as podman's log
    follower sometimes misses a quick exit (containers/podman #6531, #11461) and would otherwise hang to the timeout.

    The exit is seen by inspecting the container at growing intervals (a quarter second, doubling up to
    _POLL_MAX_S), each a few milliseconds of the engine's time: not by the engine's wait call, which podman 4.3
    serves by polling in a loop that takes a whole core from the benchmark (measured: 7.9 CPU s in 6 s)."""

    def __init__(self, container: Any, stream: Any, timeout_s: float) -> None:
        self.fired = False
        self.cut = False
        self._done = threading.Event()
        self._container, self._stream, self._timeout_s = container, stream, timeout_s
        self._thread = threading.Thread(target=self._watch, name=f"timeout-{container.name}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        deadline = time.monotonic() + self._timeout_s
        interval = _POLL_FIRST_S
        while (left := deadline - time.monotonic()) > 0:
            if self._done.wait(min(interval, left)):
                return
            interval = min(interval * 2, _POLL_MAX_S)
            if self._exited():
                if not self._done.wait(_EXIT_GRACE_S):
                    self.cut = True
                    self._close()
                return
        if self._done.is_set():
            return
        self.fired = True
        with suppress(docker.errors.APIError, requests.exceptions.RequestException):
            self._container.kill()
        if not self._done.wait(_KILL_GRACE_S):
            self._close()

    def _exited(self) -> bool:
        try:
            self._container.reload()
        except (docker.errors.APIError, requests.exceptions.RequestException):
            return False  # the engine could not say: the timeout decides
        return self._container.status in ("exited", "dead")

    def _close(self) -> None:
        with suppress(Exception):
            self._stream.close()

    def finish(self) -> None:
        self._done.set()


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Text lines from a stream of byte chunks cut anywhere (UTF-8 split across chunks included)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    for chunk in chunks:
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line.removesuffix("\r")
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending.removesuffix("\r")


def _safe(text: str) -> str:
    """`text` as a container-name fragment ([a-zA-Z0-9_.-])."""
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-.") or "x"


def _engine_message(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc).strip()


def _start_hint(spec: ContainerSpec, message: str) -> str:
    """What to do about a start failure we know (podman's handling of ulimits surprises everyone)."""
    if "rlimit" in message and spec.ulimits:
        return (
            f". The engine could not apply ulimits {spec.ulimits}: podman applies a container's ulimits and then drops "
            "containers.conf's default_ulimits, so name nofile and nproc as well, within the host's hard limits "
            "(`ulimit -Hn`, `ulimit -Hu`)"
        )
    if "rlimit" in message:
        return (
            ". The engine could not apply its default ulimits: under podman, set default_ulimits within the host's "
            "hard limits in containers.conf (see engine.CONTAINERS_CONF)"
        )
    return ""
