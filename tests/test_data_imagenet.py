"""ImageNet: preparing the class folders from the real archives' layout (a tar of per-class tars, a flat validation
tar and valprep.sh), verification, the ImageFolder loader and the torchvision-equivalent transforms."""

from __future__ import annotations

import io
import math
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from pytest_mlperf.data import DatasetError, DatasetSpec, EvalTransform, ImageFolder, TrainTransform, ensure, imagenet
from pytest_mlperf.data.transforms import MEAN, STD, crop_box, to_tensor

WNIDS = ("n01440764", "n01443537", "n01484850")
COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))  # one per class, to check labels after loading
PER_CLASS, VAL_PER_CLASS = 4, 2


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG", quality=95)
    return out.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_downloads(folder: Path, unlabelled: bool = False) -> None:
    """ILSVRC2012_img_train.tar (per-class tars), ILSVRC2012_img_val.tar (flat) and valprep.sh, in miniature."""
    folder.mkdir(parents=True)
    with tarfile.open(folder / imagenet.TRAIN_TAR, "w") as outer:
        for wnid, colour in zip(WNIDS, COLOURS, strict=True):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for i in range(PER_CLASS):
                    add(tar, f"{wnid}_{i}.JPEG", jpeg(colour))
            add(outer, f"{wnid}.tar", inner.getvalue())
    moves = []
    with tarfile.open(folder / imagenet.VAL_TAR, "w") as tar:
        for i in range(len(WNIDS) * VAL_PER_CLASS + unlabelled):
            name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
            add(tar, name, jpeg(COLOURS[i % len(WNIDS)]))
            if i < len(WNIDS) * VAL_PER_CLASS:
                moves.append(f"mv {name} {WNIDS[i % len(WNIDS)]}/")
    mkdirs = [f"mkdir -p {wnid}" for wnid in WNIDS]
    (folder / imagenet.VALPREP).write_text("\n".join(mkdirs + moves) + "\n")


def tiny_spec(train_images: int = len(WNIDS) * PER_CLASS) -> DatasetSpec:
    return imagenet.spec(classes=len(WNIDS), train_images=train_images, val_per_class=VAL_PER_CLASS)


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    write_downloads(tmp_path / "imagenet")
    result = ensure(tiny_spec(), tmp_path)
    assert result.summary == {"classes": 3, "train_images": 12, "val_images": 6}
    return result.root


def test_prepare_makes_class_folders(prepared: Path) -> None:
    for split, count in (("train", PER_CLASS), ("val", VAL_PER_CLASS)):
        folders = sorted(p.name for p in (prepared / split).iterdir())
        assert folders == list(WNIDS)
        assert all(len(list((prepared / split / w).glob("*.JPEG"))) == count for w in WNIDS)
    assert (prepared / "train" / WNIDS[1] / f"{WNIDS[1]}_3.JPEG").is_file()
    assert (prepared / "val" / WNIDS[0] / "ILSVRC2012_val_00000001.JPEG").is_file()


def test_published_counts() -> None:
    assert imagenet.IMAGENET.verify.keywords == {"classes": 1000, "train_images": 1_281_167, "val_per_class": 50}


def test_wrong_count_is_named(tmp_path: Path) -> None:
    write_downloads(tmp_path / "imagenet")
    with pytest.raises(DatasetError, match=r"images in .*imagenet/train: found 12, expected 13"):
        ensure(tiny_spec(train_images=13), tmp_path)


def test_unlabelled_validation_image_is_named(tmp_path: Path) -> None:
    write_downloads(tmp_path / "imagenet", unlabelled=True)
    with pytest.raises(DatasetError, match=r"ILSVRC2012_val_00000007\.JPEG has no label in valprep\.sh"):
        ensure(tiny_spec(), tmp_path)


def test_flat_validation_folder_is_explained(prepared: Path) -> None:
    for image in list((prepared / "val").rglob("*.JPEG")):
        image.rename(prepared / "val" / image.name)
    for folder in (prepared / "val").iterdir():
        if folder.is_dir():
            folder.rmdir()
    with pytest.raises(DatasetError, match=r"flat images: sort them into class folders with valprep\.sh"):
        imagenet.verify(prepared, classes=3, train_images=12, val_per_class=2)


def test_image_folder_labels_and_training_transform(prepared: Path) -> None:
    torch.manual_seed(0)
    data = ImageFolder(prepared / "train", TrainTransform(32))
    assert data.classes == list(WNIDS) and len(data) == 12
    for index in range(len(data)):
        image, label = data[index]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        pixel = image.mean((1, 2)) * torch.tensor(STD) + torch.tensor(MEAN)  # back to [0, 1]
        assert torch.allclose(pixel * 255, torch.tensor(COLOURS[label], dtype=torch.float32), atol=4)


def test_evaluation_transform_on_validation_folders(prepared: Path) -> None:
    data = ImageFolder(prepared / "val", EvalTransform(32))
    image, label = data[len(data) - 1]
    assert image.shape == (3, 32, 32) and label == 2


def test_crop_box_follows_torchvision() -> None:
    torch.manual_seed(0)
    for _ in range(200):
        left, top, right, bottom = crop_box(500, 375)
        w, h = right - left, bottom - top
        assert 0 <= left < right <= 500 and 0 <= top < bottom <= 375
        assert 0.08 * 500 * 375 * 0.95 <= w * h <= 500 * 375
        assert 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02


def test_crop_box_falls_back_to_the_central_crop() -> None:
    """No crop of 90% of a 1000x10 strip has a ratio within [3/4, 4/3]: the largest central crop at 4/3."""
    left, top, right, bottom = crop_box(1000, 10, scale=(0.9, 1.0))
    assert (bottom - top, right - left) == (10, round(10 * 4 / 3)) and left == (1000 - (right - left)) // 2


def test_eval_transform_resizes_the_shorter_side_then_centre_crops() -> None:
    image = Image.new("RGB", (300, 200))
    image.paste((255, 255, 255), (140, 0, 160, 200))  # a white vertical band in the middle
    out = EvalTransform(64)(image)  # shorter side to round(64 / 0.875) = 73, then the central 64 x 64
    assert out.shape == (3, 64, 64)
    white = (out[0] * STD[0] + MEAN[0]).mean(0) > 0.5
    band = torch.nonzero(white).squeeze(1)
    assert abs(float(band.float().mean()) - 31.5) <= 1 and 3 <= len(band) <= 7  # 20 px of 300 -> ~5 of 109


def test_to_tensor_normalises_with_imagenet_statistics() -> None:
    x = to_tensor(Image.new("RGB", (4, 3), (255, 0, 128)))
    assert x.shape == (3, 3, 4)
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 128), MEAN, STD, strict=True)]
    assert torch.allclose(x[:, 0, 0], torch.tensor(expected), atol=1e-6)
    assert math.isclose(float(to_tensor(Image.new("RGB", (2, 2), (255, 255, 255)), normalize=False).min()), 1.0)
