"""The `dataset` fixture and --data-dir: synthetic data by default, a real dataset (prepared and verified once)
when given, a skip saying what to download when it is missing, a failure naming what is wrong when it is broken."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import Project, system

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.workloads import get
from pytest_mlperf.workloads.image_loading import write_synthetic
from pytest_mlperf.workloads.registry import Setup

CPU = torch.device("cpu")
LOADING = get("image_loading").presets["cpu"]  # 8 classes, 16 training and 4 validation images each

#: The published ImageNet counts shrunk to the generated copy's (a pytester conftest runs in the session).
TINY_IMAGENET = """
from pytest_mlperf.data import DATASETS, imagenet

DATASETS["imagenet"] = imagenet.spec(classes=8, train_images=128, val_per_class=4)
"""

SUITE = """
import pytest


@pytest.mark.mlperf("training", "image_loading")
def test_train(bench):
    bench.check(bench.train())
"""


def imagenet_copy(data_dir: Path) -> Path:
    """A prepared ImageNet in miniature: data_dir/imagenet/{train,val}/<wnid>/*.JPEG, class-coloured."""
    write_synthetic(data_dir, data_dir / "imagenet", LOADING)
    return data_dir / "imagenet"


@pytest.fixture
def loading(project: Project) -> Project:
    project.pytester.makeconftest(project.pytester.path.joinpath("conftest.py").read_text() + TINY_IMAGENET)
    project.pytester.makepyfile(test_suite=SUITE)
    project.add_system(system(benchmark="image_loading", warmup=1, repeat=2, number=2))
    return project


def test_without_data_dir_the_data_is_synthetic(loading: Project) -> None:
    loading.run("--system=toy").assert_outcomes(passed=1)
    (record,) = loading.results()
    assert record["data"] == "synthetic" and record["quality_status"] == "reached"


def test_a_real_dataset_is_prepared_verified_and_used(loading: Project, tmp_path: Path) -> None:
    root = imagenet_copy(tmp_path)
    loading.run("--system=toy", f"--data-dir={tmp_path}").assert_outcomes(passed=1)
    (record,) = loading.results()
    assert record["data"] == "imagenet" and record["data_dir"] == str(root)
    assert record["quality_value"] == 1.0  # every validation image decoded intact, with a valid label
    assert (root / ".pytest-mlperf.json").is_file()  # verified once; later runs trust the marker


def test_a_missing_dataset_skips_saying_what_to_download(loading: Project, tmp_path: Path) -> None:
    result = loading.run("--system=toy", f"--data-dir={tmp_path}", "-rs")
    result.assert_outcomes(skipped=1)
    text = result.stdout.str()
    assert "ILSVRC2012_img_train.tar" in text and str(tmp_path / "imagenet") in text and "--data-dir" in text
    assert loading.results()[0]["outcome"] == "skipped"


def test_a_broken_dataset_fails_naming_what_is_wrong(loading: Project, tmp_path: Path) -> None:
    root = imagenet_copy(tmp_path)
    next((root / "train").glob("*/*.JPEG")).unlink()
    result = loading.run("--system=toy", f"--data-dir={tmp_path}")
    result.assert_outcomes(errors=1)
    assert "found 127, expected 128" in result.stdout.str()


def test_resnet50_trains_on_imagenet_folders_to_mlperfs_target(tmp_path: Path) -> None:
    """With a real dataset ResNet-50 reads it through DataLoader workers and is held to MLPerf's 75.9% top-1 within
    the 90-epoch budget (not run to the end here: on a CPU that is hours even for a tiny copy's many epochs)."""
    workload = get("resnet50")
    root = imagenet_copy(tmp_path)
    setup = Setup({**workload.presets["cpu"], "workers": 0}, 16, CPU, resolve("fp32", CPU), data=root)
    trainer = workload.build(setup)
    assert trainer.model.fc.out_features == 8 and trainer.epoch_steps == 128 // 16
    assert torch.isfinite(trainer.step())
    assert 0.0 <= trainer.evaluate() <= 1.0
    quality = workload.quality.on_real_data(trainer.epoch_steps)
    assert (quality.target, quality.max_steps, quality.eval_every) == (0.759, 90 * 8, 8)
