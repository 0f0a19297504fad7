"""The minigo workload (MLPerf v0.6 MiniGo): the Go engine on hand-made positions (captures, suicide, ko, passes,
Tromp-Taylor scoring), the features and the rule player's self-play data, registration, learning in fp32 and bf16,
the real network's shapes and size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_learns, assert_losses_fall

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.training import Supervised
from pytest_mlperf.workloads import minigo
from pytest_mlperf.workloads.minigo import BLACK, KOMI, PASS, WHITE, DualNet, IllegalMove, Position
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
BATCH = 64
WORKLOAD = get("minigo")


def build(precision: str = "fp32", batch: int = BATCH, preset: str = "cpu") -> Supervised:
    return WORKLOAD.build(Setup(WORKLOAD.presets[preset], batch, CPU, resolve(precision, CPU)))


def at(row: int, col: int) -> int:
    return row * minigo.N + col


def board(*rows: str) -> list[str]:
    """The given top rows, the rest of the 9x9 board empty."""
    return [row.ljust(minigo.N, ".") for row in rows] + ["." * minigo.N] * (minigo.N - len(rows))


# ---------------------------------------------------------------------------------------------------- engine


def test_capture_removes_the_chain_without_liberties() -> None:
    position = Position.from_rows(board(".OX", "OX", "X"))  # white (0,1) and (1,0) each have one liberty: (0,0)
    assert sorted(position.captures[at(0, 0)]) == [at(0, 1), at(1, 0)]
    after = position.play(at(0, 0))
    assert after.board[at(0, 1)] == after.board[at(1, 0)] == minigo.EMPTY
    assert after.board[at(0, 0)] == BLACK and after.to_play == WHITE
    assert after.ko is None  # two stones taken: no ko


def test_a_multi_stone_chain_is_captured_whole() -> None:
    position = Position.from_rows(board("OO", "XX"))  # the white pair's last liberty is (0,2)
    assert sorted(position.captures[at(0, 2)]) == [at(0, 0), at(0, 1)]
    after = position.play(at(0, 2))
    assert after.board[at(0, 0)] == after.board[at(0, 1)] == minigo.EMPTY and after.ko is None


def test_suicide_is_illegal_unless_it_captures() -> None:
    suicide = Position.from_rows(board(".O", "O"))
    assert at(0, 0) not in suicide.captures
    with pytest.raises(IllegalMove):
        suicide.play(at(0, 0))
    # Filling the last liberty of one's own chain is suicide too.
    own = Position.from_rows(board("X.O", "OXO", ".O"))
    assert at(0, 1) not in own.captures
    # The same point is legal when it takes the last liberty of the surrounding stones.
    assert at(0, 0) in Position.from_rows(board(".OX", "OX", "X")).captures


def test_simple_ko_forbids_the_immediate_recapture() -> None:
    position = Position.from_rows(board(".XO", "XO.O", ".XO"))
    taken = position.play(at(1, 2))  # black captures the white stone at (1,1)
    assert taken.board[at(1, 1)] == minigo.EMPTY and taken.ko == at(1, 1)
    with pytest.raises(IllegalMove):
        taken.play(at(1, 1))
    # After an exchange elsewhere, white may retake, which is a ko for black in turn.
    retaken = taken.play(at(8, 8)).play(at(8, 0)).play(at(1, 1))
    assert retaken.board[at(1, 2)] == minigo.EMPTY and retaken.board[at(1, 1)] == WHITE
    assert retaken.ko == at(1, 2)


def test_a_capture_that_is_not_a_ko_shape_sets_no_ko() -> None:
    position = Position.from_rows(board(".XO", "XO.", ".X"))  # (1,2) has an empty neighbour: not ko-ish
    assert position.play(at(1, 2)).ko is None


def test_two_passes_end_the_game_and_a_pass_clears_ko() -> None:
    taken = Position.from_rows(board(".XO", "XO.O", ".XO")).play(at(1, 2))
    passed = taken.play(PASS)
    assert passed.ko is None and not passed.is_over and passed.board == taken.board
    assert passed.play(PASS).is_over
    assert not passed.play(at(5, 5)).play(PASS).is_over  # a move in between resets the count


def test_tromp_taylor_scoring() -> None:
    assert Position().score() == -KOMI  # one empty region touching no colour: nobody's
    walls = Position.from_rows(["....XO..."] * 9)  # black owns columns 0-4 (45), white 5-8 (36)
    assert walls.score() == 45 - 36 - KOMI
    dame = Position.from_rows(["...X.O..."] * 9)  # column 4 touches both colours: neutral
    assert dame.score() == (27 + 9) - (9 + 27) - KOMI
    dead = Position.from_rows(["X" * 9, "XXXXXXXX.", *["." * 9] * 7])  # all black's
    assert dead.score() == 81 - KOMI


def test_features_are_alphago_zero_planes() -> None:
    position = Position().play(at(4, 4)).play(at(4, 5))  # black then white; black to play
    planes = position.features()
    assert planes.shape == (17, 9, 9) and planes.dtype == np.float32
    assert planes[0].sum() == 1 and planes[0, 4, 4] == 1  # the mover's (black's) stones now
    assert planes[1].sum() == 1 and planes[1, 4, 5] == 1  # the opponent's
    assert planes[2, 4, 4] == 1 and planes[3].sum() == 0  # one move ago: only black's stone
    assert planes[4:16].sum() == 0  # two moves ago the empty board, repeated for older history
    assert (planes[16] == 1).all()  # black to play
    white = position.play(at(0, 0)).features()
    assert white[0, 4, 5] == 1 and white[1, 0, 0] == 1 and (white[16] == 0).all()


# ------------------------------------------------------------------------------------------------ self-play


def test_rule_player_captures_first_never_fills_its_eyes_and_passes_when_done() -> None:
    preference = minigo.preferences(0)
    capture = Position.from_rows(board(".OX", "OX", "X"))
    assert capture.captures[at(0, 0)] and int(minigo.visit_distribution(capture, preference).argmax()) == at(0, 0)
    eye = Position.from_rows(board(".X", "X"))
    assert minigo.visit_distribution(eye, preference)[at(0, 0)] == 0
    # Black everywhere but two eyes: black has no reasonable move and passes.
    full = Position.from_rows(["." + "X" * 8, "X" * 9, *["X" * 9] * 6, "X" * 8 + "."])
    pi = minigo.visit_distribution(full, preference)
    assert pi[PASS] == 1 and pi.sum() == 1


def test_self_play_examples() -> None:
    examples = minigo.self_play(games_seed=0, positions=300, preference=minigo.preferences(0))
    features, pi, outcome = examples.tensors()
    assert features.shape == (300, 17, 9, 9) and pi.shape == (300, 82) and outcome.shape == (300,)
    assert torch.allclose(pi.sum(1), torch.ones(300))
    assert set(outcome.tolist()) <= {-1.0, 1.0}
    first_moves = (features[:, :16].sum((1, 2, 3)) == 0).nonzero().flatten()
    assert len(first_moves) >= 2  # several games, each from the empty board
    assert float(pi.max(1).values.mean()) > 0.5  # a peaked distribution, like a search's visits


def test_target_needs_more_than_occupancy_and_preferences() -> None:
    """The best a player knowing only which points are empty and the preferences would score stays below the
    target: reaching it takes the Go rules the network must infer (eyes, suicide, captures)."""
    preference = minigo.preferences(WORKLOAD.presets["cpu"]["player_seed"])
    examples = minigo.self_play(games_seed=1, positions=512, preference=preference)
    features, pi, _ = examples.tensors()
    empty = (features[:, 0] + features[:, 1] == 0).flatten(1)
    naive = torch.where(empty, torch.from_numpy(preference).float(), -1.0).argmax(1)
    assert float((naive == pi.argmax(1)).float().mean()) < WORKLOAD.quality.target - 0.15  # about 0.35


# ----------------------------------------------------------------------------------------------- training


def test_registration() -> None:
    assert (WORKLOAD.name, WORKLOAD.family, WORKLOAD.task, WORKLOAD.unit) == (
        "minigo",
        "minigo",
        "training",
        "positions/s",
    )
    assert WORKLOAD.quality.higher_is_better
    assert WORKLOAD.quality.real_target == 0.5  # MLPerf: 50% win rate against the target model
    assert set(WORKLOAD.presets) == {"cpu", "real"}


def test_items_per_step_counts_positions() -> None:
    assert build(batch=24).items_per_step == 24


def test_l2_spares_biases_and_batchnorm_offsets() -> None:
    net = DualNet(8, 1, 16)
    optimizer = minigo.sgd(net, WORKLOAD.presets["cpu"])
    decayed, spared = (set(map(id, g["params"])) for g in optimizer.param_groups)
    named = dict(net.named_parameters())
    assert id(named["trunk.1.weight"]) in decayed  # BatchNorm gamma: dual_net.py regularises it
    assert id(named["trunk.1.bias"]) in spared and id(named["policy.bias"]) in spared
    assert id(named["policy.weight"]) in decayed and len(decayed) + len(spared) == len(named)


def test_learns_in_fp32() -> None:
    trainer = build()
    assert_learns(trainer, WORKLOAD.quality, trainer.model)


def test_bf16_losses_fall() -> None:
    # Batch 16 and a few steps: bfloat16 convolutions take a slow path on CPUs without AVX-512 bf16.
    trainer = build("bf16", batch=16)
    assert_losses_fall(trainer, 30, 5)


def test_real_preset_shapes_and_size() -> None:
    net = minigo.model(WORKLOAD.presets["real"]).eval()
    # dual_net.py with conv_width 32, trunk_layers 9, fc_width 64: stem 17*32*9 + BN 64, nine blocks of two
    # 32*32*9 convolutions and two BNs, policy 32*2 + (162*82 + 82), value 32 + (81*64 + 64) + (64 + 1).
    count = sum(p.numel() for p in net.parameters())
    assert count == 4_896 + 64 + 9 * 18_560 + 64 + 13_366 + 32 + 5_248 + 65 == 190_775
    logits, value = net(torch.zeros(2, 17, 9, 9))
    assert logits.shape == (2, 82) and value.shape == (2,)
    assert bool((value.abs() <= 1).all())
