"""`ensure`: finding, preparing (once, under a lock, even with two processes at once), verifying and caching a
dataset, and the messages of a missing or corrupt one. A toy dataset: a tar.gz of numbered text files."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import tarfile
import time
from functools import partial
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from pytest_mlperf.data import DatasetError, DatasetMissing, DatasetSpec, Download, ensure
from pytest_mlperf.data.archives import expect, extract_tar, files, nonempty
from pytest_mlperf.data.ensure import MARKER, STAGING

ARCHIVE = "numbers.tar.gz"


def _prepare(downloads: Path, out: Path, delay: float) -> None:
    with open(downloads / "prepared.log", "a") as log:  # one line per preparation, for the tests to count
        log.write(f"{os.getpid()}\n")
    time.sleep(delay)
    extract_tar(downloads / ARCHIVE, out)


def _verify(root: Path, count: int) -> dict[str, int]:
    return {"files": expect(f"files in {root / 'numbers'}", nonempty(files(root / "numbers", [".txt"])), count)}


def toy_spec(count: int = 3, delay: float = 0.0) -> DatasetSpec:
    return DatasetSpec(
        name="numbers",
        folder="numbers",
        downloads=(Download(ARCHIVE, "the test that writes it"),),
        layout=("numbers",),
        described="numbers/*.txt",
        prepare=partial(_prepare, delay=delay),
        verify=partial(_verify, count=count),
    )


def write_archive(data_dir: Path, count: int = 3, empty: int | None = None) -> Path:
    folder = data_dir / "numbers"
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / ARCHIVE, "w:gz") as tar:
        for i in range(count):
            data = b"" if i == empty else f"{i}\n".encode()
            info = tarfile.TarInfo(f"numbers/{i}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return folder / ARCHIVE


def preparations(data_dir: Path) -> int:
    log = data_dir / "numbers" / "prepared.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_prepares_once_then_trusts_the_marker(tmp_path: Path) -> None:
    write_archive(tmp_path)
    first = ensure(toy_spec(), tmp_path)
    assert first.prepared_now and first.summary == {"files": 3} and first.root == tmp_path / "numbers"
    assert sorted(p.name for p in (tmp_path / "numbers" / "numbers").iterdir()) == ["0.txt", "1.txt", "2.txt"]
    assert not (tmp_path / "numbers" / STAGING).exists()
    assert json.loads((tmp_path / "numbers" / MARKER).read_text())["summary"] == {"files": 3}
    again = ensure(toy_spec(), tmp_path)
    assert not again.prepared_now and again.summary == {"files": 3}
    assert preparations(tmp_path) == 1


def _child(data_dir: Path, barrier: Barrier, results: Queue) -> None:
    barrier.wait()  # both processes reach `ensure` together
    prepared = ensure(toy_spec(delay=0.5), data_dir)
    results.put((prepared.prepared_now, dict(prepared.summary)))


def test_two_processes_prepare_it_once(tmp_path: Path) -> None:
    """Two pytest-xdist workers needing the same dataset at once: one prepares (0.5 s), the other waits for the
    lock, finds the marker and reuses the result. Forked, so that the children start without importing torch."""
    write_archive(tmp_path)
    fork = multiprocessing.get_context("fork")
    barrier, results = fork.Barrier(2), fork.Queue()
    children = [fork.Process(target=_child, args=(tmp_path, barrier, results)) for _ in range(2)]
    for child in children:
        child.start()
    found = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert all(child.exitcode == 0 for child in children)
    assert sorted(prepared_now for prepared_now, _ in found) == [False, True]
    assert all(summary == {"files": 3} for _, summary in found)
    assert preparations(tmp_path) == 1


def test_missing_dataset_says_what_to_download_and_where(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissing) as exc:
        ensure(toy_spec(), tmp_path)
    message = str(exc.value)
    assert f"{tmp_path / 'numbers'}/" in message and ARCHIVE in message and "the test that writes it" in message
    assert "numbers/*.txt" in message


def test_missing_data_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissing, match="does not exist"):
        ensure(toy_spec(), tmp_path / "nowhere")


def test_a_prepared_copy_without_downloads_is_verified_and_marked(tmp_path: Path) -> None:
    folder = tmp_path / "numbers" / "numbers"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"{i}.txt").write_text("x")
    assert ensure(toy_spec(), tmp_path).prepared_now
    assert (tmp_path / "numbers" / MARKER).exists()


def test_a_wrong_count_names_the_folder(tmp_path: Path) -> None:
    write_archive(tmp_path, count=2)
    with pytest.raises(DatasetError, match=r"files in .*numbers/numbers: found 2, expected 3"):
        ensure(toy_spec(), tmp_path)


def test_an_empty_file_is_named(tmp_path: Path) -> None:
    write_archive(tmp_path, empty=1)
    with pytest.raises(DatasetError, match=r"numbers/1\.txt is empty"):
        ensure(toy_spec(), tmp_path)


def test_a_truncated_archive_is_named(tmp_path: Path) -> None:
    archive = write_archive(tmp_path)
    archive.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(DatasetError, match=rf"{ARCHIVE}: extracting it failed .*download it again"):
        ensure(toy_spec(), tmp_path)
    assert not (tmp_path / "numbers" / "numbers").exists()  # nothing half-prepared in place
    write_archive(tmp_path)  # downloaded again: the staging folder left behind is no obstacle
    assert ensure(toy_spec(), tmp_path).summary == {"files": 3}


def test_a_changed_folder_is_verified_again(tmp_path: Path) -> None:
    write_archive(tmp_path)
    ensure(toy_spec(), tmp_path)
    (tmp_path / "numbers" / "numbers" / "0.txt").unlink()
    with pytest.raises(DatasetError, match="found 2, expected 3"):
        ensure(toy_spec(), tmp_path)


def test_a_partial_layout_is_an_error(tmp_path: Path) -> None:
    spec = DatasetSpec(
        name="two",
        folder="two",
        downloads=(),
        layout=("a", "b"),
        described="a/ and b/",
        prepare=None,
        verify=lambda root: {},
    )
    (tmp_path / "two" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="incomplete: it has a but not b"):
        ensure(spec, tmp_path)


def test_a_read_only_copy_is_verified_without_a_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "numbers" / "numbers"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"{i}.txt").write_text("x")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a shared copy mounted read-only
    assert ensure(toy_spec(), tmp_path).summary == {"files": 3}
    assert not (tmp_path / "numbers" / MARKER).exists()
    folder.rename(tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match="read-only"):
        ensure(toy_spec(), tmp_path)
