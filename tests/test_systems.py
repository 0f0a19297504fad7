"""System files: the shipped ones load; every kind of bad input is a usage error naming file, key and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO, baseline, system

from pytest_mlperf.config import systems
from pytest_mlperf.config.schema import load_system

SHIPPED = sorted((REPO / "systems").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_system_loads_and_cites_every_baseline(path: Path) -> None:
    loaded = load_system(path)
    systems.check_against_workloads(loaded)
    for bench in loaded.spec.benchmarks.values():
        for entry in bench.precisions.values():
            assert entry.baseline is None or len(entry.baseline.source) > 20


def test_seed_systems_are_shipped() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"cpu", "titanrtx", "2080ti", "v100", "8xv100", "a100", "8xa100", "h100"} <= names


def test_cpu_system_carries_measured_floors_not_baselines() -> None:
    """A figure measured on one CPU host says nothing of another's: the cpu system's targets are floors."""
    cpu = load_system(REPO / "systems" / "cpu.yaml")
    for name, bench in cpu.spec.benchmarks.items():
        for precision in bench.precisions:
            settings = cpu.settings(name, precision)
            assert settings.baseline is None and settings.floor is not None, (name, precision)
            assert "pytest suites --system=cpu" in settings.floor.source


def test_unknown_system_lists_known_ones(project) -> None:
    project.add_system(system("toy"))
    project.add_system(system("other"))
    result = project.run("--system=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown system 'nope'; known systems: other, toy*"])


def test_shipped_suite_unknown_system_names_known(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(str(REPO / "suites"), "--system=nope", f"--rootdir={REPO}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown system 'nope'; known systems: 2080ti, *, cpu, *, titanrtx, v100*"])


BAD_FILES = {
    "yaml syntax": (
        "name: toy\n  bad: [",
        "toy.yaml: not valid YAML at line 2, column 6: mapping values are not allowed*",
    ),
    "not a mapping": ("- 1\n", "toy.yaml: expected a mapping of keys*"),
    "unknown top key": (
        {**system(), "acelerator": 1},
        "toy.yaml: acelerator: unknown key; expected one of: name, description, accelerator, host, container, *",
    ),
    "unknown nested key": (
        system(precisions={"fp32": {"batch_size": 4, "batchsize": 4}}),
        "*toy.yaml: benchmarks.toy.precisions.fp32.batchsize: unknown key; expected one of: batch_size, batch_per,*",
    ),
    "wrong type": (
        system(precisions={"fp32": {"batch_size": "4"}}),
        "*benchmarks.toy.precisions.fp32.batch_size: input should be a valid integer, got '4'*",
    ),
    "batch size 0": (
        system(precisions={"fp32": {"batch_size": 0}}),
        "*benchmarks.toy.precisions.fp32.batch_size: input should be greater than 0, got 0*",
    ),
    "negative tolerance": (
        system(precisions={"fp32": {"batch_size": 4, "baseline": baseline(10, tolerance=-0.1)}}),
        "*benchmarks.toy.precisions.fp32.baseline.tolerance: input should be greater than or equal to 0, got -0.1*",
    ),
    "unknown precision": (
        system(precisions={"fp64": {"batch_size": 4}}),
        "*benchmarks.toy.precisions.fp64: input should be 'fp32', 'tf32', 'amp', 'fp16' or 'bf16', got 'fp64'*",
    ),
    "missing key": (
        {k: v for k, v in system().items() if k != "accelerator"},
        "*toy.yaml: accelerator: required key is missing*",
    ),
    "bad kind": (system(kind="gpu"), "*accelerator.kind: input should be 'cpu' or 'cuda', got 'gpu'*"),
    "unknown benchmark": (
        system(benchmark="resnt50"),
        "*toy.yaml: benchmarks.resnt50: unknown benchmark; known: *resnet50*",
    ),
    "unknown preset": (
        system(preset="huge"),
        "*benchmarks.toy.preset: 'huge' is not a preset of toy; expected one of: cpu, real, nan*",
    ),
    "unknown option": (
        system(options={"nan_after": 3}),
        "*benchmarks.toy.options.nan_after: not a key of toy's 'cpu' preset; expected one of: nan_at*",
    ),
    "unit mismatch": (
        system(precisions={"fp32": {"batch_size": 4, "baseline": baseline(10, unit="img/s")}}),
        "*benchmarks.toy.precisions.fp32.baseline.unit: 'img/s', but toy is measured in 'samples/s'*",
    ),
    "global batch indivisible": (
        system(kind="cuda", count=8, batch_per="global", precisions={"fp32": {"batch_size": 12}}),
        "*benchmarks.toy.precisions.fp32.batch_size: a global batch of 12 does not divide over 8 devices*",
    ),
    "name differs from file": (system(name="other"), "*toy.yaml: name: 'other' differs from the file name 'toy'*"),
    "image run without an image": (
        system(image_run={"command": ["run.sh"], "log_format": "nvidia-gnmt"}),
        "*toy.yaml: *benchmarks.toy.image_run: needs the system's `container: {image: ...}`*",
    ),
    "image run placeholder": (
        {**system(image_run={"command": ["--bs={batch}"], "log_format": "nvidia-gnmt"}), "container": {"image": "x"}},
        "*benchmarks.toy.image_run*command: '--bs={batch}': unknown placeholder 'batch'; known: batch_size, *",
    ),
    "shm with host ipc": (
        {**system(), "container": {"image": "x", "shm_size": "1g"}},
        "*container*shm_size: the host's IPC namespace (ipc_mode: host) has the host's /dev/shm; set one*",
    ),
}


@pytest.mark.parametrize("content, message", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_system_file_is_a_usage_error(project, content, message) -> None:
    project.add_system(content, name="toy")
    result = project.run("--system=toy")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: *{message}"])
    assert "Traceback" not in result.stderr.str()


def test_options_override_the_preset(project) -> None:
    project.add_system(system("toy", options={"nan_at": 4}))
    result = project.run("--system=toy")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*loss became nan at step 3*"])


def test_bad_file_of_an_unselected_system_does_not_matter(project) -> None:
    project.add_system(system("toy"))
    project.add_system("name: [", name="broken")
    project.run("--system=toy").assert_outcomes(passed=1)  # no usage error: the toy's test ran


def test_bad_tolerance_and_compare_are_usage_errors(project) -> None:
    project.add_system(system("toy"))
    result = project.run("--system=toy", "--tolerance=-0.5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tolerance must be a fraction in [[]0, 1), e.g. 0.05; got -0.5*"])
    result = project.run("--system=toy", "--compare=missing.json")
    result.stderr.fnmatch_lines(["*--compare=missing.json: no such file (expected an earlier run's results.json)*"])
    (project.path / "junk.json").write_text("{}")
    result = project.run("--system=toy", "--compare=junk.json")
    result.stderr.fnmatch_lines(["*--compare=junk.json: not a pytest-mlperf results.json*"])


def test_auto_detects_cpu_without_gpu(project) -> None:
    project.add_system(system("cpu"))
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines(["test_suite.py::test_train[[]toy-fp32-cpu[]]"])


def test_auto_matches_gpu_model_and_count(monkeypatch, tmp_path: Path) -> None:
    for name, count in (("one", 1), ("eight", 8)):
        (tmp_path / f"{name}.yaml").write_text(
            __import__("yaml").safe_dump(system(name, kind="cuda", count=count, model="NVIDIA TITAN RTX"))
        )
    found = systems.discover([tmp_path])
    monkeypatch.setattr(systems, "_cuda_devices", lambda: ["NVIDIA TITAN RTX"] * 8)
    assert systems.detect(found) == "eight"
    monkeypatch.setattr(systems, "_cuda_devices", lambda: ["NVIDIA TITAN RTX"])
    assert systems.detect(found) == "one"
    monkeypatch.setattr(systems, "_cuda_devices", lambda: ["NVIDIA H200"] * 2)
    with pytest.raises(systems.SystemSelectionError, match=r"2x NVIDIA H200 and no system file describes it; known"):
        systems.detect(found)


def test_torch_compile_option_compiles_and_is_recorded(project) -> None:
    project.add_system(system("toy", compile=True), name="toy")
    project.add_system(system("plain"), name="plain")
    # In subprocesses: pytester's in-process runs drop the modules a run imports, and inductor's cannot load twice.
    project.run_subprocess("--system=toy,plain").assert_outcomes(passed=2)
    assert {r["system"]: r["compiled"] for r in project.results()} == {"toy": True, "plain": False}
    project.run_subprocess("--system=plain", "--torch-compile").assert_outcomes(passed=1)
    assert [r["compiled"] for r in project.results()] == [True]
