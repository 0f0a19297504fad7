"""`pytest-mlperf compare` and `pytest-mlperf report` on saved runs: what they print, write and exit with."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import record

from pytest_mlperf.results.cli import main
from pytest_mlperf.results.store import RunStore


def saved(root: Path, run_id: str, *records: Any, **run: Any) -> Path:
    """A run folder as a session leaves it (results.json, the tables, acceptance.html)."""
    store = RunStore(root, run_id)
    for r in records:
        store.append(r)
    store.finish({"run_id": run_id, "systems": sorted({r.system for r in records}), "exitstatus": 0, **run}, 5.0)
    return store.dir


def test_compare_prints_each_case_and_fails_on_a_regression(tmp_path: Path, capsys) -> None:
    a = saved(
        tmp_path,
        "a",
        record("resnet50", mean=1000.0),
        record("bert", mean=500.0, ci_low=490.0, ci_high=510.0),
        record("ssd", mean=100.0, ci_low=60.0, ci_high=140.0),
        record("gnmt", mean=50.0),
        record("ncf", mean=10.0),
        record("dcgan", mean=10.0),
        record("vae", mean=10.0),
    )
    b = saved(
        tmp_path,
        "b",
        record("resnet50", mean=1010.0, test="renamed.py::test[x]"),  # matched by the case, not the node id
        record("bert", mean=400.0, ci_low=395.0, ci_high=405.0),  # clearly 20% slower
        record("ssd", mean=94.0, ci_low=70.0, ci_high=118.0),  # intervals too wide to tell
        record("gnmt", mean=None, outcome="failed"),
        record("dcgan", mean=12.0, outcome="failed"),  # faster, then failed (e.g. on quality): a regression
        record("vae", mean=None, outcome="skipped"),
        record("dlrm", mean=7.0),
    )
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    lines = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "| 1.010 " in lines["resnet50-amp-a100"] and lines["resnet50-amp-a100"].rstrip("| ").endswith("ok")
    assert "| 0.800 " in lines["bert-amp-a100"] and "slower" in lines["bert-amp-a100"]
    assert "inconclusive" in lines["ssd-amp-a100"]
    assert "failed in B" in lines["gnmt-amp-a100"] and "failed in B" in lines["dcgan-amp-a100"]
    assert "skipped in B" in lines["vae-amp-a100"]
    assert "only in A" in lines["ncf-amp-a100"] and "only in B" in lines["dlrm-amp-a100"]
    assert "1 ok, 1 slower, 1 inconclusive, 2 failed in B, 1 skipped in B, 1 only in A, 1 only in B" in out
    assert (
        "regressions: bert-amp-a100 (slower), gnmt-amp-a100 (failed in B), dcgan-amp-a100 (failed in B), "
        "vae-amp-a100 (skipped in B), ncf-amp-a100 (only in A)"
    ) in out
    assert main(["compare", str(a), str(a)]) == 3  # against itself: nothing regressed, ssd too noisy to say


def test_compare_exits_3_when_inconclusive_unless_told_to_warn(tmp_path: Path, capsys) -> None:
    a = saved(tmp_path, "a", record("ssd", mean=100.0, ci_low=60.0, ci_high=140.0))
    b = saved(tmp_path, "b", record("ssd", mean=94.0, ci_low=70.0, ci_high=118.0))
    assert main(["compare", str(a), str(b)]) == 3
    assert main(["compare", str(a), str(b), "--inconclusive", "warn"]) == 0


def test_the_ratio_interval_weighs_both_runs_errors_once(tmp_path: Path, capsys) -> None:
    """Two runs whose intervals overlap can still differ clearly: 10% slower, each figure +-2%."""
    a = saved(tmp_path, "a", record("bert", mean=100.0, ci_low=98.0, ci_high=102.0))
    b = saved(tmp_path, "b", record("bert", mean=90.0, ci_low=88.2, ci_high=91.8))
    assert main(["compare", str(a), str(b), "--tolerance", "0.05"]) == 1
    assert "slower" in capsys.readouterr().out


def test_compare_says_what_changed_and_warns_when_the_hosts_differ(tmp_path: Path, capsys) -> None:
    image = {"container_image": "nvidia/pytorch:22.10-py3", "image_digest": "sha256:aaa"}
    a = saved(
        tmp_path, "a", record(mean=1000.0, environment=image), host="box1",
        system_info={"driver": "535.54", "cuda": "12.2", "torch": "2.1.0"}, system_files={"a100": "sha256:111"},
    )  # fmt: skip
    b = saved(
        tmp_path, "b", record(mean=1000.0, environment={**image, "image_digest": "sha256:bbb"}), host="box2",
        system_info={"driver": "550.90", "cuda": "12.2", "torch": "2.1.0"}, system_files={"a100": "sha256:222"},
    )  # fmt: skip
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "host: box1 -> box2" in out and "driver: 535.54 -> 550.90" in out and "cuda:" not in out
    assert "container images: nvidia/pytorch:22.10-py3 (sha256:aaa) -> nvidia/pytorch:22.10-py3 (sha256:bbb)" in out
    assert "system file a100: sha256:111 -> sha256:222" in out
    assert "warning: the runs ran on box1, box2: different hosts differ in speed" in out


def test_interleaved_pairs_are_judged_on_their_ratios(tmp_path: Path, capsys) -> None:
    """The host's speed drifts from pair to pair by far more than 10% and each run's interval is +-15%, so no pair
    alone can tell; the three pairs' ratios agree on 0.9, which is 10% slower, clearly beyond a 5% tolerance."""
    runs = []
    for n, speed in enumerate([100.0, 130.0, 80.0], 1):
        for name, mean in ((f"a{n}", speed), (f"b{n}", 0.9 * speed * (1 + 0.004 * n))):
            runs.append(saved(tmp_path, name, record("bert", mean=mean, ci_low=0.85 * mean, ci_high=1.15 * mean)))
    assert main(["compare", str(runs[0]), str(runs[1])]) == 3  # one pair: inconclusive
    capsys.readouterr()
    assert main(["compare", *map(str, runs), "--tolerance", "0.05"]) == 1
    out = capsys.readouterr().out
    assert "A1: " in out and "B3: " in out and "| slower" in out and "| 0.907 |" in out


def test_a_case_missing_from_any_pair_is_a_regression(tmp_path: Path, capsys) -> None:
    both = [record("bert", mean=100.0), record("ssd", mean=100.0)]
    a1, b1, a2 = (saved(tmp_path, name, *both) for name in ("a1", "b1", "a2"))
    b2 = saved(tmp_path, "b2", record("bert", mean=100.0))
    assert main(["compare", str(a1), str(b1), str(a2), str(b2)]) == 1
    assert "regressions: ssd-amp-a100 (only in A)" in capsys.readouterr().out
    assert main(["compare", str(a1), str(b1), str(a2)]) == 2
    assert "runs come in pairs, the earlier then the later (A B or A1 B1 A2 B2 ...); got 3" in capsys.readouterr().err


def test_compare_reads_a_results_json_and_refuses_bad_input(tmp_path: Path, capsys) -> None:
    a = saved(tmp_path, "a", record(mean=1000.0))
    assert main(["compare", str(a / "results.json"), str(a)]) == 0
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert "missing: no such file (expected a run folder or its results.json)" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert main(["compare", str(a), str(tmp_path / "bad.json")]) == 2
    assert "bad.json: not a pytest-mlperf results.json" in capsys.readouterr().err
    assert main(["compare", str(a), str(a), "--tolerance", "1.5"]) == 2


def test_report_writes_a_run_again_from_its_results(tmp_path: Path, capsys) -> None:
    run = saved(
        tmp_path, "a", record(mean=1000.0, outcome="passed", baseline=900.0, tolerance=0.1, baseline_status="met")
    )
    for name in ("acceptance.html", "results.md", "pivot.csv"):
        (run / name).unlink()
    assert main(["report", str(run)]) == 0
    assert "1 results from 1 run(s)" in capsys.readouterr().out
    assert "ACCEPTED" in (run / "acceptance.html").read_text() and (run / "pivot.csv").is_file()
    assert (run / "results.md").read_text().startswith("# Acceptance: ACCEPTED")


def test_report_combines_runs_into_a_pivot_with_speedups(tmp_path: Path, capsys) -> None:
    one = saved(tmp_path, "one", record(mean=100.0, system="v100"), record(mean=300.0, system="a100"))
    two = saved(tmp_path, "two", record(mean=150.0, system="v100"))  # v100 again: told apart by run id
    out = tmp_path / "combined"
    assert main(["report", str(one), str(two), "--out", str(out), "--reference", "v100 @ one"]) == 0
    with open(out / "speedup.csv", newline="") as f:
        rows = {row["system"]: row["resnet50-amp (img/s)"] for row in csv.DictReader(f)}
    assert rows == {"v100 @ one": "1.0", "a100": "3.0", "v100 @ two": "1.5"}
    assert "# Speed-up against v100 @ one" in (out / "results.md").read_text()
    assert (out / "results.csv").is_file() and (out / "acceptance.html").is_file()
    assert main(["report", str(one), str(two)]) == 2
    assert "say where with --out DIR" in capsys.readouterr().err
    assert main(["report", str(one), "--out", str(out), "--reference", "h100"]) == 2
    assert "no results for the reference system 'h100' (systems with results: v100, a100)" in capsys.readouterr().err


def test_the_console_script_is_installed() -> None:
    script = shutil.which("pytest-mlperf", path=str(Path(sys.executable).parent))
    assert script is not None, "pip install -e . installs the pytest-mlperf command"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "compare" in result.stdout and "report" in result.stdout
