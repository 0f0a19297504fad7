"""COCO 2017: preparing from the three zips, and the detection loader on an instances_*.json in the real format
(crowd annotations skipped, categories made contiguous, xywh -> xyxy, polygons rasterised, resizing, batching)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from pytest_mlperf.data import CocoDetection, DatasetError, coco, ensure

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 90, "name": "toothbrush"}]


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (120, 60, 30)).save(out, "JPEG")
    return out.getvalue()


def square(x: float, y: float, side: float) -> list[float]:
    return [x, y, x + side, y, x + side, y + side, x, y + side]


def instances(split: str) -> dict:
    """Image 1: a dog (a 20x10 box and a 10x10 polygon) and a crowd person; image 2: only a crowd (so no objects);
    image 3 (val only): a toothbrush whose box leaves the image."""
    images = [
        {"id": 1, "file_name": "000000000001.jpg", "width": 64, "height": 48},
        {"id": 2, "file_name": "000000000002.jpg", "width": 32, "height": 32},
    ]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 18, "bbox": [4, 6, 20, 10], "iscrowd": 0,
         "segmentation": [square(4, 6, 10)], "area": 100},
        {"id": 11, "image_id": 1, "category_id": 1, "bbox": [0, 0, 8, 8], "iscrowd": 1,
         "segmentation": {"counts": "abc", "size": [48, 64]}, "area": 64},
        {"id": 12, "image_id": 2, "category_id": 1, "bbox": [0, 0, 8, 8], "iscrowd": 1,
         "segmentation": {"counts": "abc", "size": [32, 32]}, "area": 64},
    ]  # fmt: skip
    if split == "val2017":
        images.append({"id": 3, "file_name": "000000000003.jpg", "width": 40, "height": 40})
        annotations.append({"id": 13, "image_id": 3, "category_id": 90, "bbox": [30, 30, 20, 20], "iscrowd": 0,
                            "segmentation": [square(30, 30, 10)], "area": 100})  # fmt: skip
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def write_zips(folder: Path) -> None:
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "annotations_trainval2017.zip", "w") as zf:
        for split in coco.SPLITS:
            zf.writestr(coco.annotations(split), json.dumps(instances(split)))
    for split in coco.SPLITS:
        with zipfile.ZipFile(folder / f"{split}.zip", "w") as zf:
            for image in instances(split)["images"]:
                zf.writestr(f"{split}/{image['file_name']}", jpeg(image["width"], image["height"]))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_zips(tmp_path / "coco")
    prepared = ensure(coco.spec(train_images=2, val_images=3), tmp_path)
    assert prepared.summary["val2017 images"] == 3
    return prepared.root


def test_published_counts() -> None:
    assert coco.COCO2017.verify.keywords == {"counts": {"train2017": 118_287, "val2017": 5_000}}


def test_wrong_image_count(tmp_path: Path) -> None:
    write_zips(tmp_path / "coco")
    with pytest.raises(DatasetError, match=r"images in .*coco/val2017: found 3, expected 4"):
        ensure(coco.spec(train_images=2, val_images=4), tmp_path)


def test_crowds_skipped_and_empty_images_dropped_in_training(root: Path) -> None:
    train, val = CocoDetection(root, "train2017"), CocoDetection(root, "val2017")
    assert [im["id"] for im in train.images] == [1]  # image 2 has only a crowd
    assert [im["id"] for im in val.images] == [1, 2, 3]  # evaluation keeps every image
    image, target = train[0]
    assert image.shape == (3, 48, 64) and image.dtype == torch.float32 and 0 <= float(image.min()) <= 1
    assert target["labels"].tolist() == [2]  # category 18 is the second of 1, 18, 90
    assert target["boxes"].tolist() == [[4.0, 6.0, 24.0, 16.0]]
    assert int(target["image_id"]) == 1
    assert val[1][1]["boxes"].shape == (0, 4) and val[1][1]["labels"].dtype == torch.int64


def test_boxes_clipped_to_the_image(root: Path) -> None:
    _, target = CocoDetection(root, "val2017")[2]
    assert target["boxes"].tolist() == [[30.0, 30.0, 40.0, 40.0]] and target["labels"].tolist() == [3]


def test_polygon_masks_rasterised(root: Path) -> None:
    _, target = CocoDetection(root, "train2017", masks=True)[0]
    mask = target["masks"]
    assert mask.shape == (1, 48, 64) and mask.dtype == torch.uint8
    assert mask[0, 6:17, 4:15].all() and int(mask.sum()) == 11 * 11  # the 10x10 square, edges included


def test_resize_scales_boxes_and_masks(root: Path) -> None:
    image, target = CocoDetection(root, "train2017", size=(24, 32), masks=True)[0]
    assert image.shape == (3, 24, 32)
    assert target["boxes"].tolist() == [[2.0, 3.0, 12.0, 8.0]]
    assert target["masks"].shape == (1, 24, 32) and 25 <= int(target["masks"].sum()) <= 49


def test_collate_pads_to_the_largest_image(root: Path) -> None:
    data = CocoDetection(root, "val2017")
    images, targets = coco.collate([data[0], data[1]])
    assert images.shape == (2, 3, 48, 64) and len(targets) == 2
    assert float(images[1, :, 32:, :].abs().sum()) == 0 and float(images[1, :, :, 32:].abs().sum()) == 0
