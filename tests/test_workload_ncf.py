"""The NCF workload: its data, metric, convergence on the cpu preset (fp32 and bf16) and the real model's size."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_learns
from torch import Tensor, nn

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.quality import converge
from pytest_mlperf.run.training import Supervised
from pytest_mlperf.workloads.metrics import CANDIDATES, hit_rate
from pytest_mlperf.workloads.ncf import NeuMF, Preferences
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
WORKLOAD = get("ncf")
CPU_BATCH = 4096  #: samples (positives and negatives) per step on the cpu preset


def trainer(precision: str, batch: int) -> Supervised:
    return WORKLOAD.build(Setup(WORKLOAD.presets["cpu"], batch, CPU, resolve(precision, CPU)))


def test_registered() -> None:
    assert (WORKLOAD.family, WORKLOAD.task, WORKLOAD.unit) == ("ncf", "training", "samples/s")
    assert WORKLOAD.quality.real_target == 0.635  # MLPerf's HR@10 target on ml-20m
    assert set(WORKLOAD.presets) == {"cpu", "real"}


def test_training_pairs_are_positives_then_their_users_negatives() -> None:
    world = Preferences(users=64, items=48, genres=8, device=CPU)
    (users, items), labels = world.train_batch(1000, negatives=4)
    assert users.shape == items.shape == labels.shape == (1000,)
    assert int(labels.sum()) == 200 and bool((labels[:200] == 1).all())  # one positive in 1 + 4
    genre = torch.empty(48, dtype=torch.long)
    genre[world.slots] = torch.arange(48) % 8
    assert bool((genre[items[:200]] == world.favourite[users[:200]]).all())  # positives are liked items
    assert bool((users[200:] == users[:200].repeat(4)).all())  # each positive's user gets 4 negatives
    assert int(items.min()) >= 0 and int(items.max()) < 48


def test_held_out_is_one_positive_among_100_per_user() -> None:
    world = Preferences(users=30, items=40, genres=4, device=CPU)
    batches = world.held_out(30, chunk=16)
    assert [labels.numel() for _, labels in batches] == [16 * CANDIDATES, 14 * CANDIDATES]
    (users, _), labels = batches[1]
    assert bool((users.view(-1, CANDIDATES) == torch.arange(16, 30)[:, None]).all())
    assert bool((labels.view(-1, CANDIDATES).argmax(1) == 0).all()) and float(labels.sum()) == 14


class Scores(nn.Module):
    """Scores each pair with a given function of (user, item)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        return self.fn(users, items)


def test_hit_rate_ranks_the_positive_and_shares_ties() -> None:
    world = Preferences(users=50, items=200, genres=20, device=CPU)
    batches = world.held_out(50, chunk=50)
    genre = torch.empty(200, dtype=torch.long)
    genre[world.slots] = torch.arange(200) % 20
    oracle = Scores(lambda u, i: (genre[i] == world.favourite[u]).float() + 0.001 * i)
    assert hit_rate(Scores(lambda u, i: torch.zeros(u.shape)), batches) == pytest.approx(0.1)  # random ties
    assert hit_rate(oracle, batches) > 0.9
    assert hit_rate(Scores(lambda u, i: -oracle(u, i)), batches) == 0.0


def test_learns_in_fp32() -> None:
    run = trainer("fp32", CPU_BATCH)
    assert run.items_per_step == CPU_BATCH  # positives and negatives, as NVIDIA's samples/s
    assert_learns(run, WORKLOAD.quality)


def test_learns_in_bf16() -> None:
    result = converge(trainer("bf16", CPU_BATCH), WORKLOAD.quality, 0)
    assert result.reached, result


def test_real_preset_is_mlperfs_neumf() -> None:
    p = WORKLOAD.presets["real"]
    assert (p["users"], p["items"], p["mf_dim"], tuple(p["mlp"]), p["negatives"]) == (
        138493, 26744, 64, (256, 256, 128, 64), 4
    )  # fmt: skip
    with torch.device("meta"):
        model = NeuMF(p["users"], p["items"], p["mf_dim"], p["mlp"])
    count = sum(w.numel() for w in model.parameters())
    # (138493 + 26744) * (64 + 128) embedding weights + 256*256+256 + 256*128+128 + 128*64+64 + (64+64)+1:
    # 31,832,577, the 31.8M of NeuMF on ml-20m (MLPerf reference / NVIDIA DeepLearningExamples NCF defaults).
    assert count == 31_832_577
    assert count == pytest.approx(31.8e6, rel=0.01)


def test_population_share_keeps_every_row_rate() -> None:
    """The walk's reduced real preset: a 1/100 share of the users, items, pool, evaluated users and of the batch (each
    row keeps its samples a step), and the embedding rows' Adam eps 100x larger (their gradients are)."""
    p = WORKLOAD.reduced("real")
    run = WORKLOAD.build(Setup(p, 720_000, CPU, resolve("fp32", CPU)))
    model = run.model
    assert (model.mf_user.num_embeddings, model.mf_item.num_embeddings) == (1385, 267)
    assert run.items_per_step == 7200 == len(run.batches[0][1])
    assert sum(len(labels) for _, labels in run.batches) >= round(p["pool"] / 100)
    assert sum(len(labels) for _, labels in run.held_out) == 1385 * CANDIDATES
    rows, shared = run.update.optimizer.param_groups
    assert rows["eps"] == pytest.approx(1e-6) and shared["eps"] == 1e-8
    assert {id(w) for w in rows["params"]} == {
        id(model.mf_user.weight),
        id(model.mf_item.weight),
        id(model.mlp_user.weight),
        id(model.mlp_item.weight),
    }
