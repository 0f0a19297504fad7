"""transformer_xl_base / transformer_xl_large: registration, learning in fp32 and bf16, the synthetic text and its
target, the real (Lambda) and nvidia (DLE) presets' parameter counts and shapes, and the model's specific parts:
rel_shift, causality over memory and segment, the memory's content, the adaptive softmax's normalisation, the scores
the accuracy ranks, and weight tying."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_learns

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.quality import converge
from pytest_mlperf.run.training import seeded
from pytest_mlperf.workloads import transformer_xl as txl
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
BATCH = 16
NAMES = ["transformer_xl_base", "transformer_xl_large"]


def build(name: str, precision: str = "fp32", batch: int = BATCH) -> txl.TransformerXLTrainer:
    workload = get(name)
    return workload.build(Setup(workload.presets["cpu"], batch, CPU, resolve(precision, CPU)))


def cpu_model(name: str, **changes: object) -> txl.MemTransformerLM:
    return seeded(lambda: txl.MemTransformerLM({**get(name).presets["cpu"], **changes})).eval()


@pytest.mark.parametrize("name", NAMES)
def test_registered(name: str) -> None:
    workload = get(name)
    assert (workload.name, workload.family, workload.task, workload.unit) == (
        name,
        "transformer_xl",
        "training",
        "tok/s",
    )
    assert set(workload.presets) == {"real", "nvidia", "cpu"}
    assert workload.quality.metric == "held-out next-word accuracy" and workload.quality.higher_is_better
    assert workload.quality.real_target == {"transformer_xl_base": 23.24, "transformer_xl_large": 18.18}[name]


def test_segments_are_consecutive_and_items_are_target_tokens() -> None:
    trainer = build("transformer_xl_base", batch=4)
    tgt_len = get("transformer_xl_base").presets["cpu"]["tgt_len"]
    assert trainer.items_per_step == tgt_len * 4
    (x0, y0), (x1, _) = trainer.batches[:2]
    assert x0.shape == y0.shape == (tgt_len, 4)
    assert torch.equal(y0[:-1], x0[1:]) and torch.equal(x1[0], y0[-1])
    # The memory is primed from the segment before the pool, so even the first step attends over it.
    assert trainer.mems.shape == (2, tgt_len, 4, 32)
    # The held-out text continues the pool's walks: 512 tokens, 128 per stream.
    tokens, target = trainer.held_out
    assert tokens.shape == target.shape == (128, 4)
    assert torch.equal(tokens[0], trainer.batches[-1][1][-1]) and torch.equal(target[:-1], tokens[1:])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", [1, 104])
def test_the_real_texts_pool_covers_its_words_and_the_target_needs_the_chain(name: str, batch: int) -> None:
    """At Lambda's smallest and largest batches (the walk of tests/test_quality_reach.py trains these texts): the pool
    holds 2048 tokens or more, each of the 16 words' two successors seen 40 times or more; on the held-out text the
    best answer that ignores the previous word (the commonest word) scores far below the target, the best one that
    reads it (either successor) above it."""
    p = get(name).presets["real"]
    segments, (tokens, target) = txl.text(p, batch, CPU)
    pool = torch.stack([y for _, y in segments[1:]]).flatten(0, 1)  # (positions, batch) targets of the pool
    previous = torch.stack([x for x, _ in segments[1:]]).flatten(0, 1)
    assert pool.numel() >= 2048 and len(segments) - 1 >= 8
    words = pool.unique()
    assert len(words) == 16 and int(words.max()) < 267_735
    pairs = torch.stack([previous.flatten(), pool.flatten()], 1).unique(dim=0, return_counts=True)
    assert len(pairs[0]) == 32 and int(pairs[1].min()) >= 40
    assert tokens.numel() >= 512
    commonest = pool.flatten().mode().values
    threshold = get(name).quality.target
    assert float((target == commonest).float().mean()) < threshold / 3
    successor = dict(zip(*(t.tolist() for t in pairs[0].t()), strict=True))  # one of the two successors of each word
    best = torch.tensor([successor[int(w)] for w in tokens.flatten()]).view_as(target)
    assert float((best == target).float().mean()) > threshold


@pytest.mark.parametrize("name", NAMES)
def test_learns_in_fp32(name: str) -> None:
    assert_learns(build(name), get(name).quality)


@pytest.mark.parametrize("name", NAMES)
def test_learns_in_bf16(name: str) -> None:
    result = converge(build(name, "bf16", batch=8), get(name).quality, 0)
    assert result.reached, result


# Closed forms (tied output weights counted once; V = 267,735 words):
# base: embedding V*512 = 137,080,320; per layer qkv 512*1536 + r_net and o_net 2*512*512 + two LayerNorms 2048
#   + feed-forward 512*2048 + 2048 + 2048*512 + 512 = 3,412,480, x16 = 54,599,680; r_w_bias, r_r_bias 1,024;
#   output bias V. The adaptive softmax adds 3 cluster logits: 3*512 + 3 = 1,539.
# large: embedding V*1024 = 274,160,640; per layer 1024*3072 + 2*1024*1024 + 4096 + 1024*4096 + 4096 + 4096*1024
#   + 1024 = 13,640,704, x18 = 245,532,672; r biases 2,048; bias V. With div_val 4: embeddings 19997*1024
#   + 20000*256 + 160000*64 + 67738*16 = 36,920,736, their projections 1024*(1024+256+64+16) = 1,392,640, the head's
#   own projection 1024*1024, cluster logits 3*1024 + 3.
@pytest.mark.parametrize(
    ("name", "preset", "count"),
    [
        ("transformer_xl_base", "real", 191_948_759),
        ("transformer_xl_base", "nvidia", 191_950_298),
        ("transformer_xl_large", "real", 519_963_095),
        ("transformer_xl_large", "nvidia", 285_167_482),
    ],
)
def test_published_parameter_counts(name: str, preset: str, count: int) -> None:
    assert txl.parameter_count(get(name).presets[preset]) == count


@pytest.mark.parametrize(
    ("name", "tgt_len", "layers", "d_model"), [(NAMES[0], 192, 16, 512), (NAMES[1], 256, 18, 1024)]
)
def test_real_preset_shapes(name: str, tgt_len: int, layers: int, d_model: int) -> None:
    """Lambda's segment lengths, with memory, on the meta device (no memory or compute spent)."""
    preset = get(name).presets["real"]
    assert preset["tgt_len"] == preset["mem_len"] == tgt_len and preset["vocab"] == 267_735
    with torch.device("meta"):
        model = txl.MemTransformerLM(preset)
        tokens = torch.zeros(tgt_len, 1, dtype=torch.long)
        _, mems = model(tokens, tokens, None)
        nll, mems = model(tokens, tokens, mems)
    assert nll.shape == (tgt_len, 1) and nll.dtype == torch.float32
    assert mems.shape == (layers, tgt_len, 1, d_model)


def test_rel_shift_aligns_relative_distances() -> None:
    """Column c of the input scores distance klen-1-c; after the shift, query i meets key j at mlen + i - j."""
    qlen, klen = 3, 5
    x = torch.randn(2, 2, qlen, klen)
    shifted = txl.rel_shift(x)
    for i in range(qlen):
        for j in range(klen - qlen + i + 1):  # the keys query i may see
            distance = klen - qlen + i - j
            assert torch.equal(shifted[..., i, j], x[..., i, klen - 1 - distance])


@pytest.mark.parametrize("name", NAMES)
def test_attention_is_causal_over_memory_and_segment(name: str) -> None:
    model = cpu_model(name)
    g = torch.Generator().manual_seed(1)
    tokens, target = torch.randint(64, (2, 16, 3), generator=g)
    with torch.no_grad():
        _, mems = model(tokens, target, None)
        nll, _ = model(tokens, target, mems)
        later = tokens.clone()
        later[10:] = (later[10:] + 1) % 64
        changed, _ = model(later, target, mems)
        forgotten, _ = model(tokens, target, None)
    assert torch.equal(nll[:10], changed[:10]) and not torch.equal(nll[10:], changed[10:])
    assert not torch.allclose(nll, forgotten)  # the memory is attended to


def test_memory_holds_each_layers_last_inputs_detached() -> None:
    model = cpu_model("transformer_xl_base", mem_len=4).train()
    tokens = torch.randint(64, (16, 2))
    nll, mems = model(tokens, tokens, None)
    assert mems.shape == (2, 4, 2, 32) and not mems.requires_grad and nll.requires_grad
    # Layer 0's input is the scaled embedding (no dropout in the cpu preset).
    assert torch.allclose(mems[0], model.word_emb(tokens[-4:]))
    _, longer = model(tokens[:3], tokens[:3], mems)
    assert torch.equal(longer[:, :1], mems[:, -1:])  # the oldest positions fall out


@pytest.mark.parametrize("div_val", [1, 2])
def test_adaptive_softmax_is_a_distribution_over_the_vocabulary(div_val: int) -> None:
    model = cpu_model("transformer_xl_base", div_val=div_val)
    hidden = torch.randn(3, 1, 32).expand(3, 64, 32).reshape(-1, 32)
    with torch.no_grad():
        nll = model.crit(hidden, torch.arange(64).repeat(3), model.word_emb).view(3, 64)
    assert torch.allclose(torch.logsumexp(-nll, dim=1), torch.zeros(3), atol=1e-5)


@pytest.mark.parametrize(("div_val", "cutoffs"), [(1, ()), (1, (16, 32)), (2, (16, 32))])
def test_scores_rank_the_words_by_the_losss_probabilities(div_val: int, cutoffs: tuple[int, ...]) -> None:
    """The accuracy's argmax runs over `scores`: normalised, they are the log-probabilities the loss reads."""
    model = cpu_model("transformer_xl_base", div_val=div_val, cutoffs=cutoffs)
    hidden, target = torch.randn(8, 32), torch.randint(64, (8,))
    with torch.no_grad():
        scores = model.crit.scores(hidden, model.word_emb)
        nll = model.crit(hidden, target, model.word_emb)
    assert scores.shape == (8, 64)
    assert torch.allclose(-scores.log_softmax(-1).gather(1, target[:, None]).squeeze(1), nll, atol=1e-5)


def test_without_cutoffs_the_softmax_is_tied_to_the_embedding() -> None:
    model = cpu_model("transformer_xl_base", cutoffs=())
    hidden, target = torch.randn(8, 32), torch.randint(64, (8,))
    weight = model.word_emb.emb_layers[0].weight
    expected = F.cross_entropy(F.linear(hidden, weight, model.crit.out_layers_biases[0]), target, reduction="none")
    assert torch.allclose(model.crit(hidden, target, model.word_emb), expected)


def test_adaptive_embedding_projects_each_clusters_narrower_table() -> None:
    model = cpu_model("transformer_xl_large")  # div_val 2: widths 32, 16, 8 for words [0, 16), [16, 32), [32, 64)
    emb = model.word_emb
    assert [layer.weight.shape for layer in emb.emb_layers] == [(16, 32), (16, 16), (32, 8)]
    tokens = torch.tensor([3, 20, 50])
    expected = torch.stack(
        [
            F.linear(emb.emb_layers[i].weight[t - start], emb.emb_projs[i])
            for i, t, start in [(0, 3, 0), (1, 20, 16), (2, 50, 32)]
        ]
    )
    assert torch.allclose(emb(tokens), expected * 32**0.5)
    # The tails' output projections are the embedding's; the head has its own.
    assert model.crit._cluster(2, emb)[2] is emb.emb_projs[2] and model.crit._cluster(0, emb)[2] is model.crit.head_proj
