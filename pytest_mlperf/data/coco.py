"""COCO 2017 detection: train2017/ and val2017/ JPEGs with annotations/instances_{train,val}2017.json, read as the
MLPerf references read them (Mask R-CNN's maskrcnn_benchmark COCODataset): crowd annotations skipped, training images
left without annotations dropped, the 80 category ids (1..90 with gaps) mapped to contiguous labels 1..80 (0 is the
background), boxes as (x1, y1, x2, y2) clipped to the image, boxes of zero area dropped, polygon masks rasterised.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from .archives import expect, extract_zip, files, nonempty
from .images import decode
from .spec import DatasetError, DatasetSpec, Download, Summary
from .transforms import to_tensor

SPLITS = ("train2017", "val2017")
ZIPS = ("train2017.zip", "val2017.zip", "annotations_trainval2017.zip")
Target = dict[str, Tensor]


def annotations(split: str) -> str:
    return f"annotations/instances_{split}.json"


def spec(train_images: int = 118_287, val_images: int = 5_000) -> DatasetSpec:
    """COCO 2017's spec; the defaults are its published image counts."""
    where = "from the COCO site's download page (2017 Train/Val images, 2017 Train/Val annotations)"
    return DatasetSpec(
        name="coco2017",
        folder="coco",
        downloads=tuple(Download(name, where) for name in ZIPS),
        layout=(*SPLITS, *(annotations(s) for s in SPLITS)),
        described="train2017/*.jpg, val2017/*.jpg and annotations/instances_{train,val}2017.json",
        prepare=prepare,
        verify=partial(verify, counts={"train2017": train_images, "val2017": val_images}),
    )


def prepare(downloads: Path, out: Path) -> None:
    for name in ZIPS:  # each zip holds its own top folder: train2017/, val2017/, annotations/
        extract_zip(downloads / name, out)


def verify(root: Path, counts: dict[str, int]) -> Summary:
    summary: dict[str, int | str] = {}
    for split, count in counts.items():
        summary[f"{split} images"] = expect(f"images in {root / split}", nonempty(files(root / split, [".jpg"])), count)
        nonempty([root / annotations(split)])
        summary[f"{annotations(split)} bytes"] = (root / annotations(split)).stat().st_size
    return summary


def rasterise(polygons: Sequence[Sequence[float]], height: int, width: int, scale: tuple[float, float]) -> Tensor:
    """COCO polygons [x1, y1, x2, y2, ...] (pixels of the original image, scaled by (sx, sy)) -> (H, W) uint8 mask."""
    canvas = Image.new("L", (width, height))
    draw = ImageDraw.Draw(canvas)
    sx, sy = scale
    for poly in polygons:
        points = [(x * sx, y * sy) for x, y in zip(poly[0::2], poly[1::2], strict=True)]
        if len(points) >= 3:
            draw.polygon(points, fill=1, outline=1)
    return torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).view(height, width)


class CocoDetection(Dataset[tuple[Tensor, Target]]):
    """(image, target) per image of a split: the image (3, H, W) float32 in [0, 1] (not normalised: SSD and Mask
    R-CNN normalise differently), resized to `size` = (H, W) when given; the target a dict of `boxes` (N, 4) float32
    (x1, y1, x2, y2) in pixels of the returned image, `labels` (N,) int64 in 1..80, `image_id` () int64, and with
    `masks=True` `masks` (N, H, W) uint8."""

    def __init__(
        self,
        root: str | Path,
        split: str = "val2017",
        size: tuple[int, int] | None = None,
        masks: bool = False,
        drop_empty: bool | None = None,
    ) -> None:
        root = Path(root)
        data = json.loads((root / annotations(split)).read_text())
        self.folder = root / split
        self.size, self.masks = size, masks
        self.category_ids = sorted(c["id"] for c in data["categories"])
        self.label = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        self.objects: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for ann in data["annotations"]:
            if not ann.get("iscrowd", 0):
                self.objects[ann["image_id"]].append(ann)
        drop = split.startswith("train") if drop_empty is None else drop_empty  # as the reference, in training
        images = sorted(data["images"], key=lambda im: im["id"])
        self.images = [im for im in images if self.objects[im["id"]] or not drop]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        info = self.images[index]
        image = decode(self.folder / info["file_name"])
        width, height = image.size
        if self.size is not None:
            image = image.resize(self.size[::-1], Image.Resampling.BILINEAR)
        sx, sy = image.width / width, image.height / height
        objects = self.objects[info["id"]]
        boxes = torch.tensor([o["bbox"] for o in objects], dtype=torch.float32).view(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # (x, y, w, h) -> (x1, y1, x2, y2)
        boxes *= torch.tensor([sx, sy, sx, sy])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image.width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image.height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        target = {
            "boxes": boxes[keep],
            "labels": torch.tensor([self.label[o["category_id"]] for o in objects], dtype=torch.int64)[keep],
            "image_id": torch.tensor(info["id"]),
        }
        if self.masks:
            kept = [o for o, k in zip(objects, keep.tolist(), strict=True) if k]
            target["masks"] = (
                torch.stack([rasterise(self._polygons(o), image.height, image.width, (sx, sy)) for o in kept])
                if kept
                else torch.zeros(0, image.height, image.width, dtype=torch.uint8)
            )
        return to_tensor(image, normalize=False), target

    def _polygons(self, obj: dict[str, Any]) -> list[list[float]]:
        if not isinstance(obj["segmentation"], list):  # run-length masks are crowd regions, which are skipped
            raise DatasetError(f"{self.folder}: annotation {obj['id']} is not crowd but has no polygons")
        return obj["segmentation"]


def collate(batch: Sequence[tuple[Tensor, Target]]) -> tuple[Tensor, list[Target]]:
    """Images zero-padded at the bottom and right to the batch's largest height and width (the references'
    batching of variable-size images), stacked to (B, 3, H, W); the targets as a list."""
    height = max(image.shape[1] for image, _ in batch)
    width = max(image.shape[2] for image, _ in batch)
    images = [F.pad(image, (0, width - image.shape[2], 0, height - image.shape[1])) for image, _ in batch]
    return torch.stack(images), [target for _, target in batch]


COCO2017 = spec()
