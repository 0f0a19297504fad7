"""WMT16 English-German as NVIDIA's GNMT (and MLPerf's rnn_translator) prepares it: Moses-tokenised, BPE-segmented
parallel text (one sentence per line, tokens separated by spaces) and the shared BPE vocabulary, from
DeepLearningExamples PyTorch/Translation/GNMT scripts/wmt16_en_de.sh. That script runs the Moses tokeniser and
subword-nmt, which this package does not reimplement: run it and put its output files in the dataset folder.

Token ids as NVIDIA's seq2seq/data/tokenizer.py: PAD 0, UNK 1, BOS 2, EOS 3, then the vocabulary file's tokens in
order, padded with `madeupwordNNNN` to a multiple of 8. Pairs come back as (source + EOS, target + EOS), the
layout of `workloads.synthetic.reversal_pairs`: GNMT's trainer puts BOS in front itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .archives import expect, lines, nonempty
from .spec import DatasetError, DatasetSpec, Summary

VOCAB = "vocab.bpe.32000"
SPLITS = {
    "train": "train.tok.clean.bpe.32000",
    "val": "newstest_dev.tok.clean.bpe.32000",
    "test": "newstest2014.tok.bpe.32000",
}
SPECIALS = ("<pad>", "<unk>", "<s>", "<\\s>")  # NVIDIA's seq2seq/data/config.py spellings
PAD, UNK, BOS, EOS = range(4)


def files(split: str, languages: tuple[str, str] = ("en", "de")) -> tuple[str, str]:
    return tuple(f"{SPLITS[split]}.{lang}" for lang in languages)  # type: ignore[return-value]


def spec(test_sentences: int = 3003) -> DatasetSpec:
    """The spec; newstest2014 has 3003 sentence pairs (the other splits' counts depend on the script's version)."""
    return DatasetSpec(
        name="wmt16_en_de",
        folder="wmt16_de_en",
        downloads=(),
        layout=(VOCAB, *(name for split in SPLITS for name in files(split))),
        described=f"{VOCAB} and the tokenised BPE text {', '.join(SPLITS.values())} (.en and .de)",
        prepare=None,
        verify=partial(verify, test_sentences=test_sentences),
        instructions="Run scripts/wmt16_en_de.sh of NVIDIA DeepLearningExamples PyTorch/Translation/GNMT (it "
        "downloads the WMT16 news translation data, tokenises it with Moses and applies BPE) and copy its output "
        "files into {root}/.",
    )


def verify(root: Path, test_sentences: int) -> Summary:
    """Both sides of every split have as many (non-empty files of) lines; newstest2014 has its published count."""
    summary: dict[str, int | str] = {"vocabulary": expect(f"tokens in {root / VOCAB}", lines(root / VOCAB), None)}
    for split in SPLITS:
        src, tgt = (root / name for name in files(split))
        nonempty([src, tgt])
        count = expect(f"lines of {tgt} (as in {src.name})", lines(tgt), lines(src))
        summary[f"{split} pairs"] = expect(f"lines of {src}", count, test_sentences if split == "test" else None)
    return summary


class Vocabulary:
    """Token <-> id as NVIDIA's Tokenizer.build_vocabulary; unknown tokens map to UNK."""

    def __init__(self, path: str | Path, pad_to: int = 8) -> None:
        tokens = [*SPECIALS, *(line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines())]
        tokens += [f"madeupword{i:04d}" for i in range(-len(tokens) % pad_to)]
        self.tokens = tokens
        self.ids = {token: i for i, token in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, line: str) -> list[int]:
        return [self.ids.get(token, UNK) for token in line.split()]


class TextLines:
    """A text file's lines kept as one bytes object and offsets: compact, and not copied by forked workers."""

    def __init__(self, path: str | Path) -> None:
        self.data = Path(path).read_bytes()
        text = np.frombuffer(self.data, dtype=np.uint8)
        ends = np.flatnonzero(text == ord("\n"))
        if self.data and not self.data.endswith(b"\n"):
            ends = np.append(ends, len(self.data))
        self.starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
        self.ends = ends
        #: NVIDIA's LazyParallelDataset measure of a line: its spaces + 1
        self.words = np.add.reduceat(text == ord(" "), self.starts, dtype=np.int64) + 1 if len(ends) else ends

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, index: int) -> str:
        return self.data[self.starts[index] : self.ends[index]].decode("utf-8")


class ParallelText(Dataset[tuple[Tensor, Tensor]]):
    """Sentence pairs of one split as (source ids + EOS, target ids + EOS), int64, tokenised lazily (in the
    DataLoader's workers) as NVIDIA's LazyParallelDataset does. Pairs where either side has more than `max_length`
    tokens with BOS and EOS counted, or fewer than `min_length`, are dropped (GNMT trains with at most 50)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        vocabulary: Vocabulary | None = None,
        max_length: int | None = 50,
        min_length: int = 0,
        languages: tuple[str, str] = ("en", "de"),
    ) -> None:
        root = Path(root)
        self.vocabulary = vocabulary or Vocabulary(root / VOCAB)
        src_path, tgt_path = (root / name for name in files(split, languages))
        self.src, self.tgt = TextLines(src_path), TextLines(tgt_path)
        if len(self.src) != len(self.tgt):
            raise DatasetError(f"{src_path} has {len(self.src)} lines but {tgt_path} has {len(self.tgt)}")
        src_len, tgt_len = self.src.words + 2, self.tgt.words + 2  # with BOS and EOS, as NVIDIA filters
        keep = (src_len >= min_length) & (tgt_len >= min_length)
        if max_length is not None:
            keep &= (src_len <= max_length) & (tgt_len <= max_length)
        self.indices = np.flatnonzero(keep)
        #: tokens of each kept pair's longer side, with EOS (what a batch pads to)
        self.lengths = np.maximum(src_len, tgt_len)[self.indices] - 1

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        i = int(self.indices[index])
        encode = self.vocabulary.encode
        return torch.tensor([*encode(self.src[i]), EOS]), torch.tensor([*encode(self.tgt[i]), EOS])


def pad(pairs: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """A batch of pairs -> (source (B, S), target (B, T)) int64, batch-first, padded with PAD at the end."""
    src, tgt = zip(*pairs, strict=True)
    return (
        torch.nn.utils.rnn.pad_sequence(list(src), batch_first=True, padding_value=PAD),
        torch.nn.utils.rnn.pad_sequence(list(tgt), batch_first=True, padding_value=PAD),
    )


WMT16 = spec()
