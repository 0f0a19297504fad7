"""WAV files through the standard library's `wave` module (no soundfile, torchaudio or sox)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .spec import DatasetError

_PCM = {1: (np.uint8, 128.0, 128.0), 2: (np.int16, 0.0, 32768.0), 4: (np.int32, 0.0, 2147483648.0)}


def read_wav(path: str | Path, rate: int | None = None) -> Tensor:
    """A PCM WAV file -> (samples,) float32 in [-1, 1), channels averaged; a DatasetError when its sample rate is
    not `rate` or its sample width is not 8, 16 or 32 bits."""
    try:
        with wave.open(str(path), "rb") as f:
            width, channels, found = f.getsampwidth(), f.getnchannels(), f.getframerate()
            frames = f.readframes(f.getnframes())
    except (wave.Error, EOFError) as exc:
        raise DatasetError(f"{path}: not a PCM WAV file ({exc})") from exc
    if rate is not None and found != rate:
        raise DatasetError(f"{path}: sampled at {found} Hz, expected {rate} Hz")
    if width not in _PCM:
        raise DatasetError(f"{path}: {8 * width}-bit samples; only 8, 16 and 32-bit PCM are read")
    dtype, offset, scale = _PCM[width]
    samples = (np.frombuffer(frames, dtype=dtype).astype(np.float32) - offset) / scale
    return torch.from_numpy(samples.reshape(-1, channels).mean(1))
