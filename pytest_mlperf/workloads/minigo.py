"""MiniGo: MLPerf training v0.6's reinforcement-learning benchmark, the policy/value network of an AlphaGo Zero-style
Go player on the 9x9 board, trained on its own self-play games.

Model, loss and optimiser follow tensorflow/minigo's dual_net.py as MLPerf v0.6 ran it (NVIDIA's submission,
training_results_v0.6/NVIDIA/benchmarks/minigo, which Lambda's v0.6 results reproduce), with ml_perf/flags/9:
`--conv_width=32 --fc_width=64 --trunk_layers=9 --value_cost_weight=0.25 --l2_strength=0.0001
--train_batch_size=8192 --lr_rates=[0.32,0.032,0.0032]` (the same flags appear on the train.py command lines of
Lambda's logs).

- Input: AlphaGo Zero's 17 feature planes (features.py AGZ_FEATURES): for each of the last 8 boards (the oldest
  repeated when the game is younger), the side to move's stones then the opponent's, and a plane of ones when black
  is to play.
- Trunk: conv 3x3 (no bias) + BatchNorm + ReLU, then `trunk_layers` residual blocks of two such convolutions.
  BatchNorm as tf.layers.batch_normalization(momentum=0.95, epsilon=1e-5).
- Policy head: conv 1x1 to 2 channels, BatchNorm without scale or offset, ReLU, dense to 82 logits (81 points and
  pass). Value head: conv 1x1 to 1 channel, the same BatchNorm, ReLU, dense to `fc_width`, ReLU, dense to 1, tanh.
- Loss: softmax cross-entropy against the search's visit distribution, plus value_cost_weight x MSE against the
  game's outcome (+1 black won, -1 white won: minigo's values are from black's point of view), plus
  l2_strength x sum(w^2) / 2 over every weight but biases and BatchNorm offsets (gammas included, as dual_net.py
  selects them by name). SGD with momentum 0.9 (tf.train.MomentumOptimizer, the same update as torch's).

With the published sizes the network has 190,775 parameters (TensorFlow's trainable variables; dual_net.py's layer
shapes, no figure is published): stem 4,896 + 64, 9 residual blocks of 18,560, policy head 64 + 13,366, value head
32 + 5,248 + 65.

What differs, and why:
- L2 is applied as SGD weight decay on the same parameters: the gradient is identical (d/dw of 1e-4 w^2 / 2), the
  fused optimizer can do it, and the returned loss is the policy + value cost only.
- Weights are Glorot-uniform and biases zero, TensorFlow's defaults, so the first steps match the reference.
- The dense layers read the heads' feature maps flattened channel-first (TensorFlow flattens NHWC): a fixed
  permutation of the same weights.
- No random board symmetries (preprocessing's random_rotation): the synthetic player below is deliberately not
  symmetric, so rotating its positions would change the task instead of augmenting it.
- MLPerf's epoch is one iteration of the reinforcement loop: self-play games by the current model (C++ MCTS, 240
  readouts), training on a window of recent games, evaluation games against the previous model; the quality target
  is a 50% win rate against a fixed target model (eval_models.py). Only the training step is timed here, so the unit
  is training positions per second, which is what a GPU changes in that loop.

Synthetic data: real self-play games on a real 9x9 Go engine (legal moves, captures, suicide illegal, simple ko,
pass, Tromp-Taylor area scoring with komi 7.5), played instead of MCTS by a fixed rule player, so that the policy
head has a definite function to learn in a few dozen steps. The player scores each reasonable move (legal, not
filling its own eye): a fixed, random preference for each point (81 distinct levels, 2 logits apart), plus a bonus
larger than every preference for a move that captures; its "visit distribution" is the softmax of those scores
(0.86 on the best move when there are many, a peaked one like a real search's; flatter targets made the network
learn the order of the preferences several times slower), it samples its move from it for the first 6 moves of a
game (minigo's softpick_move_cutoff on 9x9) and plays the argmax afterwards, and it passes when no reasonable move
is left. Each position yields (17 planes, visit distribution, outcome), as minigo's training examples. A few hundred
positions take well under a second to play.

Quality: minigo's own policy_accuracy_top_1 (dual_net.py's eval metrics): the fraction of held-out positions, from
games the network never trained on, whose highest logit is the target distribution's argmax, i.e. the move the
player would choose. An untrained network scores about 0.02. Knowing only which points are empty and the
preferences scores about 0.35 (late in a game the best empty point is mostly an eye, a suicide or a ko), so the
target of 0.6 also takes the Go rules read from the board planes. Win rate against a reference model, MLPerf's
metric, would need a search and hundreds of evaluation games per check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..run.training import Batch, Supervised, forward, seeded
from .registry import Preset, Quality, Setup, Workload, register

# --------------------------------------------------------------------------------------------------- the game

N = 9  #: board side
POINTS = N * N
PASS = POINTS  #: the move index of a pass, after the 81 points (minigo's flat move encoding)
MOVES = POINTS + 1
BLACK, WHITE, EMPTY = 1, -1, 0
KOMI = 7.5  #: minigo's komi on every board size
HISTORY = 8  #: boards per colour in the features
PLANES = 2 * HISTORY + 1


def _neighbours(p: int) -> tuple[int, ...]:
    row, col = divmod(p, N)
    steps = ((row > 0, -N), (row < N - 1, N), (col > 0, -1), (col < N - 1, 1))
    return tuple(p + step for inside, step in steps if inside)


NEIGHBOURS = tuple(_neighbours(p) for p in range(POINTS))


class IllegalMove(ValueError):
    pass


@dataclass(frozen=True)
class Group:
    colour: int
    stones: tuple[int, ...]
    liberties: frozenset[int]


def find_groups(board: Sequence[int]) -> tuple[list[int], list[Group]]:
    """Every chain of stones on `board` with its liberties, and each point's chain index (-1 where empty)."""
    label = [-1] * POINTS
    groups: list[Group] = []
    for start in range(POINTS):
        colour = board[start]
        if colour == EMPTY or label[start] >= 0:
            continue
        label[start] = len(groups)
        stones, liberties = [start], set()
        for p in stones:  # grows while iterating: a breadth-first flood fill
            for q in NEIGHBOURS[p]:
                if board[q] == EMPTY:
                    liberties.add(q)
                elif board[q] == colour and label[q] < 0:
                    label[q] = len(groups)
                    stones.append(q)
        groups.append(Group(colour, tuple(stones), frozenset(liberties)))
    return label, groups


@dataclass(frozen=True)
class Position:
    """A 9x9 Go position: the board (+1 black, -1 white, 0 empty, row-major), whose turn it is, the simple-ko point
    (forbidden to the player to move), the number of consecutive passes so far, and the earlier boards (most
    recent first) the features need."""

    board: tuple[int, ...] = (EMPTY,) * POINTS
    to_play: int = BLACK
    ko: int | None = None
    passes: int = 0
    history: tuple[tuple[int, ...], ...] = ()
    moves: int = 0

    @classmethod
    def from_rows(cls, rows: Sequence[str], to_play: int = BLACK, ko: int | None = None) -> Position:
        """A position drawn as 9 strings of 'X' (black), 'O' (white) and '.' (empty), top row first."""
        colour = {"X": BLACK, "O": WHITE, ".": EMPTY}
        board = tuple(colour[c] for row in rows for c in row)
        if len(board) != POINTS:
            raise ValueError(f"a board has {N} rows of {N} points")
        return cls(board, to_play, ko)

    @property
    def is_over(self) -> bool:
        return self.passes >= 2

    @cached_property
    def captures(self) -> dict[int, tuple[int, ...]]:
        """The legal moves on the board, each with the stones it captures. A move is illegal on a stone, on the ko
        point, and where it would leave its own chain without liberties without capturing (suicide)."""
        label, groups = find_groups(self.board)
        me = self.to_play
        legal: dict[int, tuple[int, ...]] = {}
        for p in range(POINTS):
            if self.board[p] != EMPTY or p == self.ko:
                continue
            chains = {label[q] for q in NEIGHBOURS[p] if self.board[q] != EMPTY}
            taken = tuple(
                s for g in chains if groups[g].colour == -me and groups[g].liberties == {p} for s in groups[g].stones
            )
            breathes = any(self.board[q] == EMPTY for q in NEIGHBOURS[p]) or any(
                groups[g].colour == me and len(groups[g].liberties) > 1 for g in chains
            )
            if taken or breathes:
                legal[p] = taken
        return legal

    def is_eye(self, p: int) -> bool:
        """Whether empty point `p` is surrounded by the player to move's stones only (minigo's is_eyeish)."""
        return all(self.board[q] == self.to_play for q in NEIGHBOURS[p])

    def play(self, move: int) -> Position:
        history = (self.board, *self.history[: HISTORY - 2])
        if move == PASS:
            return Position(self.board, -self.to_play, None, self.passes + 1, history, self.moves + 1)
        if move not in self.captures:
            raise IllegalMove(f"{move} ({divmod(move, N)}) is not legal for {self.to_play:+d}")
        taken = self.captures[move]
        board = list(self.board)
        board[move] = self.to_play
        for s in taken:
            board[s] = EMPTY
        # Simple ko: a single stone captured by a stone played where only the opponent's stones surrounded it
        # (minigo's rule); the capturer's opponent may not retake at once.
        ko = taken[0] if len(taken) == 1 and all(self.board[q] == -self.to_play for q in NEIGHBOURS[move]) else None
        return Position(tuple(board), -self.to_play, ko, 0, history, self.moves + 1)

    def score(self) -> float:
        """Tromp-Taylor area score from black's side: stones plus empty regions that reach only one colour,
        black minus white, minus komi."""
        total, seen = 0, [False] * POINTS
        for start in range(POINTS):
            colour = self.board[start]
            if colour != EMPTY:
                total += colour
                continue
            if seen[start]:
                continue
            seen[start] = True
            region, borders = [start], set()
            for p in region:
                for q in NEIGHBOURS[p]:
                    if self.board[q] != EMPTY:
                        borders.add(self.board[q])
                    elif not seen[q]:
                        seen[q] = True
                        region.append(q)
            if len(borders) == 1:
                total += borders.pop() * len(region)
        return total - KOMI

    def features(self) -> np.ndarray:
        """AlphaGo Zero's 17 planes (features.py stone_features + color_to_play_feature), channels first."""
        boards = [self.board, *self.history]
        boards += [boards[-1]] * (HISTORY - len(boards))
        stacked = np.asarray(boards, dtype=np.int8).reshape(HISTORY, N, N)
        planes = np.empty((PLANES, N, N), dtype=np.float32)
        planes[0:-1:2] = stacked == self.to_play
        planes[1:-1:2] = stacked == -self.to_play
        planes[-1] = self.to_play == BLACK
        return planes


# ------------------------------------------------------------------------------------------------ self-play

PREFERENCE_STEP = 2.0  #: logit gap between consecutive preference levels of the rule player
CAPTURE_BONUS = PREFERENCE_STEP * POINTS  #: above every difference of preferences: capturing comes first
SOFTPICK_MOVES = 6  #: minigo's softpick_move_cutoff on 9x9: moves sampled from the distribution, then argmax


def preferences(seed: int = 0) -> np.ndarray:
    """The rule player's fixed preference for each point: 81 distinct levels in a seeded random order."""
    return np.random.default_rng(seed).permutation(POINTS) * PREFERENCE_STEP


def visit_distribution(position: Position, preference: np.ndarray) -> np.ndarray:
    """The rule player's target distribution over the 82 moves: the softmax of its scores over the reasonable
    moves (legal, not filling an own eye), or a certain pass when there is none."""
    pi = np.zeros(MOVES, dtype=np.float32)
    moves = [p for p in position.captures if not position.is_eye(p)]
    if not moves:
        pi[PASS] = 1.0
        return pi
    scores = np.array([preference[p] + CAPTURE_BONUS * bool(position.captures[p]) for p in moves])
    weights = np.exp(scores - scores.max())
    pi[moves] = weights / weights.sum()
    return pi


@dataclass
class Examples:
    """Training positions as minigo's tf.Examples hold them: features, the search's move distribution, outcome."""

    features: list[np.ndarray] = field(default_factory=list)
    pi: list[np.ndarray] = field(default_factory=list)
    outcome: list[float] = field(default_factory=list)

    def tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        return (
            torch.from_numpy(np.stack(self.features)),
            torch.from_numpy(np.stack(self.pi)),
            torch.tensor(self.outcome, dtype=torch.float32),
        )


def self_play(games_seed: int, positions: int, preference: np.ndarray, max_moves: int = 2 * POINTS) -> Examples:
    """Rule-player games until `positions` training positions are collected (the last game cut short). Each
    game ends after two passes or `max_moves` moves (minigo's 9x9 limit); every position gets the outcome."""
    rng = np.random.default_rng(games_seed)
    examples = Examples()
    while len(examples.outcome) < positions:
        position, game = Position(), Examples()
        while not position.is_over and position.moves < max_moves:
            pi = visit_distribution(position, preference)
            move = int(rng.choice(MOVES, p=pi)) if position.moves < SOFTPICK_MOVES else int(pi.argmax())
            game.features.append(position.features())
            game.pi.append(pi)
            position = position.play(move)
        result = 1.0 if position.score() > 0 else -1.0
        keep = positions - len(examples.outcome)
        examples.features += game.features[:keep]
        examples.pi += game.pi[:keep]
        examples.outcome += [result] * min(keep, len(game.pi))
    return examples


# ---------------------------------------------------------------------------------------------------- model


def conv_bn(cin: int, cout: int, kernel: int, affine: bool = True) -> list[nn.Module]:
    """dual_net.py's mg_conv2d (no bias, 'same' padding) and mg_batchn (momentum 0.95, epsilon 1e-5)."""
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout, 1e-5, 0.05, affine)]


class Residual(nn.Module):
    """mg_res_layer: relu(x + bn(conv(relu(bn(conv(x))))))."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inner = nn.Sequential(*conv_bn(width, width, 3), nn.ReLU(inplace=True), *conv_bn(width, width, 3))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.inner(x))


class DualNet(nn.Module):
    """dual_net.py's model_inference_fn: a residual trunk with a policy head (82 logits) and a value head (tanh)."""

    def __init__(self, conv_width: int = 32, trunk_layers: int = 9, fc_width: int = 64) -> None:
        super().__init__()
        stem = [*conv_bn(PLANES, conv_width, 3), nn.ReLU(inplace=True)]
        self.trunk = nn.Sequential(*stem, *(Residual(conv_width) for _ in range(trunk_layers)))
        self.policy_conv = nn.Sequential(*conv_bn(conv_width, 2, 1, affine=False), nn.ReLU(inplace=True))
        self.policy = nn.Linear(2 * POINTS, MOVES)
        self.value_conv = nn.Sequential(*conv_bn(conv_width, 1, 1, affine=False), nn.ReLU(inplace=True))
        self.value = nn.Sequential(nn.Linear(POINTS, fc_width), nn.ReLU(inplace=True), nn.Linear(fc_width, 1))
        for m in self.modules():  # TensorFlow's defaults: Glorot-uniform kernels, zero biases
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shared = self.trunk(x)
        logits = self.policy(self.policy_conv(shared).flatten(1))
        value = torch.tanh(self.value(self.value_conv(shared).flatten(1)).squeeze(-1))
        return logits, value


def model(p: Preset) -> DualNet:
    return DualNet(p["conv_width"], p["trunk_layers"], p["fc_width"])


# ------------------------------------------------------------------------------------------------- training


def minigo_loss(outputs: tuple[Tensor, Tensor], targets: tuple[Tensor, Tensor], value_weight: float) -> Tensor:
    """Policy cross-entropy against the visit distribution plus the weighted value MSE, in float32 (the L2 term
    is the optimiser's weight decay)."""
    (logits, value), (pi, outcome) = outputs, targets
    return F.cross_entropy(logits.float(), pi.float()) + value_weight * F.mse_loss(value.float(), outcome.float())


def sgd(net: nn.Module, p: Preset) -> torch.optim.Optimizer:
    """MomentumOptimizer with dual_net.py's L2 set: every parameter but biases and BatchNorm offsets (betas)."""
    decay = [t for name, t in net.named_parameters() if not name.endswith("bias")]
    rest = [t for name, t in net.named_parameters() if name.endswith("bias")]
    groups = [{"params": decay, "weight_decay": p["l2_strength"]}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=p["lr"], momentum=0.9, fused=True)


def policy_top1(model: nn.Module, batches: Sequence[Batch]) -> float:
    """dual_net.py's policy_accuracy_top_1: how often the highest logit is the target distribution's argmax."""
    correct = torch.zeros((), dtype=torch.long, device=batches[0][0].device)
    total = 0
    for inputs, (pi, _) in batches:
        logits, _ = forward(model, inputs)
        correct += (logits.argmax(-1) == pi.argmax(-1)).sum()
        total += pi.shape[0]
    return int(correct) / total


def batches_of(examples: Examples, batch_size: int, count: int, seed: int) -> list[Batch]:
    """`count` batches drawn from the pool of positions: shuffled without replacement within a batch (with it
    when a batch is larger than the pool), as minigo's shuffle buffer draws from its window of games."""
    features, pi, outcome = examples.tensors()
    g = torch.Generator().manual_seed(seed)
    size = len(outcome)
    batches = []
    for _ in range(count):
        index = (
            torch.randperm(size, generator=g)[:batch_size]
            if batch_size <= size
            else torch.randint(size, (batch_size,), generator=g)
        )
        batches.append((features[index], (pi[index], outcome[index])))
    return batches


def held_out_batches(examples: Examples, chunk: int = 256) -> list[Batch]:
    features, pi, outcome = examples.tensors()
    return [(f, (q, z)) for f, q, z in zip(features.split(chunk), pi.split(chunk), outcome.split(chunk), strict=True)]


def build(setup: Setup) -> Supervised:
    p = setup.preset
    preference = preferences(p["player_seed"])
    train = self_play(games_seed=0, positions=p["positions"], preference=preference)
    held_out = self_play(games_seed=1, positions=p["held_out"], preference=preference)
    return Supervised(
        setup,
        seeded(partial(model, p)),
        batches_of(train, setup.batch_size, p["batches"], seed=0),
        loss=partial(minigo_loss, value_weight=p["value_cost_weight"]),
        optimizer=partial(sgd, p=p),
        metric=policy_top1,
        held_out=held_out_batches(held_out),
        # items = training positions (one board, its 17 planes and two targets): what one step consumes.
        channels_last=True,
    )


register(
    Workload(
        name="minigo",
        family="minigo",
        task="training",
        unit="positions/s",
        description="MLPerf v0.6 MiniGo: 9x9 AlphaGo Zero dual network, SGD momentum, rule-player self-play games",
        presets={
            # ml_perf/flags/9 of MLPerf v0.6 (NVIDIA's, as Lambda ran it): architecture 32 x 9 blocks, fc 64, value
            # weight 0.25, l2 1e-4, the first rate of the schedule 0.32 (for the global batch of 8192, which train.py
            # divides among the Horovod ranks: 1024 per GPU on a DGX-1).
            "real": {
                "conv_width": 32,
                "trunk_layers": 9,
                "fc_width": 64,
                "value_cost_weight": 0.25,
                "l2_strength": 1e-4,
                "lr": 0.32,
                "player_seed": 0,
                "positions": 4096,
                "held_out": 512,
                "batches": 8,
            },
            # Half the width, 2 blocks, half the fc width; a smaller lr for the small batch.
            "cpu": {
                "conv_width": 16,
                "trunk_layers": 2,
                "fc_width": 32,
                "value_cost_weight": 0.25,
                "l2_strength": 1e-4,
                "lr": 0.1,
                "player_seed": 0,
                "positions": 1024,
                "held_out": 512,
                "batches": 16,
            },
        },
        build=build,
        # 0.6 (untrained ~0.02, occupancy and preferences alone ~0.35): about 95 steps for the cpu preset at batch
        # 64, about 55 for the real one at batch 512. MLPerf's target: a 50% win rate against its target model.
        quality=Quality(
            "held-out policy top-1 agreement with the rule player", target=0.6, max_steps=150, real_target=0.5
        ),
    )
)
