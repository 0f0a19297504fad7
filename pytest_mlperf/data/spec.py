"""What a real dataset is: where it lives under the data directory, what to download to make it, the layout a
prepared copy has, and how to prepare and check it. `ensure` (in `ensure.py`) acts on these."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

#: A verification's result: a few counts, sizes or checksums that a marker file records and a report can show.
Summary = Mapping[str, int | str]


class DatasetError(RuntimeError):
    """A dataset is there but wrong: a missing or empty file, a count that differs from the published one, an archive
    that does not read. The message names the file or count."""


class DatasetMissing(DatasetError):
    """Neither the prepared layout nor the downloads to prepare it from are there; the message says what to
    download and the folder to put it in."""


@dataclass(frozen=True)
class Download:
    file: str  #: its file name, as the publisher names it
    source: str  #: where to get it, in words (registration, page, script)


@dataclass(frozen=True)
class DatasetSpec:
    name: str  #: e.g. "imagenet"
    folder: str  #: the dataset's folder under the data directory; downloads go there too
    downloads: tuple[Download, ...]  #: what `prepare` turns into the layout; none when only a script can make it
    layout: tuple[str, ...]  #: paths (relative to the folder) that a prepared copy has
    described: str  #: the layout in words, for messages
    #: (folder holding the downloads, empty staging folder) -> fills the staging folder with the layout
    prepare: Callable[[Path, Path], None] | None
    #: the prepared folder -> a summary; raises DatasetError naming what is wrong
    verify: Callable[[Path], Summary]
    #: how to make the layout when there are no downloads `prepare` understands (e.g. NVIDIA's scripts to run)
    instructions: str = ""

    def root(self, data_dir: Path) -> Path:
        return Path(data_dir) / self.folder

    def missing_message(self, data_dir: Path) -> str:
        root = self.root(data_dir)
        lines = [f"dataset {self.name!r} is not in {root}: it needs {self.described}."]
        if self.downloads:
            lines.append(f"Download these files into {root}/ and they are prepared on the next run:")
            for source, group in groupby(self.downloads, key=lambda d: d.source):
                names = [d.file for d in group]
                listed = ", ".join(names) if len(names) <= 3 else f"{names[0]}, {names[1]}, ..., {names[-1]}"
                lines.append(f"  - {listed}: {source}")
        if self.instructions:
            lines.append(self.instructions.replace("{root}", str(root)))
        return "\n".join(lines)


@dataclass(frozen=True)
class Prepared:
    """A dataset found (and prepared, when needed) and verified."""

    spec: DatasetSpec
    root: Path  #: the folder the loaders read
    summary: Summary  #: what verification found (from the marker file on later calls)
    prepared_now: bool  #: whether this call prepared or verified it (False: a marker from an earlier run)
