"""The real training suite with --runner=container: a workload's cpu preset trains inside a real container (the host
image, on podman's Docker-compatible API through the docker SDK), and the result comes back as a local one would,
with the image's identity, the container's log and the telemetry of its measured phase."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
import yaml
from helpers import REPO

from pytest_mlperf.containers import HOST_IMAGE, PodmanService, connect
from pytest_mlperf.containers.images import LOCAL
from pytest_mlperf.containers.runner import LABEL


def ours(client: docker.DockerClient) -> list[str]:
    return [c.name for c in client.containers.list(all=True, filters={"label": f"{LABEL}=1"})]


def suite(pytester: pytest.Pytester, reports: Path, *args: str) -> pytest.RunResult:
    """The real suites in a subprocess, reporting under `reports` (plots off: these tests do not look at them; the
    between-process term pinned: test_intervals runs the probe)."""
    return pytester.runpytest_subprocess(
        str(REPO / "suites"), f"--rootdir={REPO}", "-p", "no:cacheprovider",
        "-o", "mlperf_plots=false", "-o", "mlperf_between_sd=5", f"--mlperf-reports={reports}", *args,
    )  # fmt: skip


def run_suite(pytester: pytest.Pytester, reports: Path, *args: str) -> pytest.RunResult:
    return suite(pytester, reports, "-m", "training and regression and fp32", "--runner=container", *args)


def run_image_suite(
    pytester: pytest.Pytester, tmp_path: Path, content: dict, podman: PodmanService, monkeypatch: pytest.MonkeyPatch
) -> pytest.RunResult:
    """ResNet-50's tests of a system whose image runs its own script (`content`), on the podman engine."""
    systems = tmp_path / "systems"
    systems.mkdir()
    (systems / "nvimage.yaml").write_text(yaml.safe_dump(content))
    monkeypatch.setenv("DOCKER_HOST", podman.base_url)
    return suite(pytester, tmp_path, f"--systems-dir={systems}", "--system=nvimage", "-m", "training and resnet50")


def test_a_workload_trains_inside_a_container(
    podman: PodmanService, pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", podman.base_url)
    client = connect(podman.base_url)
    before = ours(client)
    result = run_suite(pytester, tmp_path, "--system=cpu")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    (record,) = json.loads((tmp_path / "latest" / "results.json").read_text())["records"]
    assert record["id"] == "regression-fp32-cpu" and record["runner"] == "container"
    env = record["environment"]
    assert env["container_image"] == HOST_IMAGE and env["image_id"].startswith("sha256:")
    assert env["image_digest"] == LOCAL and env["torch"] and env["cuda"].startswith("none")
    assert record["mean"] > 0 and record["quality_status"] == "reached" and len(record["rates"]) == record["repeat"]
    assert record["telemetry"]["samples"] and record["cpu_util_mean"] is not None
    folder = tmp_path / "latest" / "containers" / "regression-fp32-cpu"
    assert "pytest-mlperf job: regression fp32 rank 0 done: ok" in (folder / "container.log").read_text()
    assert json.loads((folder / "job.json").read_text())["system_file"] == "/mlperf/systems/cpu.yaml"
    assert "containers/regression-fp32-cpu/container.log" in (tmp_path / "latest" / "report.html").read_text()
    assert ours(client) == before  # nothing left behind


def test_a_container_that_cannot_run_fails_the_test_clearly(
    podman: PodmanService, pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A system whose image the engine does not have: the test fails naming the image, its record is written."""
    systems = tmp_path / "systems"
    systems.mkdir()
    spec = yaml.safe_load((REPO / "systems" / "cpu.yaml").read_text())
    spec |= {"name": "boxed", "container": {"image": "localhost/no-such-image:1", "ulimits": {}}}
    (systems / "boxed.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("DOCKER_HOST", podman.base_url)
    result = run_suite(pytester, tmp_path / "reports", f"--systems-dir={systems}", "--system=boxed")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*regression-fp32-boxed: container * (image localhost/no-such-image:1) cannot start*"])
    (record,) = json.loads((tmp_path / "reports" / "latest" / "results.json").read_text())["records"]
    assert record["outcome"] == "failed" and "no-such-image" in record["message"]


def test_no_engine_is_a_clear_failure(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    result = run_suite(pytester, tmp_path, "--system=cpu")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*regression-fp32-cpu: the container runner: *{tmp_path}/nothing.sock*"])


LOGS = REPO / "fixtures" / "container_logs"  #: excerpts built from NVIDIA's published formats, not recorded runs


def image_system(log: str, baselines: dict[str, float]) -> dict:
    """A system whose resnet50 is run by "the image's own script": here `cat` of a constructed DLLogger log in the
    host image, standing in for NVIDIA's ResNet-50 script (which no machine here can run)."""
    entry = {"batch_size": 256}
    return {
        "name": "nvimage",
        "description": "resnet50 by the image's own script",
        "accelerator": {"kind": "cpu", "model": "x86-64 CPU", "count": 1, "memory_gb": 8.0},
        "container": {"image": "host", "ulimits": {}},
        "benchmarks": {
            "resnet50": {
                "preset": "cpu",
                "image_run": {
                    "command": ["cat", f"/logs/{log}"],
                    "log_format": "nvidia-resnet50",
                    "mounts": {str(LOGS): "/logs"},
                },
                "precisions": {
                    p: {**entry, "baseline": {"throughput": v, "unit": "img/s", "tolerance": 0.1, "source": "test"}}
                    for p, v in baselines.items()
                },
            }
        },
    }


def test_an_images_own_script_is_judged_by_the_figure_its_log_reports(
    podman: PodmanService, pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = image_system("nvidia-resnet50.log", {"fp32": 300, "amp": 400})
    result = run_image_suite(pytester, tmp_path, content, podman, monkeypatch)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["resnet50-amp-nvimage on *: measured 306.9 img/s is below the target 360 img/s*"])
    records = {r["id"]: r for r in json.loads((tmp_path / "latest" / "results.json").read_text())["records"]}
    fp32 = records["resnet50-fp32-nvimage"]
    assert fp32["mean"] == 306.86 and fp32["count"] == 1 and fp32["baseline_status"] == "met"
    assert fp32["runner"] == "container" and fp32["environment"]["image_id"].startswith("sha256:")
    assert fp32["quality_status"] == "" and fp32["rates"] == []  # the script's one figure, nothing of ours


def test_an_images_script_that_prints_no_figure_fails_naming_what_was_expected(
    podman: PodmanService, pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashed = image_system("nvidia-resnet50-crashed.log", {"fp32": 300})
    result = run_image_suite(pytester, tmp_path, crashed, podman, monkeypatch)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*resnet50-fp32-nvimage: *nvidia-resnet50*Summary*"])
