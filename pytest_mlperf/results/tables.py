"""Tables derived from Records: the flat results table and the Lambda-style pivot (system x benchmark-precision)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd

from .record import COLUMNS, Record

#: the columns people read; the CSV and JSON keep every column
SHOWN = [
    "id", "outcome", "global_batch", "devices", "metric", "mean", "sd_pct", "unit", "validity", "flops_per_item",
    "peak_fraction", "baseline", "baseline_ratio", "baseline_status", "floor", "floor_ratio", "floor_status",
    "earlier_ratio", "earlier_status",
    "quality_value", "quality_status", "duration",
]  # fmt: skip


def frame(records: Sequence[Record]) -> pd.DataFrame:
    return pd.DataFrame([{c: getattr(r, c) for c in COLUMNS} for r in records], columns=COLUMNS)


def pivot(records: Sequence[Record], value: Callable[[Record], float | None] | None = None) -> pd.DataFrame:
    """Mean items/s per system (rows) and benchmark-precision (columns), as Lambda publishes its tables; inference
    columns name the scenario too, and show its official metric.

    A test that ran and measured nothing shows "failed"; a skipped one stays empty. `value` gives a cell's figure
    (default: the mean).
    """
    cells: dict[tuple[str, str], object] = {}
    for r in records:
        if r.mode == "accuracy":  # no throughput; its figures are in the flat table
            continue
        figure = value(r) if value else (round(r.mean, 1) if r.mean is not None else None)
        if figure is not None:
            cells[(r.system, _column(r))] = figure
        else:
            cells.setdefault((r.system, _column(r)), "failed" if r.outcome in ("failed", "error") else "")
    if not cells:
        return pd.DataFrame()
    rows, columns = (list(dict.fromkeys(key[i] for key in cells)) for i in (0, 1))  # in test order
    table = pd.Series(cells, dtype=object).unstack().reindex(index=rows, columns=columns)
    table.index.name = "system"
    return table.fillna("")


def _column(r: Record) -> str:
    scenario = r.scenario if r.mode == "performance" else ""
    return "-".join(filter(None, (r.benchmark, scenario, r.precision))) + f" ({r.unit})"


def speedup(records: Sequence[Record], reference: str) -> pd.DataFrame:
    """Each system's figure over the `reference` system's in the same pivot column, as the seed tables compare a
    machine with DGX-1 (for a latency: the reference's over it, so above 1 is faster either way)."""
    base = {_column(r): r.mean for r in records if r.system == reference and r.mean and r.mode != "accuracy"}
    if not base:
        known = ", ".join(dict.fromkeys(r.system for r in records)) or "none"
        raise ValueError(f"no results for the reference system {reference!r} (systems with results: {known})")

    def ratio(r: Record) -> float | None:
        ref = base.get(_column(r))
        if r.mean is None or not ref:
            return None
        return round(ref / r.mean if r.lower_is_better else r.mean / ref, 3)

    return pivot(records, ratio)


#: how the flat Markdown table shows a column's numbers
FORMATS = {
    "mean": "{:.2f}", "sd_pct": "{:.1f}", "flops_per_item": "{:.3g}", "peak_fraction": "{:.2%}", "baseline": "{:.4g}",
    "baseline_ratio": "{:.3f}", "floor": "{:.4g}", "floor_ratio": "{:.3f}", "earlier_ratio": "{:.3f}",
    "duration": "{:.1f}",
}  # fmt: skip


def markdown(records: Sequence[Record]) -> str:
    """The flat table of the SHOWN columns, written directly (tabulate takes most of a second for 1,000 rows), and
    the pivot."""
    rows = [" | ".join(_cell(getattr(r, c), c) for c in SHOWN) for r in records]
    flat = "\n".join([f"| {' | '.join(SHOWN)} |", "|" + "---|" * len(SHOWN), *(f"| {row} |" for row in rows)])
    table = pivot(records)
    pivot_md = table.to_markdown() if not table.empty else "(no measurements)"
    return f"# Results\n\n{flat}\n\n# Throughput by system (mean items/s)\n\n{pivot_md}\n"


def _cell(value: object, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and column in FORMATS:
        return FORMATS[column].format(value)
    return str(value).replace("|", "\\|").replace("\n", " ")
