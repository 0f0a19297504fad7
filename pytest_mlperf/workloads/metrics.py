"""Quality metrics shared by workloads, computed on held-out batches (model already in eval mode, no grad).

Each reduces on the device and synchronises once, at the end."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.wmt16 import PAD
from ..run.training import Batch, forward
from .registry import Serving

#: A classifier served to LoadGen: each answer is the top-1 class id (int32), as MLPerf's ResNet-50 accuracy log.
CLASSIFICATION = Serving(
    "top-1 accuracy",
    answer=lambda logits, _: logits.argmax(-1),
    score=lambda answers, labels: float((answers == labels.cpu().numpy()).mean()),
)


def top1(model: nn.Module, batches: Sequence[Batch]) -> float:
    """Fraction of samples whose highest logit is the label."""
    correct = total = 0
    for inputs, labels in batches:
        logits = forward(model, inputs)
        correct += int((logits.argmax(-1) == labels).sum())
        total += labels.numel()
    return correct / total


def mse(model: nn.Module, batches: Sequence[Batch]) -> float:
    """Mean squared error of the model's outputs over all held-out targets, in float32."""
    total = torch.zeros((), device=batches[0][1].device)
    count = 0
    for inputs, targets in batches:
        total += F.mse_loss(forward(model, inputs).float(), targets.float(), reduction="sum")
        count += targets.numel()
    return float(total) / count


def token_accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Fraction of non-padding labels that are the argmax of their logits, as a 0-d tensor (no host sync)."""
    real = labels != PAD
    return ((logits.argmax(-1) == labels) & real).sum() / real.sum()


def teacher_forced_accuracy(model: nn.Module, batches: Iterable[Batch]) -> float:
    """Mean token accuracy of a seq2seq model's argmax over ((source, decoder input), labels) batches. (BLEU, the
    real metric, needs beam search and a detokeniser; this one tells whether the model learnt the synthetic mapping.)"""
    return float(torch.stack([token_accuracy(forward(model, inputs), labels) for inputs, labels in batches]).mean())


#: Candidates ranked per evaluated user: the held-out positive and 99 negatives, as in MLPerf's NCF.
CANDIDATES = 100


def hit_rate(model: nn.Module, batches: Sequence[Batch], k: int = 10, candidates: int = CANDIDATES) -> float:
    """HR@k: the fraction of users whose positive (label 1 among `candidates` per user) ranks in the top k.

    Ties are broken at random in expectation: with g candidates scoring higher and t tying with the positive, it
    lands in the top k with probability clamp((k - g) / (t + 1), 0, 1). A constant model thus scores k / candidates
    (0.1), not 0 or 1, and low-precision scores that collide are judged fairly."""
    hits: list[Tensor] = []
    for inputs, labels in batches:
        scores = forward(model, inputs).float().view(-1, candidates)
        positive = scores.gather(1, labels.view(-1, candidates).argmax(1, keepdim=True))
        greater = (scores > positive).sum(1)
        ties = (scores == positive).sum(1) - 1
        hits.append(((k - greater) / (ties + 1)).clamp(0, 1).double())
    return float(torch.cat(hits).mean())


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Exact area under the ROC curve (as sklearn's roc_auc_score): the Mann-Whitney U statistic from ranks, tied
    scores sharing their average rank. Fully vectorised; nan when only one class is present."""
    scores, positive = scores.flatten().double(), labels.flatten() > 0.5
    ordered, order = scores.sort()
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    counts = counts.double()
    ranks = (counts.cumsum(0) - (counts - 1) / 2)[group]  # 1-based average rank of each sorted score
    positive = positive[order]
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


#: A click-through-rate model served to LoadGen: each answer is the click probability (float32, as MLPerf's DLRM
#: accuracy log holds per-sample predictions), scored with ROC AUC against the clicks.
CLICKS = Serving(
    "ROC AUC",
    answer=lambda logits, _: torch.sigmoid(logits.float()),
    score=lambda answers, clicks: roc_auc(torch.tensor(answers), clicks.cpu()),
    dtype=torch.float32,
)


def auc(model: nn.Module, batches: Sequence[Batch]) -> float:
    """ROC AUC of the model's scores over all held-out batches (ranking by logit = ranking by probability)."""
    scores = torch.cat([forward(model, inputs).float() for inputs, _ in batches])
    return roc_auc(scores, torch.cat([labels for _, labels in batches]))
