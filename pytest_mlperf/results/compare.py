"""Run against run: each case's figure in B over its figure in A, matched by the case's fields (never the node id),
with the regression gate's verdict on the ratio's interval, and what changed between the two runs' environments.
`pytest-mlperf compare` prints it; a run with --compare writes it beside its results and fails what regressed.

A gate is only sound when nothing slips through: a case of A that is missing from B, skipped in B, or failed in B
(whatever figure it measured before failing) counts as a regression, as a clearly slower figure does.

A host's speed drifts by more than a gate must see (README, "Gate quality"): runs of the two builds interleaved on
the host (A1 B1 A2 B2 ...) are judged on their pairs' ratios, each pair's runs close in time, so the drift cancels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

import pandas as pd

from .record import Key, Record, figure
from .stats import summarize
from .verdict import INCONCLUSIVE, OK, SLOWER, Figure, against_earlier, on_ratio

FAILED, SKIPPED, ONLY_A, ONLY_B, NEW = "failed in B", "skipped in B", "only in A", "only in B", "no figure in A"
STATUSES = (OK, SLOWER, INCONCLUSIVE, FAILED, SKIPPED, ONLY_A, ONLY_B, NEW)
REGRESSIONS = (SLOWER, FAILED, SKIPPED, ONLY_A)  #: what makes `pytest-mlperf compare` exit 1


def figures_by_key(records: Sequence[Record]) -> dict[Key, Figure]:
    """Each case's figure and interval from the tests that passed (repeated cases averaged, their intervals joined);
    a failed test's figure, or a LoadGen run judged INVALID, is no figure to compare with."""
    figures: dict[Key, list[Figure]] = {}
    for r in records:
        if r.mean is not None and r.validity != "INVALID" and r.outcome in ("passed", ""):
            figures.setdefault(r.key, []).append(figure(r))
    return {
        key: Figure(fmean(f.value for f in fs), min(f.low for f in fs), max(f.high for f in fs))
        for key, fs in figures.items()
    }


@dataclass(frozen=True)
class Row:
    test: str  #: the case's id (from B where it ran there)
    unit: str
    a: Figure | None
    b: Figure | None
    ratio: float | None  #: b / a
    status: str  #: one of STATUSES
    key: Key  #: the fields the case was matched on
    lower_is_better: bool = False

    @property
    def regressed(self) -> bool:
        return self.status in REGRESSIONS


def compare(a: Sequence[Record], b: Sequence[Record], tolerance: float, label: str = "A") -> list[Row]:
    """One row per case in either run, in B's order then A's."""
    fa, fb = figures_by_key(a), figures_by_key(b)
    first: dict[Key, Record] = {}
    for r in [*b, *a]:
        first.setdefault(r.key, r)
    outcomes_b: dict[Key, set[str]] = {}
    for r in b:
        outcomes_b.setdefault(r.key, set()).add(r.outcome)
    in_a = {r.key for r in a}
    rows = []
    for key, r in first.items():
        before, after = fa.get(key), fb.get(key)
        outcomes = outcomes_b.get(key)
        if key not in in_a:
            status = ONLY_B
        elif outcomes is None:
            status = ONLY_A
        elif outcomes & {"failed", "error"}:
            status = FAILED
        elif "skipped" in outcomes or after is None:
            status = SKIPPED if "skipped" in outcomes else FAILED
        elif before is None:
            status = NEW
        else:
            lower = bool(r.lower_is_better)
            verdict = against_earlier(after, r.unit, before, tolerance, label, lower)
            rows.append(Row(r.id, r.unit, before, after, verdict.ratio, verdict.status, key, lower))
            continue
        rows.append(Row(r.id, r.unit, before, after, None, status, key))
    return rows


JUDGED = (OK, SLOWER, INCONCLUSIVE)  #: the statuses of a case with a figure on both sides


def compare_pairs(pairs: Sequence[tuple[Sequence[Record], Sequence[Record]]], tolerance: float) -> list[Row]:
    """Runs of the earlier build (A) and the later (B) interleaved on the host, A1 B1 A2 B2 ...: each pair compared as
    `compare` does; a case judged in every pair gets the verdict of its pairs' ratios B_i / A_i (their geometric mean,
    with the Student-t interval of their logarithms), else its first pair's row that was not judged: a regression in
    any pair is one of the whole, and a case of an earlier run missing from a pair counts as only in A."""
    per_pair = [compare(a, b, tolerance, f"A{n}") for n, (a, b) in enumerate(pairs, 1)]
    if len(per_pair) == 1:
        return per_pair[0]
    in_a = {r.key for a, _ in pairs for r in a}
    seen: dict[Key, list[Row]] = {}
    for rows in per_pair:
        for row in rows:
            seen.setdefault(row.key, []).append(row)
    judged = []
    for key, rows in seen.items():
        if len(rows) < len(per_pair) and key in in_a:
            first = rows[0]
            judged.append(Row(first.test, first.unit, first.a, None, None, ONLY_A, key))
        elif unjudged := [r for r in rows if r.status not in JUDGED]:
            judged.append(next((r for r in unjudged if r.regressed), unjudged[0]))
        else:
            judged.append(_paired(rows, tolerance))
    return judged


def _paired(rows: Sequence[Row], tolerance: float) -> Row:
    """One case's verdict on the ratios of its pairs (each row one pair's, with figures on both sides)."""
    logs = summarize([math.log(r.ratio) for r in rows if r.ratio is not None])
    ratio = Figure(math.exp(logs.mean), math.exp(logs.ci_low), math.exp(logs.ci_high))
    first = rows[0]
    verdict = on_ratio(ratio, tolerance, f"{len(rows)} interleaved pairs", first.lower_is_better)
    a, b = (
        Figure.of(summarize([f.value for f in side if f is not None]))
        for side in ([r.a for r in rows], [r.b for r in rows])
    )
    return Row(first.test, first.unit, a, b, verdict.ratio, verdict.status, first.key, first.lower_is_better)


def frame(rows: Sequence[Row]) -> pd.DataFrame:
    def shown(f: Figure | None) -> str:
        return "" if f is None else f"{f.value:.4g}" + (f" [{f.low:.4g}, {f.high:.4g}]" if f.low != f.high else "")

    return pd.DataFrame(
        [
            {
                "test": r.test,
                "unit": r.unit,
                "A": shown(r.a),
                "B": shown(r.b),
                "B/A": "" if r.ratio is None else f"{r.ratio:.3f}",
                "verdict": r.status,
            }
            for r in rows
        ],
        columns=["test", "unit", "A", "B", "B/A", "verdict"],
    )


def summary(rows: Sequence[Row]) -> str:
    counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing to compare"


#: what a gate on a new driver, container or host asks changed: the run's system information and software
ENVIRONMENT = ("host", "driver", "cuda", "cudnn", "nccl", "torch", "python", "gpus", "cpu", "kernel", "container")


def environment_changes(
    run_a: Mapping[str, Any], a: Sequence[Record], run_b: Mapping[str, Any], b: Sequence[Record]
) -> list[str]:
    """What differs between the two runs' environments, one line each: the session's system information, the
    container images (and their digests) the results ran in, and the system files' contents."""
    lines = []
    info_a, info_b = _environment(run_a, a), _environment(run_b, b)
    for name in dict.fromkeys([*info_a, *info_b]):
        if info_a.get(name) != info_b.get(name):
            lines.append(f"{name}: {info_a.get(name, '(not recorded)')} -> {info_b.get(name, '(not recorded)')}")
    return lines


def _environment(run: Mapping[str, Any], records: Sequence[Record]) -> dict[str, str]:
    info = {name: str(run.get("system_info", {}).get(name, run.get(name, ""))) for name in ENVIRONMENT}
    info = {name: value for name, value in info.items() if value}
    images = sorted(
        {
            f"{e['container_image']} ({e.get('image_digest', '')})"
            for r in records
            if (e := r.environment).get("container_image")
        }
    )
    if images:
        info["container images"] = ", ".join(images)
    for name, digest in sorted(run.get("system_files", {}).items()):
        info[f"system file {name}"] = digest
    return info
