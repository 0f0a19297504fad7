"""`pytest-mlperf`: what can be said from saved results without running anything again.

pytest-mlperf compare A B [A2 B2 ...] [--tolerance F]
                                              B against A per case; exit 1 on a regression, 3 when inconclusive
pytest-mlperf report RUN... [--out DIR] [--reference SYSTEM]
                                              tables, plots and the acceptance report, again
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import compare, report
from .record import Record
from .store import load_run
from .suite import SD_LIMIT


class CliError(Exception):
    """Bad input: printed as one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.command(args))
    except CliError as exc:
        print(f"pytest-mlperf {args.name}: {exc}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="pytest-mlperf", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(required=True, metavar="COMMAND")
    cmp = commands.add_parser("compare", help="compare run B with run A, case by case")
    cmp.add_argument(
        "runs",
        type=Path,
        nargs="+",
        metavar="A B",
        help="the earlier run and the later, each its folder or results.json; more pairs (A1 B1 A2 B2 ...) for the "
        "two builds' runs interleaved on the host, judged on the pairs' ratios",
    )
    cmp.add_argument("--tolerance", type=float, default=0.05, help="allowed slowdown (default 0.05)")
    cmp.add_argument(
        "--inconclusive",
        choices=("reject", "warn"),
        default="reject",
        help="an inconclusive comparison with no regression exits 3 (reject, default) or 0 (warn)",
    )
    cmp.set_defaults(command=run_compare, name="compare")
    rep = commands.add_parser("report", help="write the tables, plots and acceptance report of saved runs again")
    rep.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders or results.json files")
    rep.add_argument("--out", type=Path, help="where to write (default: the run's own folder, for one run)")
    rep.add_argument("--reference", metavar="SYSTEM", help="also tabulate every system's speed-up over this one")
    rep.add_argument("--sd-limit", type=float, default=SD_LIMIT, help=f"sd%% 80th percentile limit ({SD_LIMIT:g})")
    rep.set_defaults(command=run_report, name="report")
    return top


def load(path: Path) -> tuple[dict[str, Any], list[Record]]:
    try:
        return load_run(path)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file (expected a run folder or its results.json)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CliError(f"{path}: not a pytest-mlperf results.json ({exc!r})") from None


EXIT_REGRESSED, EXIT_INCONCLUSIVE = 1, 3  #: compare's exit statuses (2: bad input)


def run_compare(args: argparse.Namespace) -> int:
    """Exit 1 when a case regressed (clearly slower, failed, skipped or missing in B), else 3 when a comparison was
    inconclusive (unless --inconclusive=warn), else 0."""
    if not 0 <= args.tolerance < 1:
        raise CliError(f"--tolerance must be a fraction in [0, 1), e.g. 0.05; got {args.tolerance}")
    if len(args.runs) % 2:
        raise CliError(f"runs come in pairs, the earlier then the later (A B or A1 B1 A2 B2 ...); got {len(args.runs)}")
    loaded = [load(path) for path in args.runs]
    pairs = list(zip(loaded[::2], loaded[1::2], strict=True))
    rows = compare.compare_pairs([(a, b) for (_, a), (_, b) in pairs], args.tolerance)
    for n, path in enumerate(args.runs):
        name = f"{'AB'[n % 2]}{n // 2 + 1 if len(pairs) > 1 else ''}"
        print(f"{name}: {path} (run {loaded[n][0].get('run_id', '?')})")
    (run_a, a), (run_b, b) = pairs[0]
    changes = compare.environment_changes(run_a, a, run_b, b)
    print("what changed between A and B:" + "".join(f"\n  {line}" for line in changes) if changes else "no change")
    hosts = {str(run.get("host")) for run, _ in loaded}
    if len(hosts) > 1:
        print(f"warning: the runs ran on {', '.join(sorted(hosts))}: different hosts differ in speed")
    print()
    print(
        f"\ntolerance {args.tolerance:.0%}: a verdict is clear only when the whole 95% interval of B/A is on one side"
    )
    print(compare.frame(rows).to_markdown(index=False, disable_numparse=True))
    regressed = [f"{r.test} ({r.status})" for r in rows if r.regressed]
    print(f"\n{compare.summary(rows)}")
    if regressed:
        print(f"regressions: {', '.join(regressed)}")
        return EXIT_REGRESSED
    inconclusive = any(r.status == compare.INCONCLUSIVE for r in rows)
    return EXIT_INCONCLUSIVE if inconclusive and args.inconclusive == "reject" else 0


def run_report(args: argparse.Namespace) -> int:
    loaded = [(path, *load(path)) for path in args.runs]
    if args.out is None and len(loaded) > 1:
        raise CliError("several runs are combined into one report: say where with --out DIR")
    out = args.out or (args.runs[0] if args.runs[0].is_dir() else args.runs[0].parent)
    records = combined([(run, records) for _, run, records in loaded])
    run = loaded[0][1] if len(loaded) == 1 else merged_run([run for _, run, _ in loaded])
    try:
        verdict = report.write(records, run, out, args.reference, args.sd_limit, results_csv=args.out is not None)
    except ValueError as exc:  # an unknown --reference
        raise CliError(str(exc)) from None
    print(f"{len(records)} results from {len(loaded)} run(s): {out}; acceptance {verdict.verdict}")
    return 0


def combined(runs: list[tuple[dict[str, Any], list[Record]]]) -> list[Record]:
    """The records of several runs; a system that ran in more than one of them is told apart by its run id, so each
    run is a row of the pivot (as the seed tables give a configuration a row)."""
    seen: dict[str, set[str]] = {}
    for run, records in runs:
        for r in records:
            seen.setdefault(r.system, set()).add(run.get("run_id", ""))
    return [
        dataclasses.replace(r, system=f"{r.system} @ {run.get('run_id', '?')}") if len(seen[r.system]) > 1 else r
        for run, records in runs
        for r in records
    ]


def merged_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run information of a combined report: which runs, on which systems; the worst exit status."""
    return {
        "run_id": ", ".join(str(r.get("run_id", "?")) for r in runs),
        "systems": list(dict.fromkeys(s for r in runs for s in r.get("systems", []))),
        "exitstatus": max((r.get("exitstatus", 0) for r in runs), default=0),
        "runs": max((r.get("runs", 1) for r in runs), default=1),
        "system_info": {f"{r.get('run_id', '?')} host": r.get("host", "") for r in runs},
    }


if __name__ == "__main__":
    sys.exit(main())
