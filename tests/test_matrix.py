"""The test matrix: ids, marks and -m selection for several systems, and skip reasons."""

from __future__ import annotations

import pytest
from helpers import REPO, system


def collect(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        str(REPO / "suites"), f"--rootdir={REPO}", "-p", "no:cacheprovider", "--collect-only", "-q", *args
    )


def test_titanrtx_resnet_lists_one_test_per_precision(pytester: pytest.Pytester) -> None:
    result = collect(pytester, "-m", "resnet", "--system=titanrtx")
    assert result.ret == pytest.ExitCode.OK
    tests = [line for line in result.outlines if "::" in line]
    assert sorted(tests) == [
        f"suites/test_training.py::test_train[resnet50-{p}-titanrtx]" for p in sorted(("fp32", "amp", "fp16"))
    ]


def test_several_systems_and_marks_select(pytester: pytest.Pytester) -> None:
    result = collect(pytester, "--system=titanrtx,a100,8xh100", "-m", "amp and resnet")
    tests = sorted(line.split("[")[1].rstrip("]") for line in result.outlines if "::" in line)
    assert tests == ["resnet50-amp-8xh100-torchrun", "resnet50-amp-a100", "resnet50-amp-titanrtx"]
    result = collect(pytester, "--system=titanrtx,a100", "-m", "training and tf32 and resnet")
    assert [line for line in result.outlines if "::" in line] == [
        "suites/test_training.py::test_train[resnet50-tf32-a100]"
    ]
    result = collect(pytester, "--system=titanrtx", "-m", "inference")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_all_shipped_systems_collect_under_strict_markers(pytester: pytest.Pytester) -> None:
    names = ",".join(sorted(p.stem for p in (REPO / "systems").glob("*.yaml")))
    result = collect(pytester, f"--system={names}", "--strict-markers")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines_random(
        ["*resnet50-tf32-8xa100-torchrun*", "*resnet50-fp32-cpu*", "*resnet50-fp16-2080ti*"]
    )


def test_every_shipped_case_has_its_own_id_and_key() -> None:
    """Ids name one row of a run's results (training, each scenario, the accuracy pass), and keys match one case
    across runs: no two cases of the shipped systems share either."""
    from pytest_mlperf.config.matrix import expand
    from pytest_mlperf.config.schema import load_system

    systems = [load_system(path) for path in sorted((REPO / "systems").glob("*.yaml"))]
    cases = [
        *expand("training", [], systems),
        *expand("inference", [], systems),
        *expand("inference", [], systems, accuracy=True),
    ]
    ids, keys = [c.id for c in cases], [c.key(False, "synthetic") for c in cases]
    assert len(set(ids)) == len(ids) and len(set(keys)) == len(keys)
    assert {"resnet50-fp32-cpu", "resnet50-accuracy-fp32-cpu", "resnet50-offline-fp32-cpu"} <= set(ids)


def test_a_record_carries_its_case_key() -> None:
    """An earlier run's record is found by the key the session builds from the case: the two must agree field for
    field (training and inference, compiled, on real data)."""
    from pytest_mlperf.config.matrix import expand
    from pytest_mlperf.config.schema import load_system
    from pytest_mlperf.results.record import build
    from pytest_mlperf.results.verdict import Judge

    cpu = load_system(REPO / "systems" / "cpu.yaml")
    for case in [*expand("training", ["resnet50"], [cpu]), *expand("inference", ["resnet50"], [cpu])]:
        record = build(case, "cpu", [], None, None, Judge(None))
        record.compiled, record.data = True, "imagenet"
        assert record.key == case.key(True, "imagenet"), case.id


def test_marks_on_each_case(project) -> None:
    project.add_system(system(precisions={"fp32": {"batch_size": 4}, "bf16": {"batch_size": 4}}))
    project.pytester.makepyfile(
        test_marks="""
        import pytest

        @pytest.mark.mlperf("training")
        def test_marks(case, request):
            names = {m.name for m in request.node.iter_markers()}
            assert {"toys", "toy", "training", case.precision} <= names
        """
    )
    result = project.run("--system=toy", "test_marks.py", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_marks[[]toy-fp32-toy[]] PASSED*", "*test_marks[[]toy-bf16-toy[]] PASSED*"])


def test_gpu_system_and_unsupported_precision_skip_with_reasons(project) -> None:
    project.add_system(system("gpu", kind="cuda", model="NVIDIA TITAN RTX"))
    project.add_system(system("cpu", precisions={p: {"batch_size": 4} for p in ("fp32", "tf32", "fp16")}))
    result = project.run("--system=gpu,cpu", "-rs")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines_random(
        [
            "SKIPPED*system gpu needs 1x NVIDIA TITAN RTX (8 GB); this host has 0: no NVIDIA library*",
            "SKIPPED*tf32 needs a CUDA GPU (tensor cores); the CPU has no tf32 training kernels",
            "SKIPPED*fp16 needs a CUDA GPU (tensor cores); the CPU has no fp16 training kernels",
        ]
    )
    rows = {r["id"]: r for r in project.results()}
    assert rows["toy-fp32-gpu"]["outcome"] == "skipped"
    assert "no NVIDIA library" in rows["toy-fp32-gpu"]["message"]
    assert rows["toy-tf32-cpu"]["mean"] is None


def test_bad_mlperf_mark_is_a_usage_error(project) -> None:
    project.add_system(system())
    project.pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.mlperf("training", "resnt50")
        def test_x(case):
            pass
        """
    )
    result = project.run("--system=toy", "test_bad.py")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["test_bad.py::test_x: @pytest.mark.mlperf: unknown benchmark 'resnt50'; known: *"])
    assert "Traceback" not in result.stdout.str() and "site-packages" not in result.stdout.str()


def test_case_fixture_without_the_mark_fails_clearly(project) -> None:
    project.add_system(system())
    project.pytester.makepyfile(test_nomark="def test_x(case):\n    pass\n")
    result = project.run("--system=toy", "test_nomark.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_nomark.py::test_x: the `case` fixture needs @pytest.mark.mlperf(task, ...)*"])


def test_cpu_suite_runs_the_whole_catalogue(pytester: pytest.Pytester) -> None:
    """`make bench` (the cpu system) trains every built-in workload, each at least in fp32."""
    from pytest_mlperf.workloads import known

    result = collect(pytester, "--system=cpu", "-m", "training and fp32")
    ids = {line.split("[")[1].removesuffix("-fp32-cpu]") for line in result.outlines if "::" in line}
    # Only the package's own: other tests register workloads of their own in this process.
    assert ids == {name for name, w in known().items() if w.build.__module__.startswith("pytest_mlperf.")}
