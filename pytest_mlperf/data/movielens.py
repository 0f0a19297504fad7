"""MovieLens-20M ratings as NCF trains on them (NVIDIA DeepLearningExamples PyTorch/Recommendation/NCF convert.py,
MLPerf's recommendation reference): every rating is an implicit positive; user and movie ids renumbered 0..n-1 in
order of appearance; each user's latest rating (by timestamp; earlier duplicates of a pair kept) is the held-out
test item, the rest are training positives. Training negatives are uniformly random items, as NVIDIA samples
them; the test negatives are items the user never rated.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .archives import expect, extract_zip, lines
from .spec import DatasetError, DatasetSpec, Download, Summary

ARCHIVE, RATINGS = "ml-20m.zip", "ratings.csv"
HEADER = "userId,movieId,rating,timestamp"
Batch = tuple[tuple[Tensor, Tensor], Tensor]


def spec(ratings: int = 20_000_263) -> DatasetSpec:
    return DatasetSpec(
        name="ml-20m",
        folder="ml-20m",
        downloads=(Download(ARCHIVE, "MovieLens 20M (190 MB), from GroupLens' MovieLens datasets page"),),
        layout=(RATINGS,),
        described=f"{RATINGS} ({HEADER})",
        prepare=prepare,
        verify=partial(verify, ratings=ratings),
    )


def prepare(downloads: Path, out: Path) -> None:
    extract_zip(downloads / ARCHIVE, out / "unzipped")
    ratings = next((out / "unzipped").rglob(RATINGS), None)
    if ratings is None:
        raise DatasetError(f"{downloads / ARCHIVE} holds no {RATINGS}")
    ratings.rename(out / RATINGS)
    shutil.rmtree(out / "unzipped")


def verify(root: Path, ratings: int) -> Summary:
    path = root / RATINGS
    with open(path) as f:
        header = f.readline().strip()
    if header != HEADER:
        raise DatasetError(f"{path}: header {header!r}, expected {HEADER!r}")
    return {"ratings": expect(f"ratings in {path}", lines(path) - 1, ratings)}


def _tensor(column: pd.Series) -> Tensor:
    return torch.from_numpy(column.to_numpy(dtype=np.int64, copy=True))  # pandas may hand out read-only arrays


class MovieLens(Dataset[tuple[Tensor, Tensor]]):
    """The training positives as (user, item) int64 pairs; `test_items[u]` is user u's held-out item (-1 for a user
    with one rating only). `epoch` and `held_out` make NCF's training samples and evaluation candidates."""

    def __init__(self, root: str | Path) -> None:
        path = Path(root) / RATINGS
        frame = pd.read_csv(path, usecols=["userId", "movieId", "timestamp"], dtype="int64")
        users, items = pd.factorize(frame["userId"])[0], pd.factorize(frame["movieId"])[0]
        self.users, self.items = int(users.max()) + 1, int(items.max()) + 1
        pairs = pd.DataFrame({"user": users, "item": items, "time": frame["timestamp"].to_numpy()})
        pairs = pairs.sort_values("time", kind="stable").drop_duplicates(["user", "item"])
        test = pairs.groupby("user").tail(1)
        train = pairs.drop(test.index)
        self.train_users, self.train_items = _tensor(train["user"]), _tensor(train["item"])
        self.test_items = torch.full((self.users,), -1, dtype=torch.int64)
        self.test_items[_tensor(test["user"])] = _tensor(test["item"])
        # every rated (user, item) as one sorted key, to tell unrated items apart
        self.rated = torch.sort(_tensor(pairs["user"] * self.items + pairs["item"])).values

    def __len__(self) -> int:
        return len(self.train_users)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.train_users[index], self.train_items[index]

    def epoch(self, negatives: int, generator: torch.Generator) -> Batch:
        """One epoch of NCF training samples, shuffled: every positive (label 1) and `negatives` random items per
        positive for the same user (label 0): ((users, items), labels), int64, int64, float32."""
        users = self.train_users.repeat(1 + negatives)
        items = torch.cat([self.train_items, torch.randint(self.items, (len(self) * negatives,), generator=generator)])
        labels = torch.zeros(len(users))
        labels[: len(self)] = 1
        order = torch.randperm(len(users), generator=generator)
        return (users[order], items[order]), labels[order]

    def _unrated(self, users: Tensor, count: int, generator: torch.Generator) -> Tensor:
        """(len(users), count) items each user never rated, drawn uniformly (redrawn where they hit a rated one)."""
        items = torch.randint(self.items, (len(users), count), generator=generator)
        while True:
            keys = users[:, None] * self.items + items
            at = torch.searchsorted(self.rated, keys).clamp_max(len(self.rated) - 1)
            hit = self.rated[at] == keys
            if not hit.any():
                return items
            items[hit] = torch.randint(self.items, (int(hit.sum()),), generator=generator)

    def held_out(self, generator: torch.Generator, negatives: int = 99, chunk: int = 1024) -> list[Batch]:
        """MLPerf's evaluation: per user with a test item, it (column 0, label 1) and `negatives` unrated items,
        flattened, in batches of `chunk` users (the layout `workloads.metrics.hit_rate` reads)."""
        users = torch.nonzero(self.test_items >= 0).squeeze(1)
        batches = []
        for u in users.split(chunk):
            items = torch.cat([self.test_items[u, None], self._unrated(u, negatives, generator)], 1)
            labels = torch.zeros(items.shape)
            labels[:, 0] = 1
            batches.append(((u.repeat_interleave(1 + negatives), items.flatten()), labels.flatten()))
        return batches


ML20M = spec()
