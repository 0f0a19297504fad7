"""A pytest plugin that makes a build slower on purpose, for measuring what the regression gate catches
(benchmarks/gate_quality.py): with MLPERF_SLOWDOWN=0.1 every training step of the workloads named in
MLPERF_SLOWDOWN_WORKLOADS (comma-separated; default every workload) takes 1/0.9 of its own time, the extra spent
busy on the step's thread, so their throughput drops by 10% whatever the host's speed.

Load it with `-p slowdown` (this folder on PYTHONPATH). It replaces the workloads' `build` with one defined here, so
a case run in a fresh process (`--runs N`) imports this module there too (`launch.ranks.job_for` names where a
workload was registered) and is slowed the same way.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

from pytest_mlperf.workloads import known, registry

SLOWDOWN = float(os.environ.get("MLPERF_SLOWDOWN", "0"))
WORKLOADS = [name for name in os.environ.get("MLPERF_SLOWDOWN_WORKLOADS", "").split(",") if name] or list(known())


def slowed(build: Callable[[Any], Any]) -> Callable[[Any], Any]:
    extra = 1 / (1 - SLOWDOWN) - 1  # of a step's own time: throughput x (1 - SLOWDOWN)

    def build_slowly(setup: Any) -> Any:
        trainer = build(setup)
        step = trainer.step

        def slow_step() -> Any:
            start = time.perf_counter()
            loss = step()
            until = time.perf_counter() + (time.perf_counter() - start) * extra
            while time.perf_counter() < until:
                pass
            return loss

        trainer.step = slow_step
        return trainer

    return build_slowly


if SLOWDOWN:
    for name in WORKLOADS:
        workload = known()[name]
        registry._WORKLOADS[name] = dataclasses.replace(workload, build=slowed(workload.build))
