"""Batch samplers that group sequences of similar length, so that padding wastes little: GNMT's bucketing (a fixed
number of sentences per batch) and fairseq's max-tokens batching (Transformer: a budget of padded tokens per batch).
Both give lists of dataset indices (DataLoader's `batch_sampler`), reshuffled per epoch by `set_epoch`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class _Epochs(Sampler[list[int]]):
    def __init__(self, seed: int) -> None:
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def batches(self) -> list[np.ndarray]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        return (batch.tolist() for batch in self.batches())

    def __len__(self) -> int:
        return len(self.batches())


class BucketBatchSampler(_Epochs):
    """NVIDIA GNMT's BucketingSampler (seq2seq/data/sampler.py): pairs go to `buckets` buckets of width
    ceil(max_length / buckets) by the length of their longer side, each bucket is shuffled and cut into batches of
    `batch_size` (a last partial one dropped), and the batches of all buckets are shuffled together."""

    def __init__(
        self, lengths: Sequence[int], batch_size: int, max_length: int, buckets: int = 5, seed: int = 0
    ) -> None:
        super().__init__(seed)
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.bucket = np.minimum(self.lengths // -(-max_length // buckets), buckets - 1)

    def batches(self) -> list[np.ndarray]:
        rng = self._rng()
        out = []
        for b in np.unique(self.bucket):
            members = rng.permutation(np.flatnonzero(self.bucket == b))
            whole = len(members) // self.batch_size * self.batch_size
            out += list(members[:whole].reshape(-1, self.batch_size))
        return [out[i] for i in rng.permutation(len(out))]


class MaxTokensBatchSampler(_Epochs):
    """fairseq's batch_by_size: sequences sorted by length (ties in random order), cut greedily into batches whose
    padded size (sentences x longest) stays within `max_tokens`, the batches then shuffled."""

    def __init__(self, lengths: Sequence[int], max_tokens: int, seed: int = 0) -> None:
        super().__init__(seed)
        self.lengths = np.asarray(lengths)
        if self.lengths.max() > max_tokens:
            raise ValueError(f"a sequence of {self.lengths.max()} tokens exceeds max_tokens {max_tokens}")
        self.max_tokens = max_tokens

    def batches(self) -> list[np.ndarray]:
        rng = self._rng()
        shuffled = rng.permutation(len(self.lengths))
        order = shuffled[np.argsort(self.lengths[shuffled], kind="stable")]
        out, start, longest = [], 0, 0
        for i, index in enumerate(order):
            longest = max(longest, int(self.lengths[index]))
            if longest * (i + 1 - start) > self.max_tokens:
                out.append(order[start:i])
                start, longest = i, int(self.lengths[index])
        out.append(order[start:])
        return [out[i] for i in rng.permutation(len(out))]
