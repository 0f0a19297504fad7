"""Find a dataset under the data directory, prepare it from its downloads once, verify it, and remember that.

Preparing runs under a file lock in the data directory, so that pytest-xdist workers (or two sessions) that need the
same dataset at the same time prepare it once: the first extracts while the others wait, then they find its marker.
The marker file records the verification's summary and cheap counts of the layout (entries per folder, bytes per
file); later calls compare those counts only, and verify again when they changed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from filelock import FileLock

from .spec import DatasetError, DatasetMissing, DatasetSpec, Prepared, Summary

MARKER = ".pytest-mlperf.json"  #: in the dataset's folder
STAGING = ".preparing"  #: in the dataset's folder: `prepare` writes here, then the layout moves into place


def ensure(spec: DatasetSpec, data_dir: str | os.PathLike[str]) -> Prepared:
    """The dataset `spec` under `data_dir`, ready to load. Raises DatasetMissing (what to download, where) when
    neither its layout nor its downloads are there, DatasetError when it is incomplete or corrupt."""
    data_dir = Path(data_dir).expanduser()
    root = spec.root(data_dir)
    summary = _marked(spec, root)
    if summary is not None:
        return Prepared(spec, root, summary, prepared_now=False)
    if not data_dir.is_dir():
        raise DatasetMissing(f"{spec.missing_message(data_dir)}\n(The data directory {data_dir} does not exist.)")
    if not os.access(data_dir, os.W_OK):  # a shared read-only copy: verify it every time, write nothing
        if not _complete(spec, root):
            raise DatasetError(f"{spec.missing_message(data_dir)}\n({data_dir} is read-only: prepare it elsewhere.)")
        return Prepared(spec, root, dict(spec.verify(root)), prepared_now=True)
    with FileLock(data_dir / f".{spec.folder.replace(os.sep, '_')}.lock"):
        summary = _marked(spec, root)  # another process may have prepared it while this one waited
        if summary is not None:
            return Prepared(spec, root, summary, prepared_now=False)
        if not _complete(spec, root):
            _prepare(spec, root, data_dir)
        summary = dict(spec.verify(root))
        _write_marker(spec, root, summary)
        return Prepared(spec, root, summary, prepared_now=True)


def _counts(spec: DatasetSpec, root: Path) -> dict[str, int] | None:
    """Entries of each layout folder, bytes of each layout file; None when a path is missing."""
    counts = {}
    for rel in spec.layout:
        path = root / rel
        if path.is_dir():
            counts[rel] = len(os.listdir(path))
        elif path.is_file():
            counts[rel] = path.stat().st_size
        else:
            return None
    return counts


def _marked(spec: DatasetSpec, root: Path) -> Summary | None:
    """The summary of a marker that still matches the folder, or None."""
    try:
        marker = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if marker.get("dataset") != spec.name or marker.get("counts") != _counts(spec, root):
        return None
    return marker["summary"]


def _write_marker(spec: DatasetSpec, root: Path, summary: Summary) -> None:
    """Atomically (a reader never sees half a marker); skipped where the dataset's folder is read-only, which
    only means verifying it again next time."""
    tmp = root / f"{MARKER}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps({"dataset": spec.name, "summary": summary, "counts": _counts(spec, root)}, indent=1))
        os.replace(tmp, root / MARKER)
    except PermissionError:
        tmp.unlink(missing_ok=True)


def _complete(spec: DatasetSpec, root: Path) -> bool:
    """Whether the whole layout is there; an error when only part of it is (not something `prepare` made)."""
    present = [rel for rel in spec.layout if (root / rel).exists()]
    if present and len(present) < len(spec.layout):
        absent = [rel for rel in spec.layout if rel not in present]
        raise DatasetError(
            f"dataset {spec.name!r} in {root} is incomplete: it has {', '.join(present)} but not {', '.join(absent)} "
            f"(it needs {spec.described}); complete it, or remove {', '.join(present)} to prepare it from downloads"
        )
    return bool(present)


def _prepare(spec: DatasetSpec, root: Path, data_dir: Path) -> None:
    """Run `spec.prepare` into a staging folder, then move the layout's top-level entries into the dataset folder,
    so that an interrupted preparation leaves no half layout behind (only the staging folder, removed next time)."""
    absent = [d.file for d in spec.downloads if not (root / d.file).is_file()]
    if spec.prepare is None or absent:
        found = [d.file for d in spec.downloads if d.file not in absent]
        note = f"\n(Found {', '.join(found)}; missing {', '.join(absent)}.)" if found else ""
        raise DatasetMissing(spec.missing_message(data_dir) + note)
    staging = root / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    spec.prepare(root, staging)
    for top in dict.fromkeys(Path(rel).parts[0] for rel in spec.layout):
        if not (staging / top).exists():
            raise DatasetError(f"preparing {spec.name!r} from {root} made no {top}")
        (staging / top).rename(root / top)
    shutil.rmtree(staging)
