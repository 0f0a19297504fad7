"""The atari workload (Mila's atari: pytorch-a2c-ppo-acktr PPO, here on a built-in Atari-style game): registration and
unit, the game and Atari's observation wrappers, GAE and the PPO loss on hand-worked cases, learning in fp32, bf16,
the A2C variant, and the published network size."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_reaches

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.workloads import atari
from pytest_mlperf.workloads.registry import Setup, get
from pytest_mlperf.workloads.rl import discounted_returns, gae_returns, ppo_loss

CPU = torch.device("cpu")
BATCH = 32
WORKLOAD = get("atari")
NOOP, FIRE, RIGHT, LEFT = 0, 1, 2, 3


def build(precision: str = "fp32", batch: int = BATCH, **overrides: object) -> atari.ActorCriticTrainer:
    preset = {**WORKLOAD.presets["cpu"], **overrides}
    return WORKLOAD.build(Setup(preset, batch, CPU, resolve(precision, CPU)))


def game(num_envs: int = 2, **kwargs: object) -> atari.Catch:
    return atari.Catch(
        num_envs, CPU, seed=0, **{"size": 36, "ball": 2, "paddle": 8, "speed": 1.0, "drift": 0.0, **kwargs}
    )


def test_registration() -> None:
    assert (WORKLOAD.name, WORKLOAD.family, WORKLOAD.task, WORKLOAD.unit) == (
        "atari",
        "reinforcement",
        "training",
        "rollouts/s",
    )
    assert WORKLOAD.quality.higher_is_better
    assert WORKLOAD.quality.real_target is None
    real = WORKLOAD.presets["real"]  # Mila's baselines.json atari arguments
    assert (real["algo"], real["num_steps"], real["num_mini_batch"], real["clip_param"]) == ("ppo", 128, 4, 0.1)


def test_items_per_step_counts_rollouts() -> None:
    # Mila: batch_size = num_processes, so one item is one environment's num_steps-step rollout.
    assert build(batch=12).items_per_step == 12


def test_observations_are_stacked_uint8_frames() -> None:
    env = game(3, size=84, ball=3, paddle=12)
    obs = env.reset()
    assert obs.shape == (3, 4, 84, 84) and obs.dtype == torch.uint8
    assert not obs[:, :3].any()  # a new episode's stack is zeros but for its first frame
    assert (obs[:, 3] == atari.PADDLE).sum((1, 2)).tolist() == [12 * 3] * 3
    assert (obs[:, 3] == atari.BALL).sum((1, 2)).tolist() == [3 * 3] * 3
    after, _, _ = env.step(torch.tensor([NOOP, RIGHT, LEFT]))
    assert torch.equal(after[:, :3], obs[:, 1:])  # shifted by one frame, newest last


def test_frame_skip_moves_the_paddle_four_frames_and_keeps_the_max_of_the_last_two() -> None:
    env = game(4)
    env.reset()
    start = env.paddle_x.clone()
    x0, t0 = env.x0.clone(), env.t.clone()
    obs, _, _ = env.step(torch.tensor([NOOP, FIRE, RIGHT, LEFT]))
    assert (env.paddle_x - start).tolist() == [0.0, 0.0, 4.0, -4.0]  # 4 frames at 1 pixel a frame
    # The observation is the pixel-wise max of the 3rd and 4th frames (MaxAndSkipEnv).
    step_frames = t0 + torch.tensor([[3.0], [4.0]])
    y = step_frames * ((env.paddle_row - env.ball) / env.fall_frames)
    paddle = start + torch.tensor([0.0, 0.0, 1.0, -1.0]) * torch.tensor([[3.0], [4.0]])
    expected = env._render(x0.expand(2, -1), y, paddle).amax(0)
    assert torch.equal(obs[:, -1], expected)
    # The walls stop the paddle.
    for _ in range(20):
        env.step(torch.tensor([NOOP, FIRE, RIGHT, LEFT]))
    assert env.paddle_x[2] == 36 - 8 and env.paddle_x[3] == 0


def test_balls_score_when_they_land_and_episodes_restart() -> None:
    env = game(2, fall=2, balls=2)
    env.reset()
    env.x0[:] = env.paddle_x[0] + 3  # above the paddle: caught; the second game's paddle runs away
    _, reward, done = env.step(torch.tensor([NOOP, LEFT]))
    assert reward.tolist() == [0.0, 0.0] and not done.any()  # still falling
    _, reward, done = env.step(torch.tensor([NOOP, LEFT]))
    assert reward.tolist() == [1.0, -1.0] and not done.any()  # landed: +1 caught, -1 missed
    assert env.t.tolist() == [0.0, 0.0] and env.left.tolist() == [1.0, 1.0]  # a new ball is served
    env.step(torch.tensor([NOOP, NOOP]))
    obs, reward, done = env.step(torch.tensor([NOOP, NOOP]))
    assert done.all() and env.left.tolist() == [2.0, 2.0]  # two balls, then a new episode
    assert not obs[:, :3].any() and (obs[:, 3] == atari.BALL).any()
    assert env.max_episode_steps == 4


def test_bounce_reflects_off_both_walls() -> None:
    x = torch.tensor([3.0, 12.0, -2.0, 25.0])
    assert atari.bounce(x, 10.0).tolist() == [3.0, 8.0, 2.0, 5.0]


def test_returns_by_hand() -> None:
    rewards, values, next_value = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.5], [1.0]]), torch.tensor([2.0])
    going = torch.tensor([[False], [False]])
    # deltas: 2 + 0.5 * 2 - 1 = 2 and 1 + 0.5 * 1 - 0.5 = 1; GAE 2 and 1 + 0.25 * 2 = 1.5; returns = GAE + values.
    assert gae_returns(rewards, values, going, next_value, 0.5, 0.5).flatten().tolist() == [2.0, 3.0]
    ended = torch.tensor([[True], [False]])  # the first episode ends after step 0: nothing flows back into it
    assert gae_returns(rewards, values, ended, next_value, 0.5, 0.5).flatten().tolist() == [1.0, 3.0]
    assert discounted_returns(rewards, going, 0.5, next_value).flatten().tolist() == [2.5, 3.0]


def test_ppo_loss_clips_the_ratio() -> None:
    actions, advantages = torch.tensor([0, 0]), torch.tensor([1.0, -1.0])
    old_log_probs = torch.log(torch.tensor([0.5, 0.5]))
    returns = values = old_values = torch.zeros(2)
    # Now pi(0) = e^0.5 / (e^0.5 + 1) = 0.6225: ratio 1.245, clipped at 1.1 for the positive advantage only.
    logits = torch.tensor([[0.5, 0.0], [0.5, 0.0]], requires_grad=True)
    loss = ppo_loss(logits, values, actions, old_log_probs, old_values, returns, advantages, 0.1, 0.5, 0.0)
    ratio = 2 * math.exp(0.5) / (math.exp(0.5) + 1)
    assert float(loss.detach()) == pytest.approx(-(1.1 * 1.0 + ratio * -1.0) / 2, rel=1e-5)
    loss.backward()
    assert logits.grad[0].abs().max() == 0  # the clipped sample gives no gradient
    assert logits.grad[1].abs().max() > 0


def test_step_updates_the_network_with_mila_ppo() -> None:
    trainer = build(batch=4)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    loss = trainer.step()
    assert loss.ndim == 0 and not loss.requires_grad and math.isfinite(float(loss))
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    group = trainer.update.optimizer.param_groups[0]
    assert isinstance(trainer.update.optimizer, torch.optim.Adam) and group["eps"] == 1e-5
    # --use-linear-lr-decay over 10M environment steps: 10e6 // (8 steps x 4 environments) updates.
    assert group["lr"] == 7e-4
    trainer.step()
    assert group["lr"] == pytest.approx(7e-4 * (1 - 1 / (10_000_000 // 32)))
    assert trainer.updates == 2 and trainer.update.clip == 0.5


def test_learns_in_fp32() -> None:
    # Actor-critic losses do not fall as the policy improves (the advantages are standardised), so the check is the
    # metric's: out of reach untrained, reached by training.
    assert_reaches(build(), WORKLOAD.quality)


def test_runs_in_bf16() -> None:
    # Small: bfloat16 convolutions are slow on CPUs without AVX-512 bf16.
    trainer = build("bf16", batch=4)
    losses = [float(trainer.step()) for _ in range(2)]
    assert all(math.isfinite(v) for v in losses)
    assert math.isfinite(trainer.evaluate())


def test_a2c_variant() -> None:
    # The repo's default algorithm: 5-step rollouts, one RMSprop update on all of them, plain discounted returns.
    trainer = build(batch=4, algo="a2c", num_steps=5, gae_lambda=None)
    assert isinstance(trainer.update.optimizer, torch.optim.RMSprop)
    assert trainer.update.optimizer.param_groups[0]["alpha"] == 0.99
    before = [p.detach().clone() for p in trainer.model.parameters()]
    assert all(math.isfinite(float(trainer.step())) for _ in range(3))
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_real_network_size() -> None:
    # CNNBase with Pong's 6 actions: conv 4*32*64 + 32, 32*64*16 + 64, 64*32*9 + 32; FC 32*7*7*512 + 512; critic
    # 512 + 1; actor 512*6 + 6 = 866,439 parameters.
    real = WORKLOAD.presets["real"]
    model = atari.ActorCritic(len(atari.DIRECTIONS), real["stack"], real["size"], real["widths"], real["hidden"])
    assert sum(p.numel() for p in model.parameters()) == 8_224 + 32_832 + 18_464 + 803_328 + 513 + 3_078
    logits, value = model(torch.zeros(1, 4, 84, 84, dtype=torch.uint8))
    assert logits.shape == (1, 6) and value.shape == (1,)
