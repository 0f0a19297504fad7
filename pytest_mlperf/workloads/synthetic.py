"""Learnable synthetic data: the real shapes, with a signal a model can learn in a few steps, so that quality can
be asserted without downloading a dataset. Generated on the device with a seeded generator."""

from __future__ import annotations

import torch
from torch import Tensor

from ..data.wmt16 import EOS


def class_images(
    num_classes: int, size: int, batch_size: int, count: int, device: torch.device, seed: int = 0
) -> list[tuple[Tensor, Tensor]]:
    """`count` batches of images, each a fixed random pattern of its class plus as much Gaussian noise."""
    g = torch.Generator(device=device).manual_seed(seed)
    patterns = torch.randn(num_classes, 3, size, size, generator=g, device=device)
    batches = []
    for _ in range(count):
        labels = torch.randint(num_classes, (batch_size,), generator=g, device=device)
        noise = torch.randn(batch_size, 3, size, size, generator=g, device=device)
        batches.append((patterns[labels] + noise, labels))
    return batches


def markov_streams(vocab: int, streams: int, length: int, device: torch.device, generator: torch.Generator) -> Tensor:
    """(length, streams) tokens: each column a random walk of steps 1 or 2 along a permuted cycle of the
    vocabulary, so every token has exactly two equally likely successors (best perplexity 2). Vectorised: a
    cumulative sum, no loop over time. The permutation is drawn first, so walks from the same generator seed
    share it."""
    order = torch.randperm(vocab, generator=generator, device=device)
    start = torch.randint(vocab, (1, streams), generator=generator, device=device)
    steps = torch.randint(1, 3, (length, streams), generator=generator, device=device)
    return order[(start + steps.cumsum(0)) % vocab]


def reversal_pairs(
    vocab: int, length: int, batch_size: int, count: int, device: torch.device, seed: int = 0
) -> list[tuple[Tensor, Tensor]]:
    """`count` batches of (source, target), batch-first (batch, length + 1) token ids: a sentence of `length`
    ordinary tokens (ids from 4, after PAD/UNK/BOS/EOS) then EOS, and the same sentence reversed then EOS.

    The sentences are stretches of Markov text (`markov_streams`), so a decoder first learns the target side's
    language model, which predicts about half the tokens, then the alignment through attention, which predicts them
    all; an untrained model scores about 1/vocab. All batches share one chain, held-out ones included."""
    g = torch.Generator(device=device).manual_seed(seed)
    words = 4 + markov_streams(vocab - 4, batch_size * count, length, device, g).t()
    eos = torch.full((batch_size, 1), EOS, device=device)
    return [(torch.cat([w, eos], 1), torch.cat([w.flip(1), eos], 1)) for w in words.split(batch_size)]
