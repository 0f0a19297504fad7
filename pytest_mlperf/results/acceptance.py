"""The acceptance verdict a buyer signs, and the pass/fail matrix it rests on.

ACCEPTED only when tests ran and every one of them passed clearly against a target: a failure, an error, a skipped
test (a dataset missing, a precision the device lacks), an inconclusive figure (unless the run said inconclusive
figures only warn), a figure that no target judged, and a case of the earlier run (--compare) that did not run here
each reject the run, and each is listed with why. A run's exit status follows its verdict (`exit_status`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from .record import Record
from .verdict import INCONCLUSIVE, UNJUDGED

ACCEPTED, REJECTED = "ACCEPTED", "REJECTED"
PASS, FAIL, ERROR, SKIPPED = "passed", "failed", "error", "skipped"
NO_TARGET = "no target"  #: a passed performance test whose figure no target judged
#: the exit status of a REJECTED run in which no test failed (pytest 9's own statuses are 0 to 6)
EXIT_REJECTED = 10
WARN = "warn"  #: the run's `inconclusive` policy (--inconclusive=warn): inconclusive figures do not reject it


@dataclass(frozen=True)
class Acceptance:
    verdict: str
    reasons: list[tuple[str, str]] = field(default_factory=list)  #: (test id, why) of each test that rejects it
    notes: list[str] = field(default_factory=list)  #: what the buyer should know that does not reject it

    @property
    def accepted(self) -> bool:
        return self.verdict == ACCEPTED


def state(record: Record) -> str:
    """A test's cell in the matrix: its outcome; for a passed test whose figure was not clear, inconclusive; for one
    whose figure no target judged, no target."""
    statuses = (record.baseline_status, record.floor_status, record.earlier_status)
    if record.outcome == PASS and INCONCLUSIVE in statuses:
        return INCONCLUSIVE
    if record.outcome == PASS and _performance(record) and all(s in ("", *UNJUDGED) for s in statuses):
        return NO_TARGET
    return record.outcome or ERROR


def _performance(record: Record) -> bool:
    """A test whose figure is a throughput or latency to judge (not an accuracy pass)."""
    return record.mode != "accuracy" and record.mean is not None


def decide(records: Sequence[Record], run: Mapping[str, Any] | None = None) -> Acceptance:
    """The verdict on `records`, under the run's information (`run`: its pytest exit status, its `inconclusive`
    policy, and the cases of the earlier run it was compared with that are `missing` here)."""
    run = run or {}
    warn_only = run.get("inconclusive") == WARN
    rejecting = [r for r in records if state(r) != PASS and not (warn_only and state(r) == INCONCLUSIVE)]
    reasons = [(r.id, _why(r)) for r in rejecting]
    reasons += [
        (case, f"missing: in the earlier run ({run.get('compare')}), not in this one")
        for case in run.get("missing", [])
    ]
    if not records:
        reasons.append(("", "no test ran"))
    exitstatus = run.get("exitstatus")
    if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
        reasons.append(("", f"the run did not finish (pytest exit status {exitstatus})"))
    notes = []
    inconclusive = [r for r in records if state(r) == INCONCLUSIVE]
    if warn_only and inconclusive:
        notes.append(
            f"{len(inconclusive)} tests were inconclusive, which this run only warns about (--inconclusive=warn): "
            + ", ".join(r.id for r in inconclusive)
        )
    flagged = [r for r in records if r.telemetry_flags]
    if flagged:
        notes.append(f"{len(flagged)} tests ran on hardware telemetry flagged as doubtful (see their details)")
    return Acceptance(REJECTED if reasons else ACCEPTED, reasons, notes)


def _why(r: Record) -> str:
    first = r.message.strip().splitlines()[0].removeprefix("Failed: ") if r.message.strip() else ""
    if state(r) == INCONCLUSIVE:
        return "inconclusive: its 95% interval straddles the target; rerun with --runs or --rerun-inconclusive"
    if state(r) == NO_TARGET:
        return "no target: no baseline or peak-fraction floor judged its figure (add one to the system file)"
    return f"{state(r)}: {first}" if first else state(r)


def exit_status(verdict: Acceptance, pytest_status: int) -> int:
    """The run's exit status: pytest's, except that a REJECTED run in which pytest saw nothing wrong (an inconclusive
    figure, a skip, a missing case, a figure without a target) exits EXIT_REJECTED rather than 0."""
    if verdict.accepted or pytest_status != pytest.ExitCode.OK:
        return pytest_status
    return EXIT_REJECTED


Row = str  #: benchmark, with the scenario of an inference test
Cell = tuple[str, str]  #: (state, text)


def matrix(records: Sequence[Record]) -> dict[str, tuple[list[Row], list[str], dict[tuple[Row, str], Cell]]]:
    """Per system: its rows (benchmark, or benchmark and scenario), columns (precisions) and cells, in test order."""
    systems: dict[str, tuple[list[Row], list[str], dict[tuple[Row, str], Cell]]] = {}
    for r in records:
        rows, columns, cells = systems.setdefault(r.system, ([], [], {}))
        row = " ".join(filter(None, (r.benchmark, r.scenario if r.mode == "performance" else "", _mode(r))))
        if row not in rows:
            rows.append(row)
        if r.precision not in columns:
            columns.append(r.precision)
        cells[(row, r.precision)] = (state(r), _text(r))
    return systems


def _mode(r: Record) -> str:
    return "accuracy" if r.mode == "accuracy" else ""


def _text(r: Record) -> str:
    if r.mode == "accuracy" and r.quality_value is not None:
        return f"{r.quality_metric} {r.quality_value:.4g}"
    if r.mean is None:
        return ""
    ratio = f" ({r.baseline_ratio:.2f}x)" if r.baseline_ratio is not None else ""
    return f"{r.mean:.4g} {r.unit}{ratio}"
