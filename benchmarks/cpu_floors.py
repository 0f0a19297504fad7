"""The CPU systems' peak-fraction floors, from runs of `pytest suites --system=cpu` (or 2xcpu) on the CI VM under
different conditions (full speed, pinned to one core, beside a CPU hog): each case's floor is the lowest fraction of
the peak it reached in any of them, divided by MARGIN, so a healthy host of any speed passes with room for that
host's noise and a build several times slower than it should be fails. Writes fixtures/floors/<system>.json, the
runs' fractions and the floors that systems/<system>.yaml states (tests/test_floors.py checks they agree).

    .venv/bin/python benchmarks/cpu_floors.py [--system cpu] full=reports/A one-core=reports/B hog=reports/C

With --add, the runs already recorded in fixtures/floors/<system>.json are kept and the named ones added (a run on
another VM of the kind: VMs differ in more than speed, e.g. AMX makes the bf16 peak several times higher).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FOLDER = REPO / "fixtures" / "floors"
MARGIN = 2.5  #: a healthy run's fraction stays above 1/MARGIN of the lowest seen; a 5x slower build falls below it
DIGITS = 2  #: significant digits of a floor


def fractions(run: Path) -> dict[str, float]:
    """Each performance case's peak fraction in one run (inference accuracy passes have no rate: skipped)."""
    records = json.loads((run / "results.json").read_text(encoding="utf-8"))["records"]
    return {r["id"]: r["peak_fraction"] for r in records if r.get("peak_fraction") and r["mode"] != "accuracy"}


def recorded(path: Path) -> dict[str, dict[str, float]]:
    """The runs' fractions in a fixture this script wrote, by run then case (the floors left out)."""
    runs: dict[str, dict[str, float]] = {}
    for case, row in json.loads(path.read_text(encoding="utf-8"))["cases"].items():
        for name, value in row.items():
            if name != "floor":
                runs.setdefault(name, {})[case] = value
    return runs


def rounded_down(value: float) -> float:
    """`value` to DIGITS significant digits, never above it."""
    scale = 10 ** (DIGITS - 1 - math.floor(math.log10(value)))
    return math.floor(value * scale) / scale


def floors(runs: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per case: its fraction in each run and the floor, the lowest / MARGIN (cases missing from a run are kept
    from the others: a floor rests on every run that measured the case)."""
    cases = sorted(set().union(*runs.values()))
    table: dict[str, dict[str, float]] = {}
    for case in cases:
        seen = {name: run[case] for name, run in runs.items() if case in run}
        table[case] = seen | {"floor": rounded_down(min(seen.values()) / MARGIN)}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", default="cpu", help="the system the runs ran (default cpu)")
    parser.add_argument("--add", action="store_true", help="keep the runs already recorded, add these")
    parser.add_argument("runs", nargs="+", help="NAME=RUN_FOLDER, a folder holding results.json")
    args = parser.parse_args()
    out = FOLDER / f"{args.system}.json"
    runs = recorded(out) if args.add else {}
    runs |= {name: fractions(Path(folder)) for name, folder in (run.split("=", 1) for run in args.runs)}
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "about": f"Peak fractions of `pytest suites --system={args.system}` on the 2-core CI VM, one run per "
        f"condition, and each case's floor: the lowest / {MARGIN:g} (benchmarks/cpu_floors.py)",
        "margin": MARGIN,
        "cases": floors(runs),
    }
    out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    for case, row in document["cases"].items():
        print(f"{case:45s} " + "  ".join(f"{k}={v:.3g}" for k, v in row.items()))


if __name__ == "__main__":
    main()
