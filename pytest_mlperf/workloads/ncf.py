"""NCF: the NeuMF recommender of MLPerf training v0.5-v0.7 on MovieLens-20M, as Lambda benchmarks it.

The model is the one of MLPerf's reference (mlcommons/training, recommendation/pytorch/neumf.py) and of NVIDIA's
DeepLearningExamples PyTorch/Recommendation/NCF, which Lambda's deeplearning-benchmark runs: a GMF branch (the
element-wise product of a user and an item embedding of `mf_dim`) beside an MLP branch (user and item embeddings of
half the first layer's width, concatenated, through ReLU layers), both concatenated into one output logit.
On ml-20m (138493 users, 26744 items, `-f 64 --layers 256 256 128 64`) it has 31,832,577 parameters, almost all of
them embeddings. Trained with binary cross-entropy on each positive (user, item) pair and 4 random negatives.

Synthetic data: a rank-`genres` user x item preference matrix. Each item belongs to one of `genres` genres, each
user likes exactly one genre; a positive is a random item of the user's genre, a negative a uniformly random item
(as in MLPerf, where negatives are merely unobserved, so some are liked items too). Quality is MLPerf's: HR@10 of
the held-out positive of each evaluated user among it and 99 random negatives: 0.8 within 100 steps (a constant
score gets 0.1; untrained about 0.1).

How it learns, and the honest reduction: a step's loss is the mean over its samples, so each embedding row's gradient
is its own samples' share of it, about 1 / users whatever the batch; at ml-20m's 138493 users that is about 1e-9, below
Adam's eps 1e-8, and the first tens of steps barely move the embeddings (HR@10 0.10 after 40 steps at 720k samples,
0.24 after 70, measured with the reduced widths below). A batch of millions of samples cannot be trained on a CPU in
test time, and a smaller batch over the same users would learn a different (noisier) problem. `population` keeps the
problem and scales the world: a share of the users, items, pool, evaluated users and of the batch, so that every user
and item gets as many samples a step and in the pool as in the real run; each row's gradient is then 1 / share times
larger, and so is the rows' eps (`adam`), which leaves every parameter's Adam update as the real one's. At a share of
1/100 the HR@10 curve at 720k samples followed the full world's within 0.02 over 70 steps (reduced widths both).
Widths are not neutral with Adam (each coordinate moves by about the lr, so a dot product over more of them moves
faster): on the 1/100 world at 720k samples the real widths reached 0.875 after 30 steps, half of them 0.929 after
50, a quarter 0.929 after 60 and an eighth 0.42 after 60. The walk uses a quarter (`mf_dim` 16, layers 64-64-32-16):
slower than the real model, never faster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..run.training import Supervised, seeded
from .metrics import CANDIDATES, hit_rate
from .registry import Preset, Quality, Setup, Workload, register


class NeuMF(nn.Module):
    """MLPerf's NeuMF (recommendation/pytorch/neumf.py), with its initialisation: embeddings N(0, 0.01), MLP
    layers Glorot-uniform, the final layer LeCun-uniform, biases zero."""

    def __init__(self, users: int, items: int, mf_dim: int, mlp: Sequence[int]) -> None:
        super().__init__()
        if mlp[0] % 2:
            raise ValueError(f"the first MLP layer ({mlp[0]}) must be even: it is the user and item embeddings")
        self.mf_user = nn.Embedding(users, mf_dim)
        self.mf_item = nn.Embedding(items, mf_dim)
        self.mlp_user = nn.Embedding(users, mlp[0] // 2)
        self.mlp_item = nn.Embedding(items, mlp[0] // 2)
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(mlp))
        self.final = nn.Linear(mlp[-1] + mf_dim, 1)
        for embedding in (self.mf_user, self.mf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(embedding.weight, std=0.01)
        for layer in self.mlp:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        bound = math.sqrt(3 / self.final.in_features)
        nn.init.uniform_(self.final.weight, -bound, bound)
        nn.init.zeros_(self.final.bias)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        mf = self.mf_user(users) * self.mf_item(items)
        x = torch.cat((self.mlp_user(users), self.mlp_item(items)), dim=-1)
        for layer in self.mlp:
            x = F.relu(layer(x))
        return self.final(torch.cat((mf, x), dim=-1)).squeeze(-1)  # one logit per pair


class Preferences:
    """A low-rank (rank `genres`) implicit-feedback world: user u likes item i iff genre(i) == favourite(u).

    Item genres come from a seeded permutation (slot j of the permutation has genre j % genres), so sampling a
    liked item is one gather, with no Python loop over users or items. Could serve any recommender workload."""

    def __init__(self, users: int, items: int, genres: int, device: torch.device, seed: int = 0) -> None:
        if not 1 <= genres <= items:
            raise ValueError(f"need 1 <= genres <= items, got {genres} genres for {items} items")
        self.users, self.items, self.genres = users, items, genres
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.device = device
        self.favourite = self._randint(genres, (users,))
        self.slots = torch.randperm(items, generator=self.generator, device=device)  # slot -> item id
        # items of genre c sit in slots c, c + genres, c + 2 * genres, ...
        self.per_genre = (items - torch.arange(genres, device=device) + genres - 1) // genres

    def _randint(self, high: int, shape: tuple[int, ...]) -> Tensor:
        return torch.randint(high, shape, generator=self.generator, device=self.device)

    def liked(self, users: Tensor) -> Tensor:
        """One random liked item per user."""
        genre = self.favourite[users]
        u = torch.rand(users.shape, generator=self.generator, device=self.device)
        k = (u * self.per_genre[genre]).long().clamp_max(self.per_genre[genre] - 1)
        return self.slots[genre + self.genres * k]

    def train_batch(self, size: int, negatives: int) -> tuple[tuple[Tensor, Tensor], Tensor]:
        """`size` (user, item) pairs: ceil(size / (1 + negatives)) positives, each user's negatives after them."""
        positives = -(-size // (1 + negatives))
        users = self._randint(self.users, (positives,))
        neg_users = users.repeat(negatives)[: size - positives]
        all_users = torch.cat((users, neg_users))
        items = torch.cat((self.liked(users), self._randint(self.items, (neg_users.numel(),))))
        labels = torch.zeros(size, device=self.device)
        labels[:positives] = 1
        return (all_users, items), labels

    def held_out(self, users: int, chunk: int) -> list[tuple[tuple[Tensor, Tensor], Tensor]]:
        """MLPerf's evaluation set for the first `users` users: per user, one liked item (column 0) and 99 random
        items, flattened, in chunks of `chunk` users."""
        batches = []
        for start in range(0, users, chunk):
            u = torch.arange(start, min(start + chunk, users), device=self.device)
            items = self._randint(self.items, (u.numel(), CANDIDATES))
            items[:, 0] = self.liked(u)
            labels = torch.zeros(u.numel(), CANDIDATES, device=self.device)
            labels[:, 0] = 1
            batches.append(((u.repeat_interleave(CANDIDATES), items.flatten()), labels.flatten()))
        return batches


def share(p: Preset, count: int) -> int:
    """`count` (users, items, samples) in the preset's `population` share of the world, at least 1."""
    return max(1, round(count * p.get("population", 1.0)))


def adam(model: NeuMF, p: Preset) -> torch.optim.Optimizer:
    """NVIDIA's recipe (DeepLearningExamples NCF, used by Lambda): Adam with these unusual betas, eps 1e-8. In a
    `population` share of the world, each embedding row's gradient is 1 / share times the real one's (a row's
    gradient is its samples' share of the batch mean: 1 / users of it), so their eps is too, and Adam's update of
    every parameter is the real one's (the shared layers' gradients are batch means, unchanged)."""
    rows = [w for m in (model.mf_user, model.mf_item, model.mlp_user, model.mlp_item) for w in m.parameters()]
    ids = {id(w) for w in rows}
    groups = [
        {"params": rows, "eps": 1e-8 / p.get("population", 1.0)},
        {"params": [w for w in model.parameters() if id(w) not in ids]},
    ]
    return torch.optim.Adam(groups, lr=p["lr"], betas=(0.25, 0.5), eps=1e-8, fused=True)


def build(setup: Setup) -> Supervised:
    p = setup.preset
    batch = share(p, setup.batch_size)
    users, items = share(p, p["users"]), share(p, p["items"])
    world = Preferences(users, items, p["genres"], setup.device)
    model = seeded(lambda: NeuMF(users, items, p["mf_dim"], p["mlp"]))
    # A pool of at least `pool` samples, so that small batches cycle through enough data not to memorise it.
    train = [world.train_batch(batch, p["negatives"]) for _ in range(-(-share(p, p["pool"]) // batch))]
    held_out = world.held_out(share(p, p["eval_users"]), p["eval_chunk"])
    return Supervised(
        setup,
        model,
        train,
        loss=lambda logits, labels: F.binary_cross_entropy_with_logits(logits.float(), labels.float()),
        optimizer=lambda model: adam(model, p),
        metric=partial(hit_rate, k=10),
        held_out=held_out,
        # Throughput is samples/s as NVIDIA's ncf.py and Lambda report it: every (user, item) pair trained on,
        # the 4 negatives of each positive included. Its --batch_size counts those pairs too, so a step processes
        # exactly `batch_size` samples per device (Lambda's batch is global: batch_per: global in systems).
        items_per_step=batch,
    )


register(
    Workload(
        name="ncf",
        family="ncf",
        task="training",
        unit="samples/s",
        description="NCF NeuMF (MLPerf/NVIDIA), BCE with 4 negatives per positive, Adam, synthetic low-rank "
        "MovieLens-20M-shaped preferences, HR@10 over 1 positive + 99 negatives",
        presets={
            # MLPerf reference / NVIDIA DLE defaults on ml-20m: 138493 users, 26744 items, factors 64,
            # layers 256-256-128-64, 4 negatives, Adam lr 0.0045 with betas (0.25, 0.5). MLPerf evaluates every
            # user. Lambda's global batch (per its table: 8M fp32 / 10M amp on 80 GB cards) comes from the system file.
            # Each of the 16 (cpu) or 32 (real) genres is a rank of the synthetic preference matrix.
            "real": {
                "users": 138493,
                "items": 26744,
                "mf_dim": 64,
                "mlp": (256, 256, 128, 64),
                "negatives": 4,
                "lr": 0.0045,
                "genres": 32,
                "pool": 2**25,
                "eval_users": 138493,
                "eval_chunk": 16384,
                "population": 1.0,
            },
            # The same model shrunk (512 users, 256 items, factors 16, layers 64-32-16); a larger lr for few steps.
            # Suggested batch: 4096 samples (about 0.01 s a step on one core).
            "cpu": {
                "users": 512,
                "items": 256,
                "mf_dim": 16,
                "mlp": (64, 32, 16),
                "negatives": 4,
                "lr": 0.02,
                "genres": 16,
                "pool": 2**15,
                "eval_users": 256,
                "eval_chunk": 256,
            },
        },
        build=build,
        quality=Quality("HR@10", target=0.8, max_steps=100, eval_every=5, real_target=0.635),
        reductions={"population": 1 / 100, "mf_dim": 16, "mlp": (64, 64, 32, 16)},
    )
)
