"""Everything said about a set of Records, from the Records alone: tables, plots, suite statistics and the acceptance
report. The end of a run writes it into the run folder; `pytest-mlperf report` writes it again from saved results."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import acceptance, page, plots, tables
from .acceptance import Acceptance
from .record import COLUMNS, Record
from .suite import SD_LIMIT, Statistic, statistics_of

RUN_PLOTS = {"versus_baseline": "Measured vs baseline", "scaling": "Scaling with devices"}


def write(
    records: Sequence[Record],
    run: Mapping[str, Any],
    folder: Path,
    reference: str | None = None,
    sd_limit: float = SD_LIMIT,
    results_csv: bool = True,
    plots: bool = True,
) -> Acceptance:
    """Write results.md, pivot.csv (and speedup.csv against `reference`), the run's plots and acceptance.html into
    `folder`; results.csv too unless the run journaled it already. Returns the verdict."""
    folder.mkdir(parents=True, exist_ok=True)
    verdict = acceptance.decide(records, run)
    statistics = statistics_of(records, sd_limit)
    if results_csv:
        with open(folder / "results.csv", "w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(r.to_dict() for r in records)
    tables.pivot(records).to_csv(folder / "pivot.csv")
    speedup = tables.speedup(records, reference) if reference else None
    if speedup is not None:
        speedup.to_csv(folder / "speedup.csv")
    (folder / "results.md").write_text(markdown(records, verdict, statistics, speedup, reference), encoding="utf-8")
    figures = run_plots(records, folder / page.PLOTS) if plots else {}
    (folder / page.NAME).write_text(page.render(records, run, verdict, statistics, figures, folder), encoding="utf-8")
    return verdict


def run_plots(records: Sequence[Record], folder: Path) -> dict[str, str]:
    """The run's figures, saved as PNG in `folder` and returned as data URIs by title."""
    figures = {}
    for name, title in RUN_PLOTS.items():
        png = getattr(plots, name)(records)
        if png is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.png").write_bytes(png)
            figures[title] = plots.data_uri(png)
    return figures


def test_plots(record: Record, folder: Path) -> dict[str, bytes]:
    """One test's figures (its blocks' throughput, its telemetry), saved as `<id>.<kind>.png` in `folder` as the test
    ends, where the acceptance report and `pytest-mlperf report` find them."""
    drawn = {}
    for kind in page.TEST_PLOTS:
        png = getattr(plots, kind)(record)
        if png is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{record.id}.{kind}.png").write_bytes(png)
            drawn[kind] = png
    return drawn


def markdown(
    records: Sequence[Record],
    verdict: Acceptance,
    statistics: Sequence[Statistic],
    speedup: Any = None,
    reference: str | None = None,
) -> str:
    reasons = "".join(f"- {test}: {why}\n" if test else f"- {why}\n" for test, why in verdict.reasons)
    notes = "".join(f"- {note}\n" for note in verdict.notes)
    stats = "| statistic | value | pass | note |\n|---|---|---|---|\n" + "".join(
        f"| {s.name} | {s.value} | {'' if s.passed is None else s.passed} | {s.note} |\n" for s in statistics
    )
    text = f"# Acceptance: {verdict.verdict}\n\n{reasons}{notes}\n# Suite statistics\n\n{stats}\n"
    text += tables.markdown(records)
    if speedup is not None:
        text += f"\n# Speed-up against {reference}\n\n{speedup.to_markdown()}\n"
    return text
