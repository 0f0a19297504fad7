"""BERT workloads (pytest_mlperf/workloads/bert.py): the cpu presets learn their synthetic tasks in fp32 and bf16,
and the real presets build the published model sizes."""

from __future__ import annotations

import math

import pytest
import torch

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.quality import converge
from pytest_mlperf.workloads import bert
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
BATCH = 16
NAMES = ("bert_base", "bert_large", "bert_base_squad", "bert_large_squad")


REAL_TARGETS = {
    "bert_base": 0.712,  # MLPerf training BERT: masked-LM accuracy
    "bert_large": 0.712,
    "bert_base_squad": 88.5,  # Google's SQuAD v1.1 dev F1 for BERT-Base (paper Table 2, google-research/bert README)
    "bert_large_squad": 90.5,  # google-research/bert README: "around 90.5%-91.0% F1" for BERT-Large
}


def trainer(name: str, precision: str = "fp32"):
    workload = get(name)
    torch.manual_seed(0)
    return workload.build(Setup(workload.presets["cpu"], BATCH, CPU, resolve(precision, CPU)))


@pytest.mark.parametrize("name", NAMES)
def test_registered(name: str) -> None:
    workload = get(name)
    assert (workload.family, workload.task, workload.unit) == ("bert", "training", "seq/s")
    assert workload.presets["real"]["seq_len"] == (384 if name.endswith("_squad") else 128)
    assert workload.quality.real_target == REAL_TARGETS[name]


def converge_recording(name: str, precision: str):
    """Converge from step 0, recording the loss of every step the quality loop takes."""
    t = trainer(name, precision)
    losses: list[float] = []
    step = t.step

    def recorded() -> torch.Tensor:
        loss = step()
        losses.append(float(loss))
        return loss

    t.step = recorded  # type: ignore[method-assign]
    return t, losses


@pytest.mark.parametrize("name", NAMES)
def test_cpu_preset_learns_in_fp32(name: str) -> None:
    workload = get(name)
    t, losses = converge_recording(name, "fp32")
    assert t.items_per_step == BATCH  # seq/s: one sequence (sentence pair / question+context window) per sample
    start = t.evaluate()
    assert not workload.quality.reached(start), f"{name}: the target is reached before training ({start})"
    result = converge(t, workload.quality, 0)
    assert result.reached, f"{name}: {result.metric} {result.value} after {result.steps} steps"
    assert result.steps == len(losses) > 0
    assert all(math.isfinite(loss) for loss in losses), losses
    assert losses[-1] < 0.5 * losses[0], losses


# bf16 autocast is several times slower than fp32 on this CPU (no AVX-512 bf16), so only the base models run here;
# bert_large and bert_large_squad run the same code with one more layer in their cpu presets.
@pytest.mark.parametrize("name", ["bert_base", "bert_base_squad"])
def test_cpu_preset_learns_in_bf16(name: str) -> None:
    workload = get(name)
    t, losses = converge_recording(name, "bf16")
    assert not workload.quality.reached(t.evaluate())
    result = converge(t, workload.quality, 0)
    assert result.reached, f"{name}: {result.metric} {result.value} after {result.steps} steps"
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < 0.5 * losses[0], losses


# Published sizes: google-research/bert README, "BERT-Base, Uncased: 12-layer, 768-hidden, 12-heads, 110M
# parameters" and "BERT-Large, Uncased: 24-layer, 1024-hidden, 16-heads, 340M parameters" (rounded figures: the
# checkpoints hold 110.1M and 335.1M with the pre-training heads).
@pytest.mark.parametrize(
    ("name", "model", "published"),
    [
        ("bert_base", bert.BertPretraining, 110e6),
        ("bert_large", bert.BertPretraining, 340e6),
        ("bert_base_squad", bert.BertSpan, 110e6),
        ("bert_large_squad", bert.BertSpan, 340e6),
    ],
)
def test_real_preset_has_published_size(name: str, model: type, published: float) -> None:
    preset = get(name).presets["real"]
    with torch.device("meta"):
        m = model(preset)
    params = sum(p.numel() for p in m.parameters())
    assert abs(params - published) / published < 0.03, f"{name}: {params / 1e6:.1f}M parameters"
    encoder = m.encoder
    assert encoder.embeddings.word.num_embeddings == 30522
    assert encoder.embeddings.position.num_embeddings == 512
    expected = (768, 12, 12, 3072) if "base" in name else (1024, 24, 16, 4096)
    layer = encoder.layers[0]
    assert (encoder.embeddings.word.embedding_dim, len(encoder.layers), layer.heads, layer.fc1.out_features) == expected


def test_masked_lm_decoder_is_tied_to_word_embeddings() -> None:
    m = bert.BertPretraining(get("bert_base").presets["cpu"])
    word = m.encoder.embeddings.word.weight
    # no separate decoder matrix: the only [vocab, hidden] parameter is the word embedding
    assert [name for name, p in m.named_parameters() if p.shape == word.shape] == ["encoder.embeddings.word.weight"]
    tokens = torch.full((1, 8), bert.FIRST_WORD)
    mlm, nsp = m(tokens, torch.zeros_like(tokens), torch.tensor([[1, 2]]))
    mlm.sum().backward()
    assert word.grad is not None and word.grad.abs().sum() > 0
    assert mlm.shape == (1, 2, word.shape[0]) and nsp.shape == (1, 2)


@pytest.mark.parametrize("preset", ["cpu", "real"])
def test_pretraining_data_follows_its_grammar(preset: str) -> None:
    p = get("bert_base").presets[preset]
    ((tokens, segments, masked), (labels, not_next)) = bert.pretraining_batches(p, 64, 1, CPU)[0]
    length, first = p["seq_len"], (p["seq_len"] - 3) // 2
    assert tokens.shape == segments.shape == (64, length) and masked.shape == labels.shape == (64, p["predictions"])
    assert (tokens[:, 0] == bert.CLS).all() and (tokens[:, first + 1] == bert.SEP).all()
    assert ((masked > 0) & (masked != first + 1) & (masked < length - 1)).all()  # no special token is masked
    assert (labels >= bert.FIRST_WORD).all() and set(not_next.tolist()) == {0, 1}
    assert (tokens.gather(1, masked) == bert.MASK).float().mean() > 0.6  # 80% [MASK], 10% random, 10% kept
    # with the labels put back, each sentence repeats its topic's motif, and B continues A's exactly when IsNext
    text = tokens.scatter(1, masked, labels)
    a, b, period = text[:, 1 : first + 1], text[:, first + 2 : length - 1], p["period"]
    assert (a[:, period:] == a[:, :-period]).all() and (b[:, period:] == b[:, :-period]).all()
    continues = (b[:, :period] == a[:, [(first + j) % period for j in range(period)]]).all(1)
    assert (continues == (not_next == 0)).all()


@pytest.mark.parametrize("preset", ["cpu", "real"])
def test_span_data_marks_the_answer(preset: str) -> None:
    p = get("bert_base_squad").presets[preset]
    ((tokens, segments), (start, end)) = bert.span_batches(p, 64, 1, CPU)[0]
    rows = torch.arange(64)
    assert (tokens[rows, start] == bert.ANSWER_START).all() and (tokens[rows, end] == bert.ANSWER_END).all()
    assert (start >= p["question_len"] + 2).all() and (end < p["seq_len"] - 1).all()
    assert ((end - start + 1 >= 2) & (end - start + 1 <= p["max_answer"])).all()
    assert (segments[rows, start] == 1).all()


@pytest.mark.parametrize("batch", [2, 320])
def test_squad_pool_and_held_out_do_not_shrink_with_the_batch(batch: int) -> None:
    """At Lambda's smallest and largest SQuAD batches: 256 or more training and 128 or more held-out sequences, whose
    answers start at most of the context's positions."""
    p = get("bert_base_squad").presets["real"]
    pool, held_out = bert.squad_data(p, batch, CPU)
    starts = torch.cat([start for _, (start, _) in pool])
    assert len(starts) >= 256 and sum(len(start) for _, (start, _) in held_out) >= 128
    assert len(starts.unique()) > 0.5 * min(len(starts), p["seq_len"] - p["question_len"] - 3)


@pytest.mark.parametrize("reduced", [False, True])
def test_no_constant_answer_reaches_the_squad_target(reduced: bool) -> None:
    """The best fixed span scores far below the target on the held-out set, in the real preset (about 10) and in the
    walk's (about 65: 16-token windows leave answers little room to move)."""
    workload = get("bert_base_squad")
    p = workload.reduced("real") if reduced else workload.presets["real"]
    _, held_out = bert.squad_data(p, 64, CPU)
    true_start, true_end = (torch.cat(t) for t in zip(*(targets for _, targets in held_out), strict=True))
    first, length = p["question_len"] + 2, p["seq_len"]
    best = max(
        float(bert.span_f1(torch.tensor(s), torch.tensor(e), true_start, true_end).mean())
        for s in range(first, length - 1)
        for e in range(s, min(s + p["max_answer"], length - 1))
    )
    assert 100 * best < workload.quality.target - 25


def test_squad_cpu_held_out_is_two_batches() -> None:
    """Serving sizes its held-out samples by the batch it builds the trainer at (run/serving.py's `_held_out`)."""
    for batch in (16, 128):
        pool, held_out = bert.squad_data(get("bert_base_squad").presets["cpu"], batch, CPU)
        assert (len(pool), len(held_out)) == (32, 2)


def test_span_f1_and_best_span() -> None:
    f1 = bert.span_f1(
        torch.tensor([3, 3, 0]), torch.tensor([5, 4, 1]), torch.tensor([3, 4, 3]), torch.tensor([5, 5, 5])
    )
    assert f1.tolist() == pytest.approx([1.0, 2 * 0.5 * 0.5 / (0.5 + 0.5), 0.0])
    logits = torch.zeros(1, 10, 2)
    logits[0, 1, 0] = logits[0, 9, 1] = 9.0  # best start in the question, best end too far away
    logits[0, 4, 0], logits[0, 6, 1] = 5.0, 4.0
    start, end = bert.best_spans(logits, first=3, longest=4)
    assert (int(start), int(end)) == (4, 6)
