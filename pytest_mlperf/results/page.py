"""The acceptance report: one self-contained HTML file (styles and plots inline, no script) that opens with the
verdict, then the system information, the pass/fail matrix, the suite statistics, the run's plots and each test's
details. Written at the end of a run, and again from saved results by `pytest-mlperf report`."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import acceptance
from .acceptance import Acceptance
from .plots import data_uri
from .record import LISTS, Record
from .suite import Statistic

NAME = "acceptance.html"
PLOTS = "plots"  #: the run folder's PNGs: the run's figures, and each test's (`<id>.blocks.png`...)
TEST_PLOTS = ("blocks", "telemetry")

#: the verdict's and the matrix's look, also inside pytest-html's report (so scoped to their classes)
VERDICT_STYLE = """
header.verdict { padding: .8em 1.5em; color: #fff; border-radius: 4px; }
header.verdict h1 { margin: 0; font-size: 2.2em; letter-spacing: .05em; }
header.accepted { background: #1e7e34; } header.rejected { background: #b02a37; }
header.verdict ul { margin: .5em 0 0; } header.verdict p { margin: .3em 0 0; }
table.matrix { border-collapse: collapse; margin: .5em 0; }
table.matrix th, table.matrix td { border: 1px solid #ccc; padding: .25em .6em; }
table.matrix td.passed { background: #c9ecd1; } table.matrix td.failed, table.matrix td.error { background: #f4c4c8; }
table.matrix td.inconclusive, table.matrix td.no-target { background: #fde9b5; }
table.matrix td.skipped { background: #e4e4e4; }
"""
STYLE = (
    VERDICT_STYLE
    + """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em 3em; color: #222; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; } th, td { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f3f3f3; text-align: left; }
td.pass-true { color: #1e7e34; font-weight: bold; } td.pass-false { color: #b02a37; font-weight: bold; }
img { max-width: 100%; border: 1px solid #ddd; margin: .3em 0; }
details { margin: .3em 0; } summary { cursor: pointer; } .note { color: #555; }
"""
)


def render(
    records: Sequence[Record],
    run: Mapping[str, Any],
    verdict: Acceptance,
    statistics: Sequence[Statistic],
    figures: Mapping[str, str],
    folder: Path | None,
) -> str:
    """The page; `figures` are the run's plots (title -> data URI); each test's PNGs are read from `folder`'s plots/."""
    title = f"pytest-mlperf acceptance report: {', '.join(run.get('systems', [])) or 'no system'}"
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        verdict_html(verdict),
        _system(run),
        matrix_html(records),
        _statistics(statistics),
        _figures(figures),
        _details(records, folder),
        "</body></html>",
    ]
    return "\n".join(parts)


def _e(value: object) -> str:
    return html.escape(str(value))


def verdict_html(verdict: Acceptance) -> str:
    items = "".join(
        f"<li><b>{_e(test)}</b> {_e(why)}</li>" if test else f"<li>{_e(why)}</li>" for test, why in verdict.reasons
    )
    notes = "".join(f"<p>{_e(note)}</p>" for note in verdict.notes)
    return (
        f"<header id='verdict' class='verdict {verdict.verdict.lower()}'><h1>{verdict.verdict}</h1>"
        + (f"<ul>{items}</ul>" if items else "<p>Every test ran and passed clearly.</p>")
        + notes
        + "</header>"
    )


def _table(rows: Sequence[tuple[object, object]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


def _system(run: Mapping[str, Any]) -> str:
    from ..resources.sysinfo import LABELS

    info = run.get("system_info", {})
    rows = [(LABELS.get(key, key), value) for key, value in info.items()]
    rows += [
        ("Run", run.get("run_id", "")),
        ("Started", run.get("started", "")),
        ("Finished", run.get("finished", "")),
        ("Command", " ".join(["pytest", *run.get("args", [])])),
        ("Runs per test", run.get("runs", 1)),
    ]
    if run.get("compare"):
        rows.append(("Compared with", f"{run['compare']} (tolerance {run.get('tolerance', 0):.0%})"))
    return f"<section id='system'><h2>System</h2>{_table(rows)}</section>"


def matrix_html(records: Sequence[Record]) -> str:
    tables = []
    for system, (rows, columns, cells) in acceptance.matrix(records).items():
        head = "".join(f"<th>{_e(c)}</th>" for c in columns)
        body = ""
        for row in rows:
            tds = ""
            for column in columns:
                state, text = cells.get((row, column), ("missing", ""))
                label = f"{state}<br>{_e(text)}" if text else state
                tds += f"<td class='{_e(state.replace(' ', '-'))}' title='{_e(state)}'>{label}</td>"
            body += f"<tr><th>{_e(row)}</th>{tds}</tr>"
        tables.append(f"<h3>{_e(system)}</h3><table class='matrix'><tr><th>benchmark</th>{head}</tr>{body}</table>")
    return "<section id='matrix'><h2>Pass/fail matrix</h2>" + "".join(tables) + "</section>"


def _statistics(statistics: Sequence[Statistic]) -> str:
    rows = "".join(
        f"<tr><th>{_e(s.name)}</th><td>{_e(s.value)}</td>"
        f"<td class='pass-{str(s.passed).lower()}'>{'' if s.passed is None else 'pass' if s.passed else 'FAIL'}</td>"
        f"<td class='note'>{_e(s.note)}</td></tr>"
        for s in statistics
    )
    return f"<section id='statistics'><h2>Suite statistics</h2><table>{rows}</table></section>"


def _figures(figures: Mapping[str, str]) -> str:
    images = "".join(f"<h3>{_e(t)}</h3><img class='plot' alt='{_e(t)}' src='{uri}'>" for t, uri in figures.items())
    return f"<section id='plots'><h2>Plots</h2>{images or '<p>(nothing measured to plot)</p>'}</section>"


def _details(records: Sequence[Record], folder: Path | None) -> str:
    items = []
    for r in records:
        rows = [(k, f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.to_dict().items() if k not in LISTS]
        images = ""
        for kind in TEST_PLOTS:
            png = folder / PLOTS / f"{r.id}.{kind}.png" if folder else None
            if png is not None and png.is_file():
                images += f"<img alt='{_e(r.id)} {kind}' src='{data_uri(png.read_bytes())}'>"
        summary = f"{_e(r.id)}: {_e(acceptance.state(r))}"
        table = _table([(k, v) for k, v in rows if v not in ("", None)])
        items.append(f"<details id='test-{_e(r.id)}'><summary>{summary}</summary>{images}{table}</details>")
    return "<section id='details'><h2>Tests</h2>" + "".join(items) + "</section>"
