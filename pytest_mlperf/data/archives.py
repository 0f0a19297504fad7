"""Extracting downloads safely (no path outside the destination) and the checks verifications share. Every failure
is a DatasetError that names the archive or file."""

from __future__ import annotations

import gzip
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

from .spec import DatasetError

#: What a truncated or corrupt archive raises while it is read.
UNREADABLE = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)


def unreadable(archive: Path, exc: BaseException) -> DatasetError:
    return DatasetError(f"{archive}: extracting it failed ({exc}); if it is truncated or corrupt, download it again")


def extract_tar(archive: Path, dest: Path, strip: int = 0) -> None:
    """Extract a (compressed) tar into `dest`, dropping the first `strip` components of every path (a top folder)."""
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                parts = Path(member.name).parts[strip:]
                if parts:
                    member.name = "/".join(parts)
                    tar.extract(member, dest, filter="data")
    except UNREADABLE as exc:
        raise unreadable(archive, exc) from exc


def extract_zip(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise DatasetError(f"{archive}: {bad} fails its CRC check; download it again")
            zf.extractall(dest)  # zipfile drops absolute paths and ".." components
    except UNREADABLE as exc:
        raise unreadable(archive, exc) from exc


def gunzip(archive: Path, dest: Path) -> None:
    try:
        with gzip.open(archive, "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except UNREADABLE as exc:
        raise unreadable(archive, exc) from exc


def files(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    """The files directly in `folder` whose suffix (any case) is one of `suffixes`, sorted."""
    wanted = {s.lower() for s in suffixes}
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in wanted and p.is_file())


def nonempty(paths: Iterable[Path]) -> int:
    """How many paths there are; a DatasetError naming the first empty one."""
    count = 0
    for path in paths:
        if path.stat().st_size == 0:
            raise DatasetError(f"{path} is empty")
        count += 1
    return count


def expect(what: str, found: int, expected: int | None) -> int:
    """`found`, or a DatasetError when it is not the `expected` count (None: any count but zero)."""
    if found != expected and (expected is not None or found == 0):
        raise DatasetError(f"{what}: found {found}, expected {expected if expected is not None else 'some'}")
    return found


def lines(path: Path) -> int:
    """Lines in a text file, counted in binary chunks (fast on gigabytes)."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")
