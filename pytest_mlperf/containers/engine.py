"""Reaching a container engine: Docker Engine on GPU servers, or podman's Docker-compatible API where there is no
Docker daemon (the development and CI machines).

Both are driven through the same `docker` SDK calls, so everything above this module is engine-agnostic. What differs
is how an engine is found: `connect` tries what the user asked for (an explicit URL, then DOCKER_HOST, then the SDK's
default socket) and fails with one paragraph that says what was tried and how to fix it, not with the SDK's chain of
urllib3 tracebacks. `PodmanService` starts a private podman API service in a folder of its own, with the two settings
these VMs need (see CONTAINERS_CONF).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import docker
import requests

from ..processes import terminate

#: The containers.conf a podman service gets here. crun (podman's default runtime) refuses the hosts' hybrid cgroup
#: layout ("cgroups in hybrid mode not supported"), and raising rlimits above the defaults is not permitted; the
#: Docker API ignores per-container `runtime=` and `ulimits=` under podman, so both must be set in this file.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""

INSTALL = "apt-get install -y podman runc busybox-static"
#: the SDK's own default when neither base_url nor DOCKER_HOST is given
DEFAULT_URL = "unix:///var/run/docker.sock"
#: longest path a unix socket may have (sun_path is 108 bytes with its NUL)
_SUN_PATH_MAX = 107


class EngineUnavailable(Exception):
    """No container engine answered; the message says what was tried and how to start one."""


def connect(base_url: str | None = None, timeout_s: float = 60.0) -> docker.DockerClient:
    """A client for the engine at `base_url`, else at DOCKER_HOST, else at the SDK's default socket; pinged, so that
    a missing engine fails here, once, instead of in the middle of a test."""
    url = base_url or os.environ.get("DOCKER_HOST") or None
    source = "base_url" if base_url else "DOCKER_HOST" if url else "the docker SDK's default"
    try:
        client = docker.DockerClient(base_url=url, timeout=int(timeout_s)) if url else docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise EngineUnavailable(
            f"No container engine answered at {url or DEFAULT_URL} (from {source}): {_first_line(exc)}. "
            "Start Docker Engine (e.g. `systemctl start docker`), or point DOCKER_HOST at a running engine; "
            "without Docker, podman serves the same API: `podman system service --time=0 "
            "unix:///tmp/podman.sock &` then `export DOCKER_HOST=unix:///tmp/podman.sock` "
            f"(packages: `{INSTALL}`)."
        ) from None
    return client


def podman_available() -> str | None:
    """None when podman and runc are installed and podman runs; otherwise why not, with the command that fixes it."""
    podman = shutil.which("podman")
    if podman is None:
        return f"podman not installed: {INSTALL}"
    if shutil.which("runc") is None and not any(Path(d, "runc").exists() for d in ("/usr/sbin", "/usr/bin")):
        return f"runc not installed (podman's default runtime crun does not work on these hosts): {INSTALL}"
    try:
        subprocess.run([podman, "--version"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"podman does not run ({_first_line(exc)}): reinstall with {INSTALL}"
    return None


class PodmanService:
    """A podman API service of our own, listening on `<folder>/podman.sock` until stopped.

    Use as a context manager, or call `start()` and `stop()`. The folder also receives the containers.conf the service
    reads (CONTAINERS_CONF) and the service's stderr (podman.log), whose tail is quoted when the service fails to
    come up. Images and containers live in podman's usual storage, shared with other services on the host: clean up
    containers by label (`runner.remove_labelled`), not by stopping the service.
    """

    def __init__(self, folder: Path | str, podman: str = "podman", startup_timeout_s: float = 30.0) -> None:
        self.folder = Path(folder).absolute()
        self.podman = podman
        self.startup_timeout_s = startup_timeout_s
        self.socket = self.folder / "podman.sock"
        self.conf = self.folder / "containers.conf"
        self.log = self.folder / "podman.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> PodmanService:
        """Write containers.conf, start the service and wait until `/_ping` answers."""
        if self._process is not None:
            return self
        if len(str(self.socket)) > _SUN_PATH_MAX:
            raise EngineUnavailable(
                f"PodmanService: socket path {self.socket} is longer than the {_SUN_PATH_MAX} bytes a unix socket "
                "may have; use a shorter folder"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONTAINERS_CONF, encoding="utf-8")
        self.socket.unlink(missing_ok=True)
        argv = [self.podman, "system", "service", "--time=0", self.base_url]
        with self.log.open("ab") as log:
            try:
                self._process = subprocess.Popen(
                    argv,
                    env={**os.environ, "CONTAINERS_CONF": str(self.conf)},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a Ctrl-C in the terminal is for the test run, not for the engine
                )
            except OSError as exc:
                raise EngineUnavailable(f"PodmanService: cannot start {self.podman}: {exc}; {INSTALL}") from None
        deadline = time.monotonic() + self.startup_timeout_s
        while not ping(self.socket):
            code = self._process.poll()
            if code is not None or time.monotonic() > deadline:
                self.stop()
                why = (
                    f"exited with code {code}" if code is not None else f"gave no answer in {self.startup_timeout_s} s"
                )
                raise EngineUnavailable(
                    f"PodmanService: `{' '.join(argv)}` {why}. Last lines of {self.log}:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop the service (SIGTERM, then SIGKILL after 10 s). Containers still running keep running: remove them
        first."""
        process, self._process = self._process, None
        if process is None:
            return
        terminate(process)
        self.socket.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"

    def __enter__(self) -> PodmanService:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def ping(path: Path | str, timeout_s: float = 1.0) -> bool:
    """Whether an engine answers `GET /_ping` with OK on the unix socket at `path` (no SDK: it is polled while the
    service starts, and the SDK would try to negotiate an API version first)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0] and reply.endswith(b"OK")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."
