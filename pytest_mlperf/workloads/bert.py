"""BERT pre-training (masked LM + next-sentence prediction) and SQuAD-style span fine-tuning, base and large.

Our own model code, in plain PyTorch, following Google's reference implementation (google-research/bert,
modeling.py) and NVIDIA's DeepLearningExamples PyTorch port: word + position + token-type embeddings, post-LayerNorm
encoder layers of multi-head self-attention (here through `scaled_dot_product_attention`, which picks the flash or
memory-efficient kernel where the device has one) and an erf-GELU feed-forward block, a masked-LM head whose decoder
is tied to the word embeddings, a tanh pooler with the next-sentence classifier, and a start/end span head for SQuAD.

Sizes (Devlin et al. 2018, "BERT: Pre-training of Deep Bidirectional Transformers", section 3, and the released
uncased checkpoints' bert_config.json): BERT-Base L=12, H=768, A=12, feed-forward 3072, 110M parameters; BERT-Large
L=24, H=1024, A=16, feed-forward 4096, 340M parameters; WordPiece vocabulary 30522 (uncased), 512 positions, 2 token
types. The published parameter counts are rounded: the encoders here have 108.9M and 334.1M parameters, 110.1M and
336.2M with the pre-training heads (pooler, NSP classifier, masked-LM transform and bias), as Google's checkpoints
and Hugging Face's BertForPreTraining.

Throughput is in sequences per second, as Lambda's deeplearning-benchmark and NVIDIA's scripts report BERT. Lambda's
BERT-base/BERT-large columns are NVIDIA's SQuAD v1.1 fine-tuning script (run_squad.py, max_seq_length 384), so
their baselines belong to `bert_base_squad`/`bert_large_squad`; MLPerf's and NVIDIA's pre-training numbers belong to
`bert_base`/`bert_large` (phase 1: sequence length 128, at most 20 masked positions per sequence).

The data is synthetic but learnable, in the real shapes (see `pretraining_batches` and `span_batches`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..run.training import Batch, Supervised, scheduled
from .registry import Preset, Quality, Serving, Setup, Workload, register

# Token ids of the synthetic vocabulary. The real uncased vocabulary has [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102,
# [MASK]=103; which ids the special tokens get changes nothing in cost, so ours are packed at the start.
PAD, CLS, SEP, MASK, ANSWER_START, ANSWER_END = range(6)
FIRST_WORD = 6  #: ids below are special tokens; the synthetic "words" are FIRST_WORD .. vocab_size - 1


# ----------------------------------------------------------------------------------------------------- the model


class Embeddings(nn.Module):
    def __init__(self, vocab_size: int, hidden: int, max_position: int, type_vocab: int, dropout: float) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab_size, hidden)
        self.position = nn.Embedding(max_position, hidden)
        self.token_type = nn.Embedding(type_vocab, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: Tensor, segments: Tensor) -> Tensor:
        positions = self.position.weight[: tokens.shape[1]]
        return self.dropout(self.norm(self.word(tokens) + positions + self.token_type(segments)))


class Layer(nn.Module):
    """One post-LayerNorm transformer encoder layer, as in BERT (LayerNorm after each residual sum)."""

    def __init__(self, hidden: int, heads: int, intermediate: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)  # the query, key and value projections fused in one matmul
        self.out = nn.Linear(hidden, hidden)
        self.norm1 = nn.LayerNorm(hidden, eps=1e-12)
        self.fc1 = nn.Linear(hidden, intermediate)
        self.fc2 = nn.Linear(intermediate, hidden)
        self.norm2 = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        batch, length, hidden = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        a = a.transpose(1, 2).reshape(batch, length, hidden)
        x = self.norm1(x + F.dropout(self.out(a), p, self.training))
        return self.norm2(x + F.dropout(self.fc2(F.gelu(self.fc1(x))), p, self.training))


class Encoder(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        hidden: int,
        layers: int,
        heads: int,
        intermediate: int,
        max_position: int = 512,
        type_vocab: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.embeddings = Embeddings(vocab_size, hidden, max_position, type_vocab, dropout)
        self.layers = nn.ModuleList(Layer(hidden, heads, intermediate, dropout) for _ in range(layers))

    def forward(self, tokens: Tensor, segments: Tensor, padding: Tensor | None = None) -> Tensor:
        """Hidden states [batch, length, hidden]; `padding` (bool [batch, length], True at [PAD]) masks keys."""
        mask = None if padding is None else ~padding[:, None, None, :]
        x = self.embeddings(tokens, segments)
        for layer in self.layers:
            x = layer(x, mask)
        return x


def init_bert(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: weights from a normal with std `initializer_range` (0.02), zero biases, unit
    LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def encoder(p: Preset) -> Encoder:
    return Encoder(
        p["vocab_size"], p["hidden"], p["layers"], p["heads"], p["intermediate"], p["max_position"], 2, p["dropout"]
    )


class BertPretraining(nn.Module):
    """Encoder + masked-LM head (dense, GELU, LayerNorm, decoder tied to the word embeddings) + pooler and NSP."""

    def __init__(self, p: Preset) -> None:
        super().__init__()
        hidden = p["hidden"]
        self.encoder = encoder(p)
        self.transform = nn.Linear(hidden, hidden)
        self.transform_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.decoder_bias = nn.Parameter(torch.zeros(p["vocab_size"]))
        self.pooler = nn.Linear(hidden, hidden)
        self.next_sentence = nn.Linear(hidden, 2)
        init_bert(self, p["init"])

    def forward(self, tokens: Tensor, segments: Tensor, masked: Tensor) -> tuple[Tensor, Tensor]:
        """(masked-LM logits [batch, predictions, vocab] at the `masked` positions, NSP logits [batch, 2]).

        As NVIDIA's implementation, the vocabulary projection runs only at the masked positions (gathered with a
        fixed count per sequence, so without a host sync), not at all `length` positions."""
        h = self.encoder(tokens, segments)
        picked = h.gather(1, masked.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
        picked = self.transform_norm(F.gelu(self.transform(picked)))
        mlm = F.linear(picked, self.encoder.embeddings.word.weight, self.decoder_bias)
        nsp = self.next_sentence(torch.tanh(self.pooler(h[:, 0])))
        return mlm, nsp


class BertSpan(nn.Module):
    """Encoder + SQuAD head: one linear layer giving each position a start and an end logit."""

    def __init__(self, p: Preset) -> None:
        super().__init__()
        self.encoder = encoder(p)
        self.span = nn.Linear(p["hidden"], 2)
        init_bert(self, p["init"])

    def forward(self, tokens: Tensor, segments: Tensor) -> Tensor:
        """Start and end logits, [batch, length, 2]."""
        return self.span(self.encoder(tokens, segments))


# ------------------------------------------------------------------------------------------ learnable synthetic data


def pretraining_batches(p: Preset, batch_size: int, count: int, device: torch.device, seed: int = 0) -> list[Batch]:
    """`count` pre-training batches: ((tokens, segments, masked positions), (masked-LM labels, NSP labels)).

    A small deterministic grammar: each of `topics` topics is a motif of `period` random words, and its document
    repeats the motif. Sentence A is the beginning of a topic's document; sentence B its continuation (IsNext, NSP
    label 0) or, for half of the pairs, the continuation of another topic's document (NotNext, label 1), so the NSP
    label is a deterministic property of the text. A masked word is predictable from its context: the unmasked words
    of its sentence tell the topic, and its position which word of the motif is missing (the same word recurs
    `period` positions away). Input: [CLS] A [SEP] B [SEP], token types 0 for [CLS] A [SEP] and 1 for B [SEP].
    Masking as BERT's: `predictions` positions per sequence (15%, at most 20 at length 128) chosen among the words;
    80% of them replaced by [MASK], 10% by a random word, 10% left unchanged.
    """
    length, predictions, topics, vocab = p["seq_len"], p["predictions"], p["topics"], p["vocab_size"]
    first = (length - 3) // 2
    g = torch.Generator(device=device).manual_seed(seed)
    motifs = torch.randint(FIRST_WORD, vocab, (topics, p["period"]), generator=g, device=device)
    documents = motifs[:, torch.arange(length - 3, device=device) % p["period"]]
    special = torch.zeros(length, dtype=torch.bool, device=device)
    special[[0, first + 1, length - 1]] = True
    segments = (torch.arange(length, device=device) > first + 1).long().expand(batch_size, length)
    cls = torch.full((batch_size, 1), CLS, device=device)
    sep = torch.full((batch_size, 1), SEP, device=device)
    batches: list[Batch] = []
    for _ in range(count):
        topic = torch.randint(topics, (batch_size,), generator=g, device=device)
        not_next = torch.randint(2, (batch_size,), generator=g, device=device)
        other = (topic + not_next * torch.randint(1, topics, (batch_size,), generator=g, device=device)) % topics
        tokens = torch.cat([cls, documents[topic, :first], sep, documents[other, first:], sep], dim=1)
        # the masked positions: the `predictions` highest of random scores, special tokens excluded
        scores = torch.rand(batch_size, length, generator=g, device=device).masked_fill(special, -1.0)
        masked = scores.topk(predictions, dim=1).indices
        labels = tokens.gather(1, masked)
        choice = torch.rand(batch_size, predictions, generator=g, device=device)
        random_word = torch.randint(FIRST_WORD, vocab, (batch_size, predictions), generator=g, device=device)
        replaced = torch.where(choice < 0.8, MASK, torch.where(choice < 0.9, random_word, labels))
        tokens = tokens.scatter(1, masked, replaced)
        batches.append(((tokens, segments, masked), (labels, not_next)))
    return batches


def span_batches(p: Preset, batch_size: int, count: int, device: torch.device, seed: int = 0) -> list[Batch]:
    """`count` SQuAD-shaped batches: ((tokens, segments), (start, end)).

    [CLS] question [SEP] context [SEP] of random words, with token types 0 for [CLS] question [SEP] and 1 for the
    context. In the context, the answer (2 to `max_answer` tokens) begins with the special token ANSWER_START and
    ends with ANSWER_END, and the targets are those two markers' positions.
    """
    length, question, longest, vocab = p["seq_len"], p["question_len"], p["max_answer"], p["vocab_size"]
    context = length - question - 3
    g = torch.Generator(device=device).manual_seed(seed)
    positions = torch.arange(length, device=device)
    segments = (positions > question + 1).long().expand(batch_size, length)
    batches: list[Batch] = []
    for _ in range(count):
        tokens = torch.randint(FIRST_WORD, vocab, (batch_size, length), generator=g, device=device)
        tokens[:, 0], tokens[:, question + 1], tokens[:, -1] = CLS, SEP, SEP
        span = torch.randint(2, longest + 1, (batch_size,), generator=g, device=device)
        offset = (torch.rand(batch_size, generator=g, device=device) * (context - span + 1)).long()
        start = question + 2 + offset
        end = start + span - 1
        tokens = torch.where(positions == start[:, None], ANSWER_START, tokens)
        tokens = torch.where(positions == end[:, None], ANSWER_END, tokens)
        batches.append(((tokens, segments), (start, end)))
    return batches


# --------------------------------------------------------------------------------------------- losses and metrics


def pretraining_loss(outputs: tuple[Tensor, Tensor], targets: tuple[Tensor, Tensor]) -> Tensor:
    """Masked-LM cross-entropy plus next-sentence cross-entropy, as BERT's total pre-training loss."""
    (mlm, nsp), (labels, next_labels) = outputs, targets
    return F.cross_entropy(mlm.flatten(0, 1).float(), labels.flatten()) + F.cross_entropy(nsp.float(), next_labels)


def masked_lm_accuracy(model: nn.Module, batches: Sequence[Batch]) -> float:
    """Fraction of masked positions whose highest logit is the original word (MLPerf BERT's quality metric)."""
    correct = total = 0
    for inputs, (labels, _) in batches:
        mlm, _ = model(*inputs)
        correct += int((mlm.argmax(-1) == labels).sum())
        total += labels.numel()
    return correct / total


def span_loss(logits: Tensor, targets: tuple[Tensor, Tensor]) -> Tensor:
    """The mean of the start and end positions' cross-entropies, as run_squad.py."""
    start, end = targets
    logits = logits.float()
    return (F.cross_entropy(logits[..., 0], start) + F.cross_entropy(logits[..., 1], end)) / 2


def best_spans(logits: Tensor, first: int, longest: int) -> tuple[Tensor, Tensor]:
    """The highest-scoring span per sequence (start logit + end logit) with first <= start <= end < start + longest,
    as SQuAD's post-processing does (it keeps answers in the context and at most max_answer_length long)."""
    length = logits.shape[1]
    scores = logits[..., 0].unsqueeze(2) + logits[..., 1].unsqueeze(1)  # [batch, start, end]
    i = torch.arange(length, device=logits.device)
    allowed = (i[:, None] <= i[None, :]) & (i[None, :] < i[:, None] + longest) & (i[:, None] >= first)
    best = scores.float().masked_fill(~allowed, -math.inf).flatten(1).argmax(1)
    return best // length, best % length


def span_f1(start: Tensor, end: Tensor, true_start: Tensor, true_end: Tensor) -> Tensor:
    """SQuAD's F1 per sequence, on positions: the harmonic mean of the overlap's share of each span."""
    overlap = (torch.minimum(end, true_end) - torch.maximum(start, true_start) + 1).clamp(min=0).float()
    precision = overlap / (end - start + 1).float()
    recall = overlap / (true_end - true_start + 1).float()
    return torch.where(overlap > 0, 2 * precision * recall / (precision + recall), 0.0)


def _answer_spans(logits: Tensor, p: Preset) -> Tensor:
    return torch.stack(best_spans(logits, p["question_len"] + 2, p["max_answer"]), -1)


def _span_score(answers: np.ndarray, targets: tuple[Tensor, Tensor]) -> float:
    spans = torch.from_numpy(answers).long()
    return 100 * float(span_f1(spans[:, 0], spans[:, 1], targets[0].cpu(), targets[1].cpu()).mean())


#: SQuAD served to LoadGen: each answer is the (start, end) token positions of the best span, scored with SQuAD's F1
#: in percent (MLPerf's BERT accuracy log holds the start/end logits; positions are what the F1 needs of them).
SPANS = Serving("F1 (%)", answer=_answer_spans, score=_span_score)


def span_metric(first: int, longest: int):
    def metric(model: nn.Module, batches: Sequence[Batch]) -> float:
        """SQuAD v1.1's F1 in percent, averaged over the held-out sequences."""
        scores = []
        for inputs, (true_start, true_end) in batches:
            start, end = best_spans(model(*inputs), first, longest)
            scores.append(span_f1(start, end, true_start, true_end))
        return 100 * float(torch.cat(scores).mean())

    return metric


# ---------------------------------------------------------------------------------------------------- trainers


def adamw(p: Preset):
    """Adam with decoupled weight decay 0.01 and BERT's schedule (linear warm-up over `warmup` steps, then linear
    decay to zero at `decay` steps), as Google's reference; fused into one kernel. (NVIDIA's pre-training uses LAMB,
    which PyTorch does not ship and which costs about the same per step.)"""

    def make(model: nn.Module) -> torch.optim.Optimizer:
        warmup, decay = p["warmup"], p["decay"]
        return scheduled(
            torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=0.01, fused=True),
            lambda step: min((step + 1) / warmup, max(0.0, (decay - step) / (decay - warmup))),
        )

    return make


def build_pretraining(setup: Setup) -> Supervised:
    p, batch = setup.preset, setup.batch_size
    batches = pretraining_batches(p, batch, p["batches"] + 2, setup.device)
    return Supervised(
        setup,
        BertPretraining(p),
        batches[:-2],
        loss=pretraining_loss,
        optimizer=adamw(p),
        metric=masked_lm_accuracy,
        held_out=batches[-2:],  # the same grammar; other sentence pairs and masked positions
        # seq/s counts whole sequences (sentence pairs), as NVIDIA's run_pretraining.py and MLPerf report it: one
        # per sample of the per-device batch, whatever its length
    )


def squad_data(p: Preset, batch: int, device: torch.device) -> tuple[list[Batch], list[Batch]]:
    """(the pool: `batches` batches or more, `pool` sequences or more; the held-out batches: two or more, `held_out`
    sequences or more) of `span_batches`. The held-out set grows with the batch, as serving needs (run/serving.py)."""
    held = max(2, math.ceil(p["held_out"] / batch))
    batches = span_batches(p, batch, max(p["batches"], math.ceil(p["pool"] / batch)) + held, device)
    return batches[:-held], batches[-held:]


def build_span(setup: Setup) -> Supervised:
    p = setup.preset
    pool, held_out = squad_data(p, setup.batch_size, setup.device)
    return Supervised(
        setup,
        BertSpan(p),
        pool,
        loss=span_loss,
        optimizer=adamw(p),
        metric=span_metric(first=p["question_len"] + 2, longest=p["max_answer"]),
        held_out=held_out,  # other questions, contexts and answers
        # seq/s counts 384-token question+context windows, as run_squad.py's "training_sequences_per_second" (the
        # figure Lambda's BERT columns report): one per sample of the per-device batch
    )


# The published architectures (Devlin et al. 2018; the released uncased checkpoints' bert_config.json): vocabulary
# 30522, 512 positions, dropout 0.1 (hidden and attention), initializer_range 0.02.
BASE = {
    "vocab_size": 30522,
    "hidden": 768,
    "layers": 12,
    "heads": 12,
    "intermediate": 3072,
    "max_position": 512,
    "dropout": 0.1,
    "init": 0.02,
}
LARGE = {**BASE, "hidden": 1024, "layers": 24, "heads": 16, "intermediate": 4096}
# Phase 1 of pre-training as NVIDIA's DeepLearningExamples and MLPerf's reference run it: sequence length 128 with at
# most 20 masked positions (BERT's max_predictions_per_seq, 15% of 128 rounded up). The optimizer settings are ours:
# Google pre-trains with Adam at 1e-4 after 10,000 warm-up steps of 1M, but these models start from scratch and must
# learn the synthetic grammar within Quality.max_steps, so they warm up for 20 steps to a RoBERTa-like peak of 4e-4
# (at 1e-4 a 4-layer, 256-wide stand-in had 0.07 masked-LM accuracy after 100 steps; at 5e-4 it reached 0.99 by 80).
PRETRAIN = {
    "seq_len": 128,
    "predictions": 20,
    "topics": 8,
    "period": 4,
    "lr": 4e-4,
    "warmup": 20,
    "decay": 10000,
    "batches": 8,
}
# SQuAD v1.1 fine-tuning as run_squad.py (Google's and NVIDIA's): max_seq_length 384, max_query_length 64,
# max_answer_length 30, learning rate 5e-5 (the README's BERT-Base setting), here from scratch. The pool holds 256
# sequences or more (8 batches at the larger batches), so that even at batch 2 the answers' positions and lengths
# vary far more than a model could learn by heart; 128 or more held-out sequences make the F1 a mean over enough
# answers to tell 95 from 90.
SQUAD = {
    "seq_len": 384,
    "question_len": 64,
    "max_answer": 30,
    "lr": 5e-5,
    "warmup": 20,
    "decay": 10000,
    "batches": 8,
    "pool": 256,
    "held_out": 128,
}
# The cpu presets: the same model shrunk (2 layers for base, 3 for large; width 64, 4 heads, vocabulary 128, sequence
# length 32 or 48) so that a step takes tens of milliseconds on a 2-core CPU. No dropout, and a wider initializer
# range, so that the few steps allowed suffice.
TINY = {
    "vocab_size": 128,
    "hidden": 64,
    "heads": 4,
    "intermediate": 256,
    "max_position": 64,
    "dropout": 0.0,
    "init": 0.1,
}
CPU_PRETRAIN = {
    "seq_len": 32,
    "predictions": 5,  # 15% of the 29 words
    "topics": 4,
    "period": 3,
    "lr": 5e-3,
    "warmup": 10,
    "decay": 1000,
    "batches": 32,
}
# Pool and held-out set: `batches` and two batches, whatever their sizes.
CPU_SQUAD = {
    "seq_len": 48,
    "question_len": 8,
    "max_answer": 4,
    "lr": 5e-3,
    "warmup": 10,
    "decay": 1000,
    "batches": 32,
    "pool": 0,
    "held_out": 0,
}

#: What `tests/test_quality_reach.py` changes to train the real SQuAD presets on a CPU: one layer, 64 wide (one head
#: of the real head width), 16-token windows with a 2-token question and answers of 2 to 8 tokens (the context's 11
#: positions hold them). The narrow model makes the target slower to reach, the short window (fewer distractors)
#: faster; the walk needs 70-140 steps. Checked by hand on this CPU (fp32, batch 2): the real base and large models
#: (12 and 24 layers, 768 and 1024 wide) on 128-token windows with the real 64-token questions and answers of up
#: to 30 tokens reached F1 100 by step 10, where the walk takes 90; the walk's model on the real 384-token windows
#: took 130 steps at batch 10, against 90 on 16-token ones.
SQUAD_REDUCTIONS = {
    "hidden": 64,
    "heads": 1,
    "intermediate": 256,
    "layers": 1,
    "seq_len": 16,
    "question_len": 2,
    "max_answer": 8,
}

for size, real, layers in (("base", BASE, 2), ("large", LARGE, 3)):
    register(
        Workload(
            name=f"bert_{size}",
            family="bert",
            task="training",
            unit="seq/s",
            description=f"BERT-{size.title()} pre-training (masked LM + next sentence, sequence length 128), AdamW, "
            "synthetic text from a small grammar",
            presets={"real": {**real, **PRETRAIN}, "cpu": {**TINY, "layers": layers, **CPU_PRETRAIN}},
            build=build_pretraining,
            # MLPerf training's BERT target: 0.712 masked-LM accuracy on its Wikipedia evaluation set (MLPerf trains
            # BERT-Large at sequence length 512 from a phase-1 checkpoint; the same published figure serves both sizes)
            quality=Quality("masked-LM accuracy", target=0.9, max_steps=200, real_target=0.712),
        )
    )
    register(
        Workload(
            name=f"bert_{size}_squad",
            family="bert",
            task="training",
            unit="seq/s",
            description=f"BERT-{size.title()} SQuAD v1.1 fine-tuning (span start/end, sequence length 384), AdamW, "
            "synthetic marked answers",
            presets={"real": {**real, **SQUAD}, "cpu": {**TINY, "layers": layers, **CPU_SQUAD}},
            build=build_span,
            reductions=SQUAD_REDUCTIONS,
            # Google's SQuAD v1.1 dev F1: 88.5 for BERT-Base (the paper, Table 2, and google-research/bert's README),
            # 90.5-91.0 for BERT-Large with the README's hyper-parameters (the lower end here)
            quality=Quality(
                # 95: the answer found to within a token or two nearly every time; an untrained model scores 3-50,
                # depending on the window (a long guessed span overlaps a short one in part). The cpu presets reach it
                # in 10 steps, the walk of the real ones (SQUAD_REDUCTIONS) in 70-140: the budget leaves it room.
                "span F1 (SQuAD v1.1, %)",
                target=95.0,
                max_steps=300,
                eval_every=10,
                real_target=88.5 if size == "base" else 90.5,
            ),
            serving=SPANS,
        )
    )
