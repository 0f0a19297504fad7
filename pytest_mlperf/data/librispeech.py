"""LibriSpeech in the layout NVIDIA's Jasper scripts leave (DeepLearningExamples PyTorch/SpeechRecognition/Jasper:
scripts/download_librispeech.sh, then scripts/preprocess_librispeech.sh, whose utils/convert_librispeech.py turns
every <subset>/<speaker>/<chapter>/<id>.flac into <subset>-wav/<speaker>/<chapter>/<id>.wav with sox). FLAC needs a
decoder this package does not have, so only that wav layout is read; the transcripts come from the original
<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt files ("<id> TEXT" per line), lower-cased as NVIDIA's
manifests store them. Speed-perturbed copies (<id>-0.9.wav, ...) are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from .archives import expect, nonempty
from .audio import read_wav
from .spec import DatasetError, DatasetSpec, Summary

RATE = 16_000
#: utterances per subset, as published with the corpus
SUBSETS = {
    "train-clean-100": 28_539,
    "train-clean-360": 104_014,
    "train-other-500": 148_688,
    "dev-clean": 2_703,
    "dev-other": 2_864,
    "test-clean": 2_620,
    "test-other": 2_939,
}


def spec(subsets: Mapping[str, int] = SUBSETS) -> DatasetSpec:
    return DatasetSpec(
        name="librispeech",
        folder="LibriSpeech",
        downloads=(),
        layout=tuple(name for s in subsets for name in (s, f"{s}-wav")),
        described="for each subset, <subset>/**/*.trans.txt and the converted <subset>-wav/**/*.wav",
        prepare=None,
        verify=partial(verify, subsets=dict(subsets)),
        instructions="Run scripts/download_librispeech.sh and scripts/preprocess_librispeech.sh of NVIDIA "
        "DeepLearningExamples PyTorch/SpeechRecognition/Jasper (they download LibriSpeech from OpenSLR and convert "
        "its FLAC files to WAV with sox), then move or link the resulting LibriSpeech folder to {root}.",
    )


def utterances(root: Path, subset: str) -> list[tuple[Path, str]]:
    """(wav path, lower-cased transcript) per line of the subset's *.trans.txt files, sorted by utterance id."""
    found = []
    for transcript in sorted((root / subset).rglob("*.trans.txt")):
        folder = root / f"{subset}-wav" / transcript.parent.relative_to(root / subset)
        for line in transcript.read_text(encoding="utf-8").splitlines():
            uid, _, text = line.partition(" ")
            if uid:
                found.append((folder / f"{uid}.wav", text.strip().lower()))
    return found


def verify(root: Path, subsets: dict[str, int]) -> Summary:
    """Each subset's transcripts have the published number of utterances, each with a non-empty wav file."""
    for subset, count in subsets.items():
        found = utterances(root, subset)
        expect(f"transcribed utterances in {root / subset}", len(found), count)
        missing = next((wav for wav, _ in found if not wav.is_file()), None)
        if missing is not None:
            raise DatasetError(f"{missing} is missing (transcribed in {root / subset}); convert the subset to wav")
        nonempty(wav for wav, _ in found)
    return {f"{s} utterances": n for s, n in subsets.items()}


class LibriSpeech(Dataset[tuple[Tensor, str]]):
    """(waveform (samples,) float32 in [-1, 1) at 16 kHz, transcript) per utterance of `subsets`."""

    rate = RATE

    def __init__(self, root: str | Path, subsets: Sequence[str] = ("train-clean-100",)) -> None:
        self.items = [item for subset in subsets for item in utterances(Path(root), subset)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, str]:
        wav, text = self.items[index]
        return read_wav(wav, self.rate), text


LIBRISPEECH = spec()
