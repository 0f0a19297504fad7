"""MovieLens-20M for NCF (implicit feedback, leave-one-out test items, negatives) and Criteo click logs for DLRM
(log-dense, hashed categorical features, missing values), on small files in the real formats."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pytest_mlperf.data import CriteoClicks, DatasetError, MovieLens, criteo, ensure, movielens

# userId,movieId,rating,timestamp: user 7 rates 3 movies (latest: 30), user 5 rates 2 (latest: 10), user 9 one
RATINGS = """userId,movieId,rating,timestamp
7,10,4.0,100
7,20,3.5,300
5,20,5.0,50
7,30,1.0,400
5,10,2.0,60
9,40,3.0,10
"""


@pytest.fixture
def ml(tmp_path: Path) -> MovieLens:
    folder = tmp_path / "ml-20m"
    folder.mkdir()
    with zipfile.ZipFile(folder / movielens.ARCHIVE, "w") as zf:
        zf.writestr("ml-20m/ratings.csv", RATINGS)
        zf.writestr("ml-20m/movies.csv", "movieId,title,genres\n")
    assert ensure(movielens.spec(ratings=6), tmp_path).summary == {"ratings": 6}
    return MovieLens(folder)


def test_movielens_counts_and_header(tmp_path: Path) -> None:
    assert movielens.ML20M.verify.keywords == {"ratings": 20_000_263}
    (tmp_path / "ml-20m").mkdir()
    (tmp_path / "ml-20m" / "ratings.csv").write_text(RATINGS.replace("userId", "user"))
    with pytest.raises(DatasetError, match="header"):
        ensure(movielens.spec(ratings=6), tmp_path)


def test_leave_one_out(ml: MovieLens) -> None:
    # ids in order of appearance: users 7, 5, 9 -> 0, 1, 2; movies 10, 20, 30, 40 -> 0, 1, 2, 3
    assert (ml.users, ml.items, len(ml)) == (3, 4, 3)
    assert ml.test_items.tolist() == [2, 0, 3]  # each user's latest rating
    train = sorted(zip(ml.train_users.tolist(), ml.train_items.tolist(), strict=True))
    assert train == [(0, 0), (0, 1), (1, 1)]  # user 9's only rating is its test item
    assert tuple(int(v) for v in ml[0]) in train


def test_epoch_samples(ml: MovieLens) -> None:
    (users, items), labels = ml.epoch(4, torch.Generator().manual_seed(0))
    assert users.shape == items.shape == labels.shape == (15,)
    assert users.dtype == items.dtype == torch.int64 and labels.dtype == torch.float32
    assert int(labels.sum()) == 3 and int(items.max()) < ml.items
    positives = sorted(zip(users[labels == 1].tolist(), items[labels == 1].tolist(), strict=True))
    assert positives == [(0, 0), (0, 1), (1, 1)]


def test_held_out_negatives_are_unrated(ml: MovieLens) -> None:
    batches = ml.held_out(torch.Generator().manual_seed(0), negatives=2, chunk=2)
    assert len(batches) == 2
    users = torch.cat([u for (u, _), _ in batches]).view(-1, 3)
    items = torch.cat([i for (_, i), _ in batches]).view(-1, 3)
    labels = torch.cat([y for _, y in batches]).view(-1, 3)
    assert users[:, 0].tolist() == [0, 1, 2] and (labels[:, 0] == 1).all() and labels[:, 1:].sum() == 0
    assert items[:, 0].tolist() == [2, 0, 3]
    rated = {0: {0, 1, 2}, 1: {0, 1}, 2: {3}}
    assert all(int(i) not in rated[u] for u, row in enumerate(items[:, 1:]) for i in row)


# label, 13 integers, 26 hex categories; empty fields are missing values
LINES = [
    ["1", "5", "", "-3", *["0"] * 10, "68fd1e64", "", *["80e26c9b"] * 24],
    ["0", *[str(i) for i in range(13)], *[f"{i:08x}" for i in range(26)]],
    ["0", *[""] * 13, *[""] * 26],
]
TABLES = [1000 + i for i in range(26)]


def write_criteo(folder: Path, lines: list[list[str]], copies: int = 1) -> None:
    folder.mkdir(parents=True)
    data = "".join("\t".join(fields) + "\n" for fields in lines * copies).encode()
    with tarfile.open(folder / criteo.KAGGLE_ARCHIVE, "w:gz") as tar:
        for name, content in ((criteo.KAGGLE_TRAIN, data), ("readme.txt", b"Criteo")):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


def test_criteo_parsing(tmp_path: Path) -> None:
    write_criteo(tmp_path / "criteo_kaggle", LINES)
    root = ensure(criteo.kaggle_spec(train_lines=3), tmp_path).root
    ((dense, sparse), labels) = next(iter(CriteoClicks([root / criteo.KAGGLE_TRAIN], TABLES, batch_size=8)))
    assert dense.shape == (3, 13) and dense.dtype == torch.float32
    assert sparse.shape == (3, 26) and sparse.dtype == torch.int64
    assert labels.tolist() == [1.0, 0.0, 0.0]
    assert dense[0, :3].tolist() == pytest.approx([np.log(6), 0.0, 0.0])  # log(1 + 5), missing, negative
    assert dense[1].tolist() == pytest.approx(np.log1p(np.arange(13)).tolist())
    assert sparse[0, 0] == 0x68FD1E64 % TABLES[0] and sparse[0, 1] == 0 and sparse[0, 2] == 0x80E26C9B % TABLES[2]
    assert sparse[1].tolist() == [i % t for i, t in zip(range(26), TABLES, strict=True)]
    assert (dense[2] == 0).all() and (sparse[2] == 0).all()


def test_hex_values_match_int() -> None:
    values = ["68fd1e64", "", "0", "FFFFFFFF", "1a", "deadbeefcafe"]
    assert criteo.hex_values(np.array(values, dtype=object)).tolist() == [int(v or "0", 16) for v in values]


def test_criteo_batches_split_across_workers(tmp_path: Path) -> None:
    write_criteo(tmp_path / "criteo_kaggle", LINES, copies=5)  # 15 lines: batches of 4, 4, 4, 3
    root = ensure(criteo.kaggle_spec(train_lines=15), tmp_path).root
    data = CriteoClicks([root / criteo.KAGGLE_TRAIN], TABLES, batch_size=4)
    batches = list(DataLoader(data, batch_size=None, num_workers=2))
    assert sorted(len(labels) for _, labels in batches) == [3, 4, 4, 4]
    assert sum(float(labels.sum()) for _, labels in batches) == 5


def test_criteo_field_count_checked(tmp_path: Path) -> None:
    write_criteo(tmp_path / "criteo_kaggle", [line[:-1] for line in LINES])
    with pytest.raises(DatasetError, match=r"fields in the first line of .*train\.txt: found 39, expected 40"):
        ensure(criteo.kaggle_spec(train_lines=3), tmp_path)


def test_terabyte_days_unpacked(tmp_path: Path) -> None:
    folder = tmp_path / "criteo_terabyte"
    folder.mkdir()
    for day in ("day_0", "day_1"):
        with gzip.open(folder / f"{day}.gz", "wt") as f:
            f.write("\t".join(LINES[1]) + "\n")
    prepared = ensure(criteo.terabyte_spec(days=("day_0", "day_1")), tmp_path)
    assert set(prepared.summary) == {"day_0 bytes", "day_1 bytes"}
    assert (folder / "day_1").read_text().startswith("0\t0\t1")
    assert criteo.CRITEO_TERABYTE.layout == tuple(f"day_{d}" for d in range(24))
