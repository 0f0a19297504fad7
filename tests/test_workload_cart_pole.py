"""The cart workload (Mila's cart: pytorch/examples REINFORCE on CartPole-v0): registration and unit, the vectorised
cart-pole against gym's equations worked by hand, episode ends, REINFORCE's returns, learning in fp32 and bf16, and
the published model size."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_reaches

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.quality import converge
from pytest_mlperf.workloads import cart_pole
from pytest_mlperf.workloads.registry import Setup, get
from pytest_mlperf.workloads.rl import discounted_returns, standardise

CPU = torch.device("cpu")
BATCH = 32
WORKLOAD = get("cart")


def build(precision: str = "fp32", batch: int = BATCH, preset: str = "cpu") -> cart_pole.Reinforce:
    return WORKLOAD.build(Setup(WORKLOAD.presets[preset], batch, CPU, resolve(precision, CPU)))


def test_registration() -> None:
    assert (WORKLOAD.name, WORKLOAD.family, WORKLOAD.task, WORKLOAD.unit) == (
        "cart",
        "reinforcement",
        "training",
        "steps/s",
    )
    assert WORKLOAD.quality.higher_is_better
    assert WORKLOAD.quality.real_target == 195.0  # gym's CartPole-v0 reward_threshold


def test_items_per_step_counts_environment_steps() -> None:
    assert build(batch=12).items_per_step == 12 * WORKLOAD.presets["cpu"]["horizon"]
    assert build(batch=1, preset="real").items_per_step == 500  # Mila: batch_size 1 x --number 500


@pytest.mark.parametrize(
    ("state", "force", "expected"),
    [
        # At rest, pushed right: temp = 10 / 1.1, theta_acc = -(100/11) / (0.5 (4/3 - 0.1/1.1)) = -6600/451,
        # x_acc = 100/11 + (0.05/1.1)(6600/451) = 4400/451; Euler moves x and theta with the old (zero) velocities.
        ((0.0, 0.0, 0.0, 0.0), 10.0, (0.0, 0.02 * 4400 / 451, 0.0, -0.02 * 6600 / 451)),
        # gym's CartPoleEnv.step worked out in double precision for two other states.
        ((0.1, -0.2, 0.05, 0.3), -10.0, (0.096, -0.3957976546439626, 0.056, 0.6080233136061515)),
        ((-1.0, 0.5, -0.1, -0.4), 10.0, (-0.99, 0.6963877519375107, -0.108, -0.7224609712752836)),
    ],
)
def test_dynamics_match_gym(state: tuple[float, ...], force: float, expected: tuple[float, ...]) -> None:
    out = cart_pole.dynamics(torch.tensor([state]), torch.tensor([force]))
    assert out[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_episodes_end_at_the_limits_and_restart() -> None:
    env = cart_pole.CartPole(4, CPU, seed=0, max_episode_steps=200)
    env.reset()
    twelve_degrees = 12 * 2 * math.pi / 360
    env.state = torch.tensor(
        [
            [0.0, 0.0, twelve_degrees - 1e-3, 1.0],  # tips past 12 degrees: theta + 0.02 * 1.0
            [2.39, 1.0, 0.0, 0.0],  # leaves the track: x + 0.02 * 1.0
            [0.0, 0.0, 0.0, 0.0],  # stays up
            [0.0, 0.0, 0.0, 0.0],  # stays up, but reaches v0's 200-step limit
        ]
    )
    env.steps[3] = 199
    obs, reward, done = env.step(torch.tensor([1, 1, 1, 1]))
    assert done.tolist() == [True, True, False, True]
    assert reward.tolist() == [1.0] * 4  # the last step is rewarded too
    # Ended episodes restart from U(-0.05, 0.05) states; the others carry on.
    assert obs[done].abs().max() <= 0.05 and env.steps.tolist() == [0, 0, 1, 0]
    assert obs[2].tolist() == pytest.approx([0.0, 0.02 * 4400 / 451, 0.0, -0.02 * 6600 / 451])


def test_reinforce_returns_restart_at_episode_ends() -> None:
    rewards = torch.ones(4, 1)
    dones = torch.tensor([[False], [True], [False], [False]])
    returns = discounted_returns(rewards, dones, 0.5)
    assert returns.flatten().tolist() == [1.5, 1.0, 1.5, 1.0]  # the window's end truncates the last episode
    assert standardise(returns, 1e-8).mean().abs() < 1e-6


def test_step_updates_the_policy() -> None:
    trainer = build(batch=4)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    loss = trainer.step()
    assert loss.ndim == 0 and not loss.requires_grad and math.isfinite(float(loss))
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    group = trainer.update.optimizer.param_groups[0]
    assert group["lr"] == 1e-2  # Mila's reinforce.py


def test_learns_in_fp32() -> None:
    # Policy-gradient losses do not fall as a policy improves (they are centred by the return standardisation), so
    # the check is the metric's: out of reach untrained, reached by training.
    assert_reaches(build(), WORKLOAD.quality)


def test_learns_in_bf16() -> None:
    result = converge(build("bf16"), WORKLOAD.quality, 0)
    assert result.reached, result


def test_real_preset_size() -> None:
    # reinforce.py's Policy: affine1 4*128 + 128, affine2 128*2 + 2 = 898 parameters.
    trainer = build(batch=1, preset="real")
    assert sum(p.numel() for p in trainer.model.parameters()) == 898
    assert trainer.env.max_episode_steps == 200  # CartPole-v0
