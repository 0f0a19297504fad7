"""Mila's cart benchmark: REINFORCE on CartPole, pytorch/examples/reinforcement_learning/reinforce.py as Mila's
reinforcement/cart_pole/pytorch/reinforce.py runs it ("a simplistic RL bench that only uses the CPU").

What Mila runs (run.sh calls reinforce.py, not the examples' actor_critic.py; baselines.json: --number 500 --gamma
0.99 --no-cuda):

- gym's CartPole-v0: the classic-control cart-pole (Barto, Sutton and Anderson 1983) with gym's constants, Euler
  integration, +1 per step, termination when the pole leans past 12 degrees or the cart leaves +-2.4 m, and v0's
  200-step time limit (v1 has the same physics and 500 steps).
- Policy: Linear(4, 128) - ReLU - Linear(128, 2) - softmax, actions sampled from it; Mila's copy has no dropout. 898
  parameters (4*128 + 128 + 128*2 + 2). Adam at lr 1e-2.
- One timed iteration: reset the environment, take `number` = 500 steps (resetting whenever an episode ends), then
  one update (finish_episode): discounted returns (gamma 0.99), standardised with float32's eps, loss =
  sum(-log pi(a_t) * R_t).
- Throughput: Mila's items/s is batch_size * number / time with batch_size left at its default 1, i.e. environment
  steps per second (mlbench-report's target: 2000, one CPU process).

Here the environment is a batch of `batch_size` cart-poles stepped together in torch on the device (Mila steps one
gym environment in Python), so one step is `batch_size` x `horizon` environment steps and one update;
items_per_step counts those environment steps, Mila's unit. One change: returns restart at each episode's end (Mila's
loop runs its discounted sum straight across the episodes of its 500-step window, a slip in adapting the
one-episode-per-update example; an episode cut off by the window's end is truncated, as in Mila's).

Quality: the mean return of held-out episodes (a second, differently seeded batch of cart-poles, one episode each,
greedy actions as the a2c-ppo repo's evaluation). Gym registers CartPole-v0 with reward_threshold 195 ("solved":
195 averaged over 100 episodes); the untrained policy keeps the pole up for about 10-100 steps (depending on its
initial weights). The environment is the real one, so the target is the published one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..run.training import Updater, autocast, cast, evaluating, prepare, seeded
from .registry import Quality, Setup, Workload, register
from .rl import discounted_returns, log_prob, mean_return, sample, standardise

# gym.envs.classic_control.CartPoleEnv
GRAVITY = 9.8
MASS_CART = 1.0
MASS_POLE = 0.1
TOTAL_MASS = MASS_CART + MASS_POLE
LENGTH = 0.5  #: half the pole's length
POLE_MASS_LENGTH = MASS_POLE * LENGTH
FORCE = 10.0
TAU = 0.02  #: seconds between state updates
THETA_LIMIT = 12 * 2 * math.pi / 360
X_LIMIT = 2.4


def dynamics(state: Tensor, force: Tensor) -> Tensor:
    """CartPoleEnv.step's physics for a batch: state (N, 4) = (x, x_dot, theta, theta_dot), force (N) +-10 N (action 1
    pushes right, 0 left); one explicit Euler step of tau (positions move with the old velocities)."""
    _, x_dot, theta, theta_dot = state.unbind(1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    temp = (force + POLE_MASS_LENGTH * theta_dot**2 * sin) / TOTAL_MASS
    theta_acc = (GRAVITY * sin - cos * temp) / (LENGTH * (4.0 / 3.0 - MASS_POLE * cos**2 / TOTAL_MASS))
    x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos / TOTAL_MASS
    return state + TAU * torch.stack([x_dot, x_acc, theta_dot, theta_acc], 1)


class CartPole:
    """`num_envs` CartPole-v0 environments (a `rl.VecEnv`): reset to U(-0.05, 0.05) per state variable, reward 1
    per step (the last one included), an episode ends on termination or after `max_episode_steps` steps."""

    def __init__(self, num_envs: int, device: torch.device, seed: int, max_episode_steps: int = 200) -> None:
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.state = torch.zeros(num_envs, 4, device=device)
        self.steps = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.reward = torch.ones(num_envs, device=device)
        self.limits = torch.tensor([X_LIMIT, THETA_LIMIT], device=device)
        self.forces = torch.tensor([-FORCE, FORCE], device=device)  #: by action

    def _initial(self) -> Tensor:
        return torch.empty_like(self.state).uniform_(-0.05, 0.05, generator=self.generator)

    def reset(self) -> Tensor:
        self.state = self._initial()
        self.steps.zero_()
        return self.state

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        state = dynamics(self.state, self.forces[action])
        self.steps += 1
        terminated = (state[:, 0::2].abs() > self.limits).any(1)  # |x| > 2.4 or |theta| > 12 degrees
        done = terminated | (self.steps >= self.max_episode_steps)
        self.state = torch.where(done.unsqueeze(1), self._initial(), state)
        self.steps.masked_fill_(done, 0)
        return self.state, self.reward, done


class Policy(nn.Module):
    """reinforce.py's Policy; returns the logits (the example's softmax is applied by the sampler and the loss)."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.affine1 = nn.Linear(4, hidden)
        self.affine2 = nn.Linear(hidden, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.affine2(torch.relu(self.affine1(x)))


class Reinforce:
    """Trainer: one step = reset, `horizon` steps of every environment, one REINFORCE update (Mila's timed loop)."""

    def __init__(self, setup: Setup) -> None:
        p, device = setup.preset, setup.device
        self.setup = setup
        self.env = CartPole(setup.batch_size, device, seed=0, max_episode_steps=p["max_episode_steps"])
        self.model = prepare(seeded(lambda: Policy(p["hidden"])), setup)
        self.update = Updater(torch.optim.Adam(self.model.parameters(), lr=p["lr"], fused=True), setup)
        self.autocast = autocast(setup)
        self.actions = torch.Generator(device=device).manual_seed(2)
        self.horizon, self.gamma = p["horizon"], p["gamma"]
        # items = environment steps, Mila's cart unit (its batch_size 1 x number 500 steps per timed iteration).
        self.items_per_step = setup.batch_size * self.horizon

    def step(self) -> Tensor:
        obs = self.env.reset()
        log_probs, rewards, dones = [], [], []
        with self.autocast:
            for _ in range(self.horizon):
                logits = self.model(cast(obs, self.setup))
                action = sample(logits, self.actions)
                log_probs.append(log_prob(logits, action))
                obs, reward, done = self.env.step(action)
                rewards.append(reward)
                dones.append(done)
        returns = discounted_returns(torch.stack(rewards), torch.stack(dones), self.gamma)
        loss = -(torch.stack(log_probs) * standardise(returns, torch.finfo(torch.float32).eps)).sum()
        self.update(loss)
        return loss.detach()

    def evaluate(self) -> float:
        p = self.setup.preset
        held_out = CartPole(p["eval_episodes"], self.setup.device, seed=1, max_episode_steps=p["max_episode_steps"])
        with evaluating(self.model, self.autocast):  # the same episodes every time
            return mean_return(held_out, lambda obs: self.model(cast(obs, self.setup)).argmax(-1))


def build(setup: Setup) -> Reinforce:
    return Reinforce(setup)


register(
    Workload(
        name="cart",
        family="reinforcement",
        task="training",
        unit="steps/s",
        description="Mila cart: pytorch/examples REINFORCE (4-128-2 MLP, Adam 1e-2) on CartPole-v0 vectorised in torch",
        presets={
            # reinforce.py as Mila runs it: 500 environment steps per update (--number 500), CartPole-v0.
            "real": {
                "horizon": 500,
                "max_episode_steps": 200,
                "hidden": 128,
                "lr": 1e-2,
                "gamma": 0.99,
                "eval_episodes": 100,
            },
            # The model is already tiny: the same policy and optimiser, 100-step windows (an episode that lasts
            # longer is cut at 100 steps, as Mila's 500-step window cuts its last one; a CPU step is as many
            # sequential environment steps, and 100 learn as fast per update as 200, in fewer seconds).
            "cpu": {
                "horizon": 100,
                "max_episode_steps": 200,
                "hidden": 128,
                "lr": 1e-2,
                "gamma": 0.99,
                "eval_episodes": 32,
            },
        },
        build=build,
        # The cpu preset reaches 195 in 15-25 steps at 32 environments (four seeds); Mila's run has no quality check.
        quality=Quality("held-out mean episode return", target=195.0, max_steps=150, eval_every=5, real_target=195.0),
    )
)
