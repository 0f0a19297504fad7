"""Tables derived from Records: the flat results table and the Lambda-style pivot (system x benchmark-precision)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .record import COLUMNS, Record

#: the columns people read; the CSV and JSON keep every column
SHOWN = [
    "id", "outcome", "global_batch", "devices", "metric", "mean", "sd_pct", "unit", "validity", "flops_per_item",
    "peak_fraction", "baseline", "baseline_ratio", "baseline_status", "earlier_ratio", "earlier_status",
    "quality_value", "quality_status", "duration",
]  # fmt: skip


def frame(records: Sequence[Record]) -> pd.DataFrame:
    return pd.DataFrame([{c: getattr(r, c) for c in COLUMNS} for r in records], columns=COLUMNS)


def pivot(records: Sequence[Record]) -> pd.DataFrame:
    """Mean items/s per system (rows) and benchmark-precision (columns), as Lambda publishes its tables; inference
    columns name the scenario too, and show its official metric.

    A test that ran and measured nothing shows "failed"; a skipped one stays empty.
    """
    cells: dict[tuple[str, str], object] = {}
    for r in records:
        if r.mode == "accuracy":  # no throughput; its figures are in the flat table
            continue
        scenario = r.scenario if r.mode == "performance" else ""
        column = "-".join(filter(None, (r.benchmark, scenario, r.precision))) + f" ({r.unit})"
        if r.mean is not None:
            cells[(r.system, column)] = round(r.mean, 1)
        else:
            cells.setdefault((r.system, column), "failed" if r.outcome in ("failed", "error") else "")
    if not cells:
        return pd.DataFrame()
    rows, columns = (list(dict.fromkeys(key[i] for key in cells)) for i in (0, 1))  # in test order
    table = pd.Series(cells, dtype=object).unstack().reindex(index=rows, columns=columns)
    table.index.name = "system"
    return table.fillna("")


def markdown(records: Sequence[Record]) -> str:
    shown = frame(records)[SHOWN].astype(object)
    formats = {
        "mean": "{:.2f}", "sd_pct": "{:.1f}", "flops_per_item": "{:.3g}", "peak_fraction": "{:.2%}",
        "baseline_ratio": "{:.3f}", "earlier_ratio": "{:.3f}", "duration": "{:.1f}",
    }  # fmt: skip
    for column, form in formats.items():
        shown[column] = shown[column].map(lambda v, f=form: "" if pd.isna(v) else f.format(v))
    table = pivot(records)
    pivot_md = table.to_markdown() if not table.empty else "(no measurements)"
    return (
        "# Results\n\n"
        + shown.fillna("").to_markdown(index=False)
        + "\n\n# Throughput by system (mean items/s)\n\n"
        + pivot_md
        + "\n"
    )
