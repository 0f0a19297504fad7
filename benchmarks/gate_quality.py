"""How good is the regression gate? Its false-alarm rate on identical code and the share of real slow-downs it
catches, measured the way a CI gate uses it: separate pytest sessions, then `pytest-mlperf compare A B`.

Each round runs three sessions of the same selection: A and B of identical code, and C with every training step
slowed by `--slowdown` (benchmarks/slowdown.py, a test plugin, so C's throughput drops by exactly that share on any
host). Their order rotates (A B C, B C A, C A B), interleaving the builds on the host as a gate on a new container or
driver can interleave its runs, so drift of the machine's speed falls on each in turn; with `--pairs K` a round runs
K such triples one after another. Then `compare A B` and `compare A C` (with K pairs: `compare A1 B1 ... AK BK`,
judged on the pairs' ratios): each case of the selection is one trial, "slower" in A-B a false alarm and in A-C a
catch ("inconclusive" and "ok" there are misses). Each rate comes with its Clopper-Pearson 95% interval: a few dozen
trials cannot tell 5% from 15%, and the verdict says so.

    .venv/bin/python benchmarks/gate_quality.py [--rounds 10] [--pairs 1] [--runs 1] [--tolerance 0.05]
        [--slowdown 0.1] [-m "training and resnet50 and fp32"] [--system cpu] [--out DIR]

PASS: false alarms at most `--max-false-alarms` (0.05) and catches at least `--min-catches` (0.9), each rate's
whole interval on the right side; FAIL when either's whole interval is on the wrong side; else INCONCLUSIVE.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Rate:
    hits: int
    trials: int

    @property
    def interval(self) -> tuple[float, float]:
        """Clopper-Pearson 95% interval of the rate."""
        k, n = self.hits, self.trials
        low = stats.beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
        high = stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
        return float(low), float(high)

    def __str__(self) -> str:
        low, high = self.interval
        share = self.hits / self.trials if self.trials else float("nan")
        return f"{self.hits} of {self.trials} ({share:.0%}, 95% CI {low:.0%} to {high:.0%})"


def session(out: Path, args: argparse.Namespace, slow: bool) -> int:
    """One pytest session of the selection into `out`, slowed or not; its exit status."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    env |= {"MLPERF_SLOWDOWN": str(args.slowdown if slow else 0), "MLPERF_SLOWDOWN_WORKLOADS": args.workloads}
    argv = [
        sys.executable, "-m", "pytest", str(REPO / "suites"), f"--rootdir={REPO}", "-p", "no:cacheprovider",
        "-p", "slowdown", "-q", "-o", "mlperf_plots=false", "-m", args.m, f"--system={args.system}",
        f"--runs={args.runs}", f"--mlperf-reports={out}",
    ]  # fmt: skip
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if not (out / "latest" / "results.json").is_file():
        raise SystemExit(f"session {out} wrote no results (exit {result.returncode}):\n{result.stdout[-3000:]}")
    return result.returncode


def compared(runs: list[Path], tolerance: float) -> list[str]:
    """Each case's verdict in `pytest-mlperf compare A1 B1 A2 B2 ...`."""
    argv = [sys.executable, "-m", "pytest_mlperf.results.cli", "compare", *map(str, runs), f"--tolerance={tolerance}"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode == 2:
        raise SystemExit(f"compare {' '.join(map(str, runs))}: {result.stderr}")
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")][1:]  # after the header
    for row in rows:
        print(f"    {row}", flush=True)
    return [row.strip(" |").rsplit("|", 1)[1].strip() for row in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=1, help="interleaved session triples per round (default 1)")
    parser.add_argument("--runs", type=int, default=1, help="--runs of each session (default 1)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="compare's --tolerance (default 0.05)")
    parser.add_argument("--slowdown", type=float, default=0.10, help="C's throughput loss (default 0.10)")
    parser.add_argument("-m", default="training and resnet50 and fp32", help="the selection (pytest -m)")
    parser.add_argument("--workloads", default="resnet50", help="the workloads slowed (comma-separated)")
    parser.add_argument("--system", default="cpu")
    parser.add_argument("--max-false-alarms", type=float, default=0.05)
    parser.add_argument("--min-catches", type=float, default=0.90)
    parser.add_argument("--out", type=Path, help="where the sessions' reports go (default: a temporary folder)")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="gate-quality-"))
    print(f"{args.rounds} rounds of {args.m!r} on {args.system}, {args.pairs} interleaved session triple(s) a round, "
          f"--runs {args.runs}, --tolerance {args.tolerance}, slow-down {args.slowdown:.0%}; reports in {root}",
          flush=True)  # fmt: skip
    same: list[str] = []
    slow: list[str] = []
    triples = 0
    for n in range(args.rounds):
        folders = {name: [root / f"round{n:02d}" / f"{name}{k}" for k in range(1, args.pairs + 1)] for name in "ABC"}
        for k in range(args.pairs):
            order = "ABC"[triples % 3 :] + "ABC"[: triples % 3]
            triples += 1
            for name in order:
                session(folders[name][k], args, slow=name == "C")
        print(f"round {n + 1}: A vs B (identical code), then A vs C (slowed)", flush=True)
        for other, verdicts in (("B", same), ("C", slow)):
            runs = [folder / "latest" for pair in zip(folders["A"], folders[other], strict=True) for folder in pair]
            verdicts += compared(runs, args.tolerance)
    false_alarms, caught = Rate(same.count("slower"), len(same)), Rate(slow.count("slower"), len(slow))
    print(f"\nfalse alarms on identical code: {false_alarms}; {same.count('inconclusive')} inconclusive")
    print(f"{args.slowdown:.0%} slow-downs caught: {caught}; {slow.count('inconclusive')} inconclusive, the rest ok")
    fa_low, fa_high = false_alarms.interval
    c_low, c_high = caught.interval
    if fa_high <= args.max_false_alarms and c_low >= args.min_catches:
        verdict = "PASS"
    elif fa_low > args.max_false_alarms or c_high < args.min_catches:
        verdict = "FAIL"
    else:
        verdict = "INCONCLUSIVE (more rounds narrow the intervals)"
    print(f"{verdict}: needs false alarms <= {args.max_false_alarms:.0%} and catches >= {args.min_catches:.0%}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
