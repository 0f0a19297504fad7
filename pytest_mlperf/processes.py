"""Stopping the daemons and launchers we start (engines, Slurm daemons): politely first, then for sure."""

from __future__ import annotations

import subprocess


def terminate(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL when it is still running after `grace_s`; returns once it has exited."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
