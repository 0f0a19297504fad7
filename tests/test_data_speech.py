"""LibriSpeech (NVIDIA Jasper's wav layout plus the original *.trans.txt) and LJ Speech (wavs/ and metadata.csv),
and the standard-library WAV reader."""

from __future__ import annotations

import io
import tarfile
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from pytest_mlperf.data import DatasetError, DatasetMissing, LibriSpeech, LJSpeech, ensure, librispeech, ljspeech
from pytest_mlperf.data.audio import read_wav


def wav_bytes(samples: np.ndarray, rate: int, width: int = 2, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return out.getvalue()


def tone(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-30000, 30000, n).astype(np.int16)


def test_read_wav_formats(tmp_path: Path) -> None:
    samples = tone(100, 0)
    (tmp_path / "a.wav").write_bytes(wav_bytes(samples, 16000))
    assert torch.allclose(read_wav(tmp_path / "a.wav", 16000), torch.from_numpy(samples / 32768).float())
    stereo = np.stack([samples, np.zeros_like(samples)], 1)  # interleaved left, right
    (tmp_path / "b.wav").write_bytes(wav_bytes(stereo, 16000, channels=2))
    assert torch.allclose(read_wav(tmp_path / "b.wav"), torch.from_numpy(samples / 65536).float())
    (tmp_path / "c.wav").write_bytes(wav_bytes(np.array([0, 128, 255], dtype=np.uint8), 8000, width=1))
    assert read_wav(tmp_path / "c.wav").tolist() == [-1.0, 0.0, 127 / 128]
    with pytest.raises(DatasetError, match=r"a\.wav: sampled at 16000 Hz, expected 22050 Hz"):
        read_wav(tmp_path / "a.wav", 22050)
    (tmp_path / "d.wav").write_bytes(b"fLaC not a wav")
    with pytest.raises(DatasetError, match="not a PCM WAV file"):
        read_wav(tmp_path / "d.wav")


def write_librispeech(root: Path, subset: str = "dev-clean") -> dict[str, np.ndarray]:
    """Two chapters of one speaker, as download + preprocess_librispeech.sh leave them."""
    written = {}
    for chapter, count in (("121123", 2), ("121550", 1)):
        flac = root / subset / "84" / chapter
        wav = root / f"{subset}-wav" / "84" / chapter
        flac.mkdir(parents=True)
        wav.mkdir(parents=True)
        lines = []
        for i in range(count):
            uid = f"84-{chapter}-{i:04d}"
            written[uid] = tone(160 * (i + 1), i)
            (flac / f"{uid}.flac").write_bytes(b"fLaC")
            (wav / f"{uid}.wav").write_bytes(wav_bytes(written[uid], 16000))
            (wav / f"{uid}-1.1.wav").write_bytes(wav_bytes(written[uid][::2], 16000))  # speed-perturbed copy
            lines.append(f"{uid} GO DO YOU HEAR {i}")
        (flac / f"84-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return written


def test_librispeech(tmp_path: Path) -> None:
    written = write_librispeech(tmp_path / "LibriSpeech")
    prepared = ensure(librispeech.spec({"dev-clean": 3}), tmp_path)
    assert prepared.summary == {"dev-clean utterances": 3}
    data = LibriSpeech(prepared.root, ["dev-clean"])
    assert len(data) == 3
    waveform, text = data[1]
    assert text == "go do you hear 1" and waveform.dtype == torch.float32
    assert torch.allclose(waveform, torch.from_numpy(written["84-121123-0001"] / 32768).float())


def test_librispeech_published_counts_and_instructions(tmp_path: Path) -> None:
    assert librispeech.LIBRISPEECH.verify.keywords["subsets"]["train-clean-100"] == 28_539
    with pytest.raises(DatasetMissing, match=r"preprocess_librispeech\.sh"):
        ensure(librispeech.LIBRISPEECH, tmp_path)


def test_librispeech_missing_wav_is_named(tmp_path: Path) -> None:
    write_librispeech(tmp_path / "LibriSpeech")
    (tmp_path / "LibriSpeech" / "dev-clean-wav" / "84" / "121550" / "84-121550-0000.wav").unlink()
    with pytest.raises(DatasetError, match=r"84-121550-0000\.wav is missing"):
        ensure(librispeech.spec({"dev-clean": 3}), tmp_path)


def write_ljspeech(folder: Path, clips: int = 3, listed: int | None = None) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    written = {f"LJ001-{i + 1:04d}": tone(220 + i, i) for i in range(clips)}
    metadata = "".join(f'{uid}|Chapter {i}, "quoted"|Chapter {["one", "two", "three"][i % 3]}, "quoted"\n'
                       for i, uid in enumerate(list(written)[: listed or clips]))  # fmt: skip
    with tarfile.open(folder / ljspeech.ARCHIVE, "w:bz2") as tar:
        files = {"LJSpeech-1.1/metadata.csv": metadata.encode(), "LJSpeech-1.1/README": b"LJ"}
        files |= {f"LJSpeech-1.1/wavs/{uid}.wav": wav_bytes(s, 22050) for uid, s in written.items()}
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return written


def test_ljspeech(tmp_path: Path) -> None:
    written = write_ljspeech(tmp_path / "LJSpeech-1.1")
    prepared = ensure(ljspeech.spec(clips=3), tmp_path)
    assert prepared.summary == {"clips": 3}
    assert (prepared.root / "wavs" / "LJ001-0002.wav").is_file()  # the archive's top folder dropped
    data = LJSpeech(prepared.root)
    waveform, text = data[2]
    assert text == 'Chapter three, "quoted"'
    assert torch.allclose(waveform, torch.from_numpy(written["LJ001-0003"] / 32768).float())
    assert ljspeech.LJSPEECH.verify.keywords == {"clips": 13_100}


def test_ljspeech_counts_checked(tmp_path: Path) -> None:
    write_ljspeech(tmp_path / "LJSpeech-1.1", clips=3, listed=2)
    with pytest.raises(DatasetError, match=r"lines of .*metadata\.csv: found 2, expected 3"):
        ensure(ljspeech.spec(clips=3), tmp_path)
