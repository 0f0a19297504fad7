"""LJ Speech 1.1 (Tacotron 2 and WaveGlow's data in NVIDIA DeepLearningExamples): wavs/<id>.wav at 22,050 Hz and
metadata.csv, one "<id>|<transcription>|<normalized transcription>" line per clip, no header, no quoting."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from .archives import expect, extract_tar, files, nonempty
from .audio import read_wav
from .spec import DatasetError, DatasetSpec, Download, Summary

ARCHIVE, METADATA, RATE = "LJSpeech-1.1.tar.bz2", "metadata.csv", 22_050


def spec(clips: int = 13_100) -> DatasetSpec:
    return DatasetSpec(
        name="ljspeech",
        folder="LJSpeech-1.1",
        downloads=(Download(ARCHIVE, "LJ Speech 1.1 (2.6 GB), from Keith Ito's LJ Speech Dataset page"),),
        layout=("wavs", METADATA),
        described=f"wavs/*.wav and {METADATA}",
        prepare=lambda downloads, out: extract_tar(downloads / ARCHIVE, out, strip=1),  # drop LJSpeech-1.1/
        verify=partial(verify, clips=clips),
    )


def metadata(root: Path) -> list[tuple[str, str]]:
    """(clip id, normalized transcription; the plain one where that is empty) per line of metadata.csv."""
    rows = []
    for number, line in enumerate((root / METADATA).read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("|")
        if len(fields) != 3:
            raise DatasetError(f"{root / METADATA}:{number}: {len(fields)} fields, expected 3 (id|text|normalized)")
        rows.append((fields[0], fields[2] or fields[1]))
    return rows


def verify(root: Path, clips: int) -> Summary:
    rows = metadata(root)
    expect(f"lines of {root / METADATA}", len(rows), clips)
    wavs = {p.stem: p for p in files(root / "wavs", [".wav"])}
    missing = next((uid for uid, _ in rows if uid not in wavs), None)
    if missing is not None:
        raise DatasetError(f"{root / 'wavs' / missing}.wav is missing (listed in {METADATA})")
    return {"clips": expect(f"wav files in {root / 'wavs'}", nonempty(wavs.values()), clips)}


class LJSpeech(Dataset[tuple[Tensor, str]]):
    """(waveform (samples,) float32 in [-1, 1) at 22,050 Hz, normalized text) per line of metadata.csv."""

    rate = RATE

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.rows = metadata(self.root)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[Tensor, str]:
        uid, text = self.rows[index]
        return read_wav(self.root / "wavs" / f"{uid}.wav", self.rate), text


LJSPEECH = spec()
