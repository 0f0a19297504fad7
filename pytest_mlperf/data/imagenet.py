"""ImageNet (ILSVRC 2012) in the class-folder layout of the seeds' scripts: train/<wnid>/*.JPEG and val/<wnid>/*.JPEG.

`prepare` does what Lambda's instructions do in the shell: the training tar holds one tar per class (n01440764.tar,
...), each extracted into its class folder; the validation tar holds 50,000 flat JPEGs, moved into class folders by
the `mv <file> <wnid>/` lines of valprep.sh (soumith's imagenetloader.torch). Both are streamed, so a 138 GB tar
needs no more free space than its images.
"""

from __future__ import annotations

import re
import shutil
import tarfile
from functools import partial
from pathlib import Path

from .archives import UNREADABLE, expect, files, nonempty, unreadable
from .spec import DatasetError, DatasetSpec, Download, Summary

TRAIN_TAR, VAL_TAR, VALPREP = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "valprep.sh"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_MOVE = re.compile(r"^\s*mv\s+(\S+)\s+(\S+?)/?\s*$")


def spec(classes: int = 1000, train_images: int = 1_281_167, val_per_class: int = 50) -> DatasetSpec:
    """ImageNet's spec; the defaults are ILSVRC 2012's published counts (tests pass a tiny copy's)."""
    return DatasetSpec(
        name="imagenet",
        folder="imagenet",
        downloads=(
            Download(TRAIN_TAR, "ILSVRC 2012 training images (138 GB), from the ImageNet site after registering"),
            Download(VAL_TAR, "ILSVRC 2012 validation images (6.3 GB), from the same page"),
            Download(VALPREP, "the validation labels: valprep.sh of soumith's imagenetloader.torch on GitHub"),
        ),
        layout=("train", "val"),
        described=f"train/<wnid>/*.JPEG and val/<wnid>/*.JPEG ({classes} class folders each)",
        prepare=prepare,
        verify=partial(verify, classes=classes, train_images=train_images, val_per_class=val_per_class),
    )


def _safe(name: str, archive: Path) -> str:
    base = Path(name).name
    if base in ("", ".", ".."):
        raise DatasetError(f"{archive}: unexpected member {name!r}")
    return base


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    source = tar.extractfile(member)
    assert source is not None  # a regular file
    with source, open(path, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


def extract_train(archive: Path, dest: Path) -> None:
    """The tar of per-class tars -> dest/<wnid>/*.JPEG."""
    try:
        with tarfile.open(archive, "r|") as outer:
            for member in outer:
                if not member.isfile():
                    continue
                name = _safe(member.name, archive)
                if not name.endswith(".tar"):
                    raise DatasetError(f"{archive}: {member.name} is not a per-class tar")
                folder = dest / name.removesuffix(".tar")
                folder.mkdir(parents=True)
                with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as inner:
                    for image in inner:
                        if image.isfile():
                            _write(inner, image, folder / _safe(image.name, archive))
    except UNREADABLE as exc:
        raise unreadable(archive, exc) from exc


def val_labels(valprep: Path) -> dict[str, str]:
    """file name -> wnid from valprep.sh's `mv ILSVRC2012_val_00000001.JPEG n01751748/` lines."""
    labels = dict(m.groups() for line in valprep.read_text().splitlines() if (m := _MOVE.match(line)))
    if not labels:
        raise DatasetError(f"{valprep}: no `mv <file> <wnid>/` lines")
    return labels


def extract_val(archive: Path, labels: dict[str, str], dest: Path) -> None:
    """The flat validation tar -> dest/<wnid>/*.JPEG."""
    try:
        with tarfile.open(archive, "r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = _safe(member.name, archive)
                if name not in labels:
                    raise DatasetError(f"{archive}: {name} has no label in {VALPREP}")
                folder = dest / labels[name]
                folder.mkdir(parents=True, exist_ok=True)
                _write(tar, member, folder / name)
    except UNREADABLE as exc:
        raise unreadable(archive, exc) from exc


def prepare(downloads: Path, out: Path) -> None:
    extract_train(downloads / TRAIN_TAR, out / "train")
    extract_val(downloads / VAL_TAR, val_labels(downloads / VALPREP), out / "val")


def class_folders(split: Path) -> list[Path]:
    return sorted(p for p in split.iterdir() if p.is_dir())


def verify(root: Path, classes: int, train_images: int, val_per_class: int) -> Summary:
    """Class folders in both splits (the same wnids), every image non-empty, the published image counts."""
    train, val = class_folders(root / "train"), class_folders(root / "val")
    expect(f"class folders in {root / 'train'}", len(train), classes)
    if not val and files(root / "val", IMAGE_SUFFIXES):
        raise DatasetError(f"{root / 'val'} holds flat images: sort them into class folders with {VALPREP}")
    expect(f"class folders in {root / 'val'}", len(val), classes)
    if [p.name for p in train] != [p.name for p in val]:
        odd = sorted({p.name for p in train} ^ {p.name for p in val})
        raise DatasetError(f"{root}: train and val have different class folders, e.g. {odd[:3]}")
    total = sum(expect(f"images in {folder}", nonempty(files(folder, IMAGE_SUFFIXES)), None) for folder in train)
    expect(f"images in {root / 'train'}", total, train_images)
    for folder in val:
        expect(f"images in {folder}", nonempty(files(folder, IMAGE_SUFFIXES)), val_per_class)
    return {"classes": classes, "train_images": total, "val_images": classes * val_per_class}


IMAGENET = spec()
