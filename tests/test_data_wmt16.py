"""WMT16 En-De as NVIDIA's GNMT scripts leave it: the vocabulary, tokenised BPE text, lazy ids, length filtering,
padding, and the bucketing and max-tokens batch samplers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pytest_mlperf.data import DatasetError, DatasetMissing, ParallelText, ensure, wmt16
from pytest_mlperf.data.batching import BucketBatchSampler, MaxTokensBatchSampler

VOCAB = ["the", "cat", "sat", "die", "Katze", "sa@@", "ß"]
PAIRS = [
    ("the cat sat", "die Katze sa@@ ß"),
    ("the cat", "die Katze"),
    ("the dog", "die Hund"),  # "dog" and "Hund" are not in the vocabulary
    ("the cat sat the cat sat the cat", "die Katze die Katze"),
]


def write_dataset(folder: Path, pairs: list[tuple[str, str]] = PAIRS, test_extra: int = 0) -> None:
    folder.mkdir(parents=True)
    (folder / wmt16.VOCAB).write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    for split in wmt16.SPLITS:
        src, tgt = wmt16.files(split)
        extra = [("the", "die")] * test_extra if split == "test" else []
        (folder / src).write_text("".join(f"{s}\n" for s, _ in pairs + extra), encoding="utf-8")
        (folder / tgt).write_text("".join(f"{t}\n" for _, t in pairs + extra), encoding="utf-8")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_dataset(tmp_path / "wmt16_de_en")
    prepared = ensure(wmt16.spec(test_sentences=len(PAIRS)), tmp_path)
    assert prepared.summary["train pairs"] == len(PAIRS) and prepared.summary["vocabulary"] == len(VOCAB)
    return prepared.root


def test_missing_dataset_names_nvidias_script(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissing, match=r"scripts/wmt16_en_de\.sh") as exc:
        ensure(wmt16.WMT16, tmp_path)
    assert f"{tmp_path / 'wmt16_de_en'}/" in str(exc.value) and "train.tok.clean.bpe.32000" in str(exc.value)


def test_newstest2014_count_checked(tmp_path: Path) -> None:
    write_dataset(tmp_path / "wmt16_de_en", test_extra=1)
    with pytest.raises(DatasetError, match=r"newstest2014\.tok\.bpe\.32000\.en: found 5, expected 4"):
        ensure(wmt16.spec(test_sentences=4), tmp_path)


def test_sides_must_match(tmp_path: Path) -> None:
    write_dataset(tmp_path / "wmt16_de_en")
    (tmp_path / "wmt16_de_en" / "newstest_dev.tok.clean.bpe.32000.de").write_text("die\n")
    with pytest.raises(DatasetError, match=r"lines of .*newstest_dev\.tok\.clean\.bpe\.32000\.de"):
        ensure(wmt16.spec(test_sentences=4), tmp_path)


def test_vocabulary_as_nvidia_builds_it(root: Path) -> None:
    vocab = wmt16.Vocabulary(root / wmt16.VOCAB)
    assert vocab.tokens[:4] == ["<pad>", "<unk>", "<s>", "<\\s>"] and len(vocab) == 16  # 11 padded to 8k
    assert vocab.tokens[4:11] == VOCAB and vocab.tokens[11] == "madeupword0000"
    assert vocab.encode("the Hund ß") == [4, wmt16.UNK, 10]


def test_pairs_end_in_eos_and_long_ones_are_dropped(root: Path) -> None:
    data = ParallelText(root, "train", max_length=8)  # the 8-word pair has 10 tokens with BOS and EOS
    assert len(data) == 3
    src, tgt = data[0]
    assert src.tolist() == [4, 5, 6, wmt16.EOS] and tgt.tolist() == [7, 8, 9, 10, wmt16.EOS]
    assert src.dtype == torch.int64
    assert data[2][0].tolist() == [4, wmt16.UNK, wmt16.EOS]
    assert data.lengths.tolist() == [5, 3, 3]
    assert len(ParallelText(root, "train", max_length=None)) == 4


def test_pad_batches_first(root: Path) -> None:
    data = ParallelText(root, "val")
    src, tgt = wmt16.pad([data[0], data[1]])
    assert src.shape == (2, 4) and tgt.shape == (2, 5)
    assert tgt[1].tolist() == [7, 8, wmt16.EOS, wmt16.PAD, wmt16.PAD]


def test_bucketing_sampler_groups_by_length() -> None:
    lengths = [3, 4, 48, 49, 5, 47, 2, 50, 45, 6]
    sampler = BucketBatchSampler(lengths, batch_size=2, max_length=50, buckets=5)
    batches = list(sampler)
    assert all(len(b) == 2 for b in batches)
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) < 10 for b in batches)
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen)) == 8  # the odd one of each 5-member bucket dropped
    assert list(sampler) == batches
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_max_tokens_sampler_respects_the_budget() -> None:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 40, (500,), generator=generator).tolist()
    sampler = MaxTokensBatchSampler(lengths, max_tokens=128)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert all(len(b) * max(lengths[i] for i in b) <= 128 for b in batches)
    assert len(batches) < 500 * 20 / 128 * 1.3  # little padding: about total tokens / budget batches
    with pytest.raises(ValueError, match="exceeds max_tokens"):
        MaxTokensBatchSampler([200], max_tokens=128)
