"""What pytest-html shows: a results table in the summary, throughput columns, and each test's figures as extras."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from . import page
from .acceptance import Acceptance
from .record import LISTS, Record
from .store import RunStore
from .tables import SHOWN, frame


def summary_table(records: Sequence[Record]) -> str:
    table = frame(records)[SHOWN]
    return "<h2>pytest-mlperf results</h2>" + table.to_html(
        index=False, na_rep="", float_format=lambda v: f"{v:.4g}", classes="mlperf-results"
    )


def verdict(verdict: Acceptance, records: Sequence[Record]) -> str:
    """The acceptance verdict and the pass/fail matrix, opening pytest-html's summary as they open acceptance.html."""
    return f"<style>{page.VERDICT_STYLE}</style>{page.verdict_html(verdict)}{page.matrix_html(records)}"


def throughput_cell(record: Record | None) -> str:
    if record is None or record.mean is None:
        return '<td class="col-throughput"></td>'
    return f'<td class="col-throughput">{record.mean:.4g} {html.escape(record.unit)}</td>'


def baseline_cell(record: Record | None) -> str:
    """The figure's verdicts against its baseline and its peak-fraction floor, each with its ratio."""
    if record is None:
        return '<td class="col-baseline"></td>'
    judged = [
        f"{target} {status}" + ("" if ratio is None else f" ({ratio:.2f}x)")
        for target, status, ratio in (
            ("baseline", record.baseline_status, record.baseline_ratio),
            ("floor", record.floor_status, record.floor_ratio),
        )
        if status
    ]
    return f'<td class="col-baseline">{html.escape("; ".join(judged))}</td>'


HEADER = [
    '<th class="sortable" data-column-type="throughput">Throughput</th>',
    '<th class="sortable" data-column-type="baseline">vs targets</th>',
]


def log_link(path: Path, store: RunStore | None) -> str:
    """A link to a log: relative to the run folder (where report.html is) when the log is inside it, so the folder
    can be moved or archived whole; else an absolute file URI."""
    if store is not None and path.resolve().is_relative_to(store.dir.resolve()):
        return path.resolve().relative_to(store.dir.resolve()).as_posix()
    return path.resolve().as_uri()


def figures(record: Record) -> str:
    """One test's figures, shown under its row."""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(f'{v:.4g}' if isinstance(v, float) else str(v))}</td></tr>"
        for k, v in record.to_dict().items()
        if k not in LISTS and v not in ("", None)
    )
    rates = ", ".join(f"{rate:.4g}" for rate in record.rates)
    return f"<table>{rows}<tr><th>per-block {html.escape(record.unit)}</th><td>{rates}</td></tr></table>"
