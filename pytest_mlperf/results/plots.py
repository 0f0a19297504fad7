"""The report's figures, as PNG bytes to embed in self-contained HTML: a run's results against their baselines, a
test's per-block throughput and its telemetry, and the scaling of multi-device runs.

Drawn with matplotlib's object API on the Agg canvas, never pyplot: no global state, so threads may draw at once and
no figure outlives its call. matplotlib is imported inside the functions, when a figure is drawn: importing it takes
about a second, which a run that draws nothing must not pay.
"""

from __future__ import annotations

import base64
import io
from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from .verdict import ABOVE, BELOW, INCONCLUSIVE, MET, NO_BASELINE

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .record import Record

DPI = 100
WIDTH_IN, HEIGHT_IN = 6.4, 3.6  #: 640 x 360 px
#: versus_baseline draws the worst this many tests and counts the rest: a row takes 0.19 in and its label costs a
#: few ms to draw (matplotlib draws text glyph by glyph), and 40 rows (900 px) is as many as a reader scans
MAX_BARS = 40
ROW_IN = 0.19
MAX_LABEL = 44  #: characters of a test id on the axis; longer ones are cut
MAX_CURVES = 10  #: scaling curves in one figure: one colour of matplotlib's cycle each
GREEN, RED, AMBER, GREY, BLACK = "#2ca02c", "#d62728", "#f0a30a", "#9e9e9e", "#000000"
STATUS_COLOURS = {MET: GREEN, BELOW: RED, ABOVE: RED, INCONCLUSIVE: AMBER}
ORDER = {RED: 0, AMBER: 1}  #: versus_baseline shows the failures first, then the inconclusive, then the lowest ratios
NOT_JUDGED = "not judged"  #: a baseline but no verdict (e.g. an invalid LoadGen run)
FONT = 7  #: points, for ticks, legends and notes: the figures are small
GPU_PANELS = (
    ("utilization", "GPU util (%)"),
    ("power_w", "power (W)"),
    ("temperature_c", "temp. (°C)"),
    ("sm_clock_mhz", "SM clock (MHz)"),
)
CPU_PANELS = (("cpu_util", "CPU util (%)"), ("rss_gb", "RSS (GB)"))


def data_uri(png: bytes) -> str:
    """The PNG as a data: URI, so that the HTML report is one file."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def versus_baseline(records: Sequence[Record]) -> bytes | None:
    """Each measured test's result over its baseline, worst first: a bar coloured by its verdict, its confidence
    interval, the 1.0 line and its target (1 - tolerance). A latency (lower is better) is inverted, baseline /
    measured, so that a longer bar is better for every test. Failures come first, then inconclusive verdicts, then
    the lowest ratios; beyond MAX_BARS rows the rest are counted in a note, and tests without a baseline are listed
    by name while there is room. None when no measured test has a baseline."""
    measured = [r for r in records if r.mean is not None]
    judged = sorted((r for r in measured if r.baseline), key=lambda r: (ORDER.get(_colour(r), len(ORDER)), _ratio(r)))
    if not judged:
        return None
    unjudged = [r for r in measured if not r.baseline]
    shown = judged[:MAX_BARS]
    listed = unjudged[: MAX_BARS - len(shown)]
    rows = len(shown) + len(listed)
    from matplotlib.collections import PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    height = max(HEIGHT_IN, 1.4 + ROW_IN * rows)
    fig = _figure(7.2, height)
    labels, ending = _shortened([r.id for r in shown + listed])
    left = min(0.5, (0.15 + 0.058 * max(map(len, labels))) / 7.2)
    fig.subplots_adjust(left=left, right=0.97, top=1 - 0.4 / height, bottom=1.0 / height)
    ax = fig.add_subplot()
    ratios = [_ratio(r) for r in shown]
    colours = [_colour(r) for r in shown]
    # one collection, not barh's artist per bar, which costs 3 ms each
    ax.add_collection(
        PolyCollection(
            [[(0, y - 0.35), (x, y - 0.35), (x, y + 0.35), (0, y + 0.35)] for y, x in enumerate(ratios)],
            facecolors=colours,
            linewidths=0,
        )
    )
    ys, xs, below, above = [], [], [], []
    for y, (r, ratio) in enumerate(zip(shown, ratios, strict=True)):
        interval = _interval(r)
        if interval:
            ys.append(y)
            xs.append(ratio)
            below.append(max(0.0, ratio - interval[0]))  # a trimmed mean may lie outside its runs' interval
            above.append(max(0.0, interval[1] - ratio))
    if ys:
        ax.errorbar(xs, ys, xerr=[below, above], fmt="none", ecolor=BLACK, elinewidth=0.8, capsize=2)
    targets = [(y, _target(r)) for y, r in enumerate(shown)]
    ax.scatter(
        [t for _, t in targets if t is not None],
        [y for y, t in targets if t is not None],
        marker="|",
        s=90,
        color=BLACK,
        zorder=3,
    )
    highest = max([1.0, *ratios, *(x + a for x, a in zip(xs, above, strict=True))])
    right = min(2.5, highest * 1.12)  # a ratio far off (a wrong baseline) must not squash the others
    rows_at = ax.get_yaxis_transform()  # x in axes fractions, y in rows
    for y, label in enumerate(labels):  # texts, not tick labels: a tick costs as much again as its text
        ax.text(-0.01, y, label, ha="right", va="center", fontsize=FONT, transform=rows_at)
    for y in range(len(shown), rows):
        ax.text(0.01, y, NO_BASELINE, va="center", fontsize=FONT, color=GREY, transform=rows_at)
    ax.axvline(1.0, color=BLACK, linestyle="--", linewidth=0.8)
    ax.set_xlim(0, right)
    ax.set_ylim(rows - 0.5, -0.5)  # the worst on top
    ax.set_yticks([])
    ax.tick_params(labelsize=FONT)
    inverted = any(r.lower_is_better for r in shown)
    ax.set_xlabel("measured / baseline" + (" (latencies: baseline / measured)" if inverted else ""), fontsize=8)
    counts = Counter(_status(r) for r in measured)
    _title(ax, f"Results vs baseline: {_tally(counts)}")
    names = {GREEN: MET, RED: "short of target", AMBER: INCONCLUSIVE, GREY: "no baseline or verdict"}
    handles: list[Artist] = [Patch(color=c, label=names[c]) for c in dict.fromkeys(colours + [GREY] * bool(listed))]
    handles += [
        Line2D([], [], color=BLACK, linestyle="--", linewidth=0.8, label="baseline"),
        Line2D([], [], color=BLACK, marker="|", linestyle="none", markersize=9, label="target (tolerance)"),
    ]
    fig.legend(
        handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.22 / height), ncol=len(handles), fontsize=FONT
    )
    omitted = Counter(_status(r) for r in judged[MAX_BARS:] + unjudged[len(listed) :])
    notes = []
    if omitted:
        notes.append(f"and {omitted.total()} more not shown: {_tally(omitted)}")
    if ending:
        notes.append(f"ids shown without their common ending {ending}")
    if notes:
        fig.text(0.01, 0.06 / height, "; ".join(notes), fontsize=FONT)
    return _png(fig)


def blocks(record: Record) -> bytes | None:
    """The throughput of each measured block over the measured time, with the figure judged and its 95% confidence
    interval: a rise over the first blocks is warm-up that the warm-up steps did not cover, a fall is a device
    slowing down (heat, power cap). Several runs' blocks follow each other, a dotted line where a run starts (the
    time between runs is left out). None without blocks."""
    if not record.rates or len(record.rates) != len(record.block_ns):
        return None
    edges = [0.0, *accumulate(ns / 1e9 for ns in record.block_ns)]
    fig = _figure(WIDTH_IN, HEIGHT_IN)
    fig.subplots_adjust(left=0.13, right=0.97, top=0.9, bottom=0.14)
    ax = fig.add_subplot()
    ax.stairs(record.rates, edges, baseline=None, color="C0", linewidth=1.5, label="each block")
    runs = record.runs if record.runs > 1 and len(record.rates) % record.runs == 0 else 1
    for k in range(1, runs):
        first = k * len(record.rates) // runs
        ax.axvline(edges[first], color=GREY, linestyle=":", linewidth=1, label="next run" if k == 1 else None)
    if record.mean is not None:
        what = f"trimmed mean of {record.runs} runs" if record.runs > 1 else "mean"
        ax.axhline(record.mean, color="C1", linewidth=1, label=f"{what} {record.mean:.4g}")
    if record.ci_low is not None and record.ci_high is not None:
        ax.axhspan(record.ci_low, record.ci_high, color="C1", alpha=0.2, linewidth=0, label="95% CI")
    spread = f", sd {record.sd_pct:.1f}%" if record.sd_pct is not None else ""
    in_runs = f" in {record.runs} runs" if record.runs > 1 else ""
    _title(ax, f"{_cut(record.id)}: throughput of {len(record.rates)} blocks{in_runs}{spread}")
    ax.set_xlabel("measured time since the first block started (s)", fontsize=8)
    ax.set_ylabel(f"throughput ({record.unit})", fontsize=8)
    ax.set_xlim(0, edges[-1])
    ax.tick_params(labelsize=FONT)
    ax.legend(fontsize=FONT, loc="best")
    return _png(fig)


def telemetry(record: Record) -> bytes | None:
    """The telemetry of a test's measured phase, one panel a metric over a shared time axis: each GPU's utilisation,
    power, temperature and SM clock (samples where it was slowed down marked on the clock), or without GPUs the
    CPU slice's utilisation and the process's memory. None without samples."""
    samples: list[dict[str, Any]] = record.telemetry.get("samples") or []
    if not samples:
        return None
    per_gpu: dict[int, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    for sample in samples:
        for gpu in sample["gpus"]:
            per_gpu[gpu["index"]].append((sample["t_s"], gpu))
    panels = GPU_PANELS if per_gpu else CPU_PANELS
    from matplotlib.ticker import MaxNLocator

    height = 0.75 + 1.1 * len(panels)
    fig = _figure(WIDTH_IN, height)
    fig.subplots_adjust(left=0.13, right=0.97, top=1 - 0.4 / height, bottom=0.45 / height, hspace=0.15)
    axes: list[Axes] = list(fig.subplots(len(panels), 1, sharex=True))
    for ax, (field, label) in zip(axes, panels, strict=True):
        if per_gpu:
            for index, readings in per_gpu.items():
                ax.plot([t for t, _ in readings], [g[field] for _, g in readings], linewidth=1, label=f"GPU {index}")
        else:
            ax.plot([s["t_s"] for s in samples], [s[field] for s in samples], linewidth=1, color="C0")
        ax.set_ylabel(label, fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=3))  # enough for a small panel; each tick costs a few ms
    if per_gpu:
        slowed = [(t, g["sm_clock_mhz"]) for readings in per_gpu.values() for t, g in readings if g["throttles"]]
        if slowed:
            marks = axes[-1].plot(*zip(*slowed, strict=True), "x", color=RED, markersize=4, label="slowed down")
            axes[-1].legend(handles=marks, fontsize=FONT, loc="lower left")
        axes[0].legend(fontsize=FONT, loc="lower left", ncol=min(len(per_gpu), 8))
    axes[-1].set_xlabel("time since sampling started (s)", fontsize=8)
    _title(axes[0], f"{_cut(record.id)}: telemetry of the measured phase")
    return _png(fig)


def scaling(records: Sequence[Record]) -> bytes | None:
    """Training throughput against the number of devices, one curve per workload as scaling.py groups them
    (benchmark, precision, preset, per-device batch, device model), each with the ideal: linear from its fewest
    devices. Log-log, so that curves of different units and sizes share the axes and the ideal is a straight line;
    each point is labelled with its efficiency against that ideal. Where several results share a device count (swept
    launch knobs) the best is drawn. None when no workload ran on more than one device count."""
    best: dict[Curve, dict[int, float]] = defaultdict(dict)
    units: dict[Curve, str] = {}
    for r in records:
        if r.task == "training" and r.mean is not None:
            points = best[_curve(r)]
            points[r.devices] = max(r.mean, points.get(r.devices, 0.0))
            units[_curve(r)] = r.unit
    curves = {key: dict(sorted(points.items())) for key, points in best.items() if len(points) > 1}
    if not curves:
        return None
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig = _figure(WIDTH_IN, HEIGHT_IN)
    fig.subplots_adjust(left=0.12, right=0.97, top=0.9, bottom=0.14)
    ax = fig.add_subplot()
    # name each curve by its benchmark and precision, and by whichever other key fields tell the curves apart
    varying = [i for i in (2, 3, 4) if len({key[i] for key in curves}) > 1]
    for colour, (key, points) in enumerate(list(curves.items())[:MAX_CURVES]):
        extra = "".join(f", {'per-device batch ' if i == 3 else ''}{key[i]}" for i in varying)
        devices, throughput = list(points), list(points.values())
        fewest = devices[0]
        ideal = [throughput[0] * n / fewest for n in devices]
        ax.plot(devices, throughput, "o-", color=f"C{colour}", label=f"{key[0]} {key[1]}{extra} ({units[key]})")
        ax.plot(devices, ideal, "--", color=f"C{colour}", linewidth=1)
        for n, value, perfect in zip(devices[1:], throughput[1:], ideal[1:], strict=True):
            ax.annotate(f"{value / perfect:.0%}", (n, value), xytext=(4, -10), textcoords="offset points", fontsize=6)
    counts = sorted({n for points in curves.values() for n in points})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # mathtext's 10^n is slow to draw
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.set_xticks([], minor=True)
    ax.tick_params(labelsize=FONT)
    ax.set_xlabel("devices", fontsize=8)
    ax.set_ylabel("throughput (each curve's unit, log)", fontsize=8)
    title = "Scaling with the number of devices"
    if len(curves) > MAX_CURVES:
        title += f" (first {MAX_CURVES} of {len(curves)} workloads)"
    _title(ax, title)
    handles = ax.get_legend_handles_labels()[0]
    ideal_line = Line2D([], [], color=GREY, linestyle="--", linewidth=1, label="ideal: linear from the fewest devices")
    ax.legend(handles=[*handles, ideal_line], fontsize=FONT, loc="upper left")
    return _png(fig)


def _figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI)


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def _title(ax: Axes, text: str) -> None:
    """A title at a fixed height: left to place itself, it measures the axes' tick labels first, a tenth or more of a
    small figure's time."""
    ax.set_title(text, fontsize=9, y=1.0, pad=5)


def _shortened(ids: list[str]) -> tuple[list[str], str]:
    """The ids without the dash-separated parts they all end with (a run on one system repeats its name in every
    id), and that ending: shorter labels are more legible, and quicker to draw."""
    parts = [i.split("-") for i in ids]
    shared = 0
    while all(len(p) > shared + 1 for p in parts) and len({p[-shared - 1] for p in parts}) == 1:
        shared += 1
    labels = [_cut("-".join(p[: len(p) - shared])) for p in parts]
    return labels, "-" + "-".join(parts[0][-shared:]) if shared else ""


def _ratio(r: Record) -> float:
    """Measured over baseline, or for a latency baseline over measured: above 1 is better either way."""
    assert r.mean is not None and r.baseline
    return r.baseline / r.mean if r.lower_is_better else r.mean / r.baseline


def _interval(r: Record) -> tuple[float, float] | None:
    """The confidence interval as ratios (low, high), like `_ratio`."""
    if r.ci_low is None or r.ci_high is None or r.ci_low <= 0 or not r.baseline:
        return None
    if r.lower_is_better:
        return r.baseline / r.ci_high, r.baseline / r.ci_low
    return r.ci_low / r.baseline, r.ci_high / r.baseline


def _target(r: Record) -> float | None:
    """The lowest ratio that meets the baseline, like `_ratio`."""
    if r.tolerance is None:
        return None
    return 1 / (1 + r.tolerance) if r.lower_is_better else 1 - r.tolerance


def _colour(r: Record) -> str:
    return STATUS_COLOURS.get(r.baseline_status, GREY)


def _status(r: Record) -> str:
    if not r.baseline:
        return NO_BASELINE
    return r.baseline_status or NOT_JUDGED


def _tally(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.most_common())


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


Curve = tuple[str, str, str, int, str]  #: a scaling curve: benchmark, precision, preset, per-device batch, device model


def _curve(r: Record) -> Curve:
    return (r.benchmark, r.precision, r.preset, r.global_batch // r.devices, r.accelerator)
