"""Criteo click logs (Kaggle Display Advertising Challenge and the Terabyte Click Logs) as DLRM reads them
(facebookresearch/dlrm data_utils.py): tab-separated lines of a 0/1 label, 13 integer features and 26 categorical
features (32-bit hashes in 8 hex digits), any of them possibly empty. Missing values become 0; the dense features
are clipped at 0 and mapped to log(1 + x); a categorical value is the hex number modulo its table's size (the
reference's --max-ind-range hashing; it then renumbers the ids it saw with dictionaries, which is skipped here, so
that no pass over the whole data is needed before training).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pandas.io.parsers import TextFileReader
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from .archives import expect, extract_tar, gunzip, lines, nonempty
from .spec import DatasetError, DatasetSpec, Download, Summary

DENSE, SPARSE = 13, 26
COLUMNS = ["label", *(f"I{i}" for i in range(1, DENSE + 1)), *(f"C{i}" for i in range(1, SPARSE + 1))]
KAGGLE_ARCHIVE, KAGGLE_TRAIN = "dac.tar.gz", "train.txt"
DAYS = tuple(f"day_{d}" for d in range(24))
Batch = tuple[tuple[Tensor, Tensor], Tensor]


def kaggle_spec(train_lines: int = 45_840_617) -> DatasetSpec:
    return DatasetSpec(
        name="criteo_kaggle",
        folder="criteo_kaggle",
        downloads=(Download(KAGGLE_ARCHIVE, "the Kaggle Display Advertising Challenge data, Criteo AI Lab's page"),),
        layout=(KAGGLE_TRAIN,),
        described=f"{KAGGLE_TRAIN} (label, 13 integer and 26 categorical tab-separated fields per line)",
        prepare=lambda downloads, out: extract_tar(downloads / KAGGLE_ARCHIVE, out),
        verify=partial(verify, files=(KAGGLE_TRAIN,), expected_lines=train_lines),
    )


def terabyte_spec(days: Sequence[str] = DAYS) -> DatasetSpec:
    """The 24 days of the Terabyte logs; their lines are not counted (over 4 billion)."""
    return DatasetSpec(
        name="criteo_terabyte",
        folder="criteo_terabyte",
        downloads=tuple(
            Download(f"{day}.gz", "the Criteo 1TB Click Logs, one file per day, from Criteo AI Lab's download page")
            for day in days
        ),
        layout=tuple(days),
        described=f"{', '.join(days[:2])} ... {days[-1]} (the unpacked day files)",
        prepare=partial(_gunzip_days, days=tuple(days)),
        verify=partial(verify, files=tuple(days), expected_lines=None),
    )


def _gunzip_days(downloads: Path, out: Path, days: tuple[str, ...]) -> None:
    for day in days:
        gunzip(downloads / f"{day}.gz", out / day)


def verify(root: Path, files: tuple[str, ...], expected_lines: int | None) -> Summary:
    """Every file non-empty with 40 fields on its first line; with `expected_lines`, the first file's line count."""
    paths = [root / name for name in files]
    nonempty(paths)
    for path in paths:
        with open(path, "rb") as f:
            fields = f.readline().rstrip(b"\n").count(b"\t") + 1
        expect(f"tab-separated fields in the first line of {path}", fields, len(COLUMNS))
    summary: dict[str, int | str] = {f"{p.name} bytes": p.stat().st_size for p in paths}
    if expected_lines is not None:
        summary[f"{files[0]} lines"] = expect(f"lines of {paths[0]}", lines(paths[0]), expected_lines)
    return summary


#: hex digit -> value; 255 marks the padding of shorter strings (and any other byte)
_HEX = np.full(256, 255, dtype=np.uint8)
for _digits, _base in ((b"0123456789", 0), (b"abcdef", 10), (b"ABCDEF", 10)):
    _HEX[np.frombuffer(_digits, np.uint8)] = np.arange(len(_digits), dtype=np.uint8) + _base


def hex_values(column: np.ndarray) -> np.ndarray:
    """Strings of up to 16 hex digits ("" for a missing value) -> uint64, vectorised (int(x, 16) per value is too
    slow for billions of them)."""
    raw = np.asarray(column, dtype="S16")
    digits = _HEX[raw.view(np.uint8).reshape(len(raw), 16)]
    value = np.zeros(len(raw), dtype=np.uint64)
    for k in range(16):
        valid = digits[:, k] != 255
        value = np.where(valid, value * np.uint64(16) + digits[:, k], value)
    return value


def parse(frame: pd.DataFrame, tables: Sequence[int]) -> Batch:
    """Rows as read by `read_csv` below -> ((dense (N, 13) float32, sparse (N, 26) int64), labels (N,) float32)."""
    dense = frame.iloc[:, 1 : 1 + DENSE].to_numpy(dtype=np.float32, na_value=0.0)
    dense = np.log1p(np.maximum(dense, 0))
    sizes = np.asarray(tables, dtype=np.uint64)
    sparse = np.stack([hex_values(frame[f"C{i + 1}"].to_numpy()) % sizes[i] for i in range(SPARSE)], 1)
    labels = frame["label"].to_numpy(dtype=np.float32, copy=True)
    return (torch.from_numpy(dense), torch.from_numpy(sparse.astype(np.int64))), torch.from_numpy(labels)


def read_csv(path: Path, chunk: int) -> TextFileReader:
    """A click-log file in chunks of `chunk` rows; empty dense fields read as NaN, empty categorical ones as ""."""
    return pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=COLUMNS,
        dtype={**dict.fromkeys(COLUMNS[: 1 + DENSE], np.float32), **dict.fromkeys(COLUMNS[1 + DENSE :], str)},
        keep_default_na=False,
        na_values={c: [""] for c in COLUMNS[1 : 1 + DENSE]},
        chunksize=chunk,
    )


class CriteoClicks(IterableDataset[Batch]):
    """Whole batches ((dense, sparse), labels) of `batch_size` lines (the last one of a file may be shorter), read in
    file order. With DataLoader workers (use batch_size=None there), each worker reads every W-th file when there are
    at least as many files as workers, else every W-th batch of every file."""

    def __init__(self, paths: Sequence[str | Path], tables: Sequence[int], batch_size: int) -> None:
        if len(tables) != SPARSE:
            raise ValueError(f"Criteo has {SPARSE} categorical features, got {len(tables)} table sizes")
        self.paths, self.tables, self.batch_size = [Path(p) for p in paths], tuple(tables), batch_size

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        by_file = len(self.paths) >= workers
        paths = self.paths[worker::workers] if by_file else self.paths
        for path in paths:
            try:
                with read_csv(path, self.batch_size) as chunks:  # closed also when the consumer stops early
                    for i, frame in enumerate(chunks):
                        if by_file or i % workers == worker:
                            yield parse(frame, self.tables)
            except (ValueError, pd.errors.ParserError) as exc:
                raise DatasetError(f"{path}: not a Criteo click log ({exc})") from exc


CRITEO_KAGGLE = kaggle_spec()
CRITEO_TERABYTE = terabyte_spec()
