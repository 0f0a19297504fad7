"""Reinforcement-learning pieces shared by Mila's cart and atari workloads: environments vectorised on the device,
action sampling, returns, rollout storage and the actor-critic losses of ikostrikov's pytorch-a2c-ppo-acktr.

Environments are batched tensors (no gym, no worker processes): `step` takes one action per environment and auto-resets
those whose episode ended, as gym's vectorised environments (and the repo's `make_vec_envs`) do, so a rollout is a
plain loop with no host synchronisation. Everything here returns float32 (losses are never computed in low precision).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


class VecEnv(Protocol):
    num_envs: int
    #: the longest an episode can last, in agent steps: `mean_return` runs at most this many
    max_episode_steps: int

    def reset(self) -> Tensor:
        """Start a new episode in every environment; returns the observations."""
        ...

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(observation, reward float32, done bool), one per environment; an environment whose episode ended
        (done) is reset, and its observation is the new episode's first one, as in gym's vector envs."""
        ...


def sample(logits: Tensor, generator: torch.Generator) -> Tensor:
    """One action per row from softmax(logits), by the Gumbel-max trick: argmax(logits - log E), E ~ Exp(1). Same
    law as torch.distributions.Categorical.sample, with a seeded generator and no host synchronisation."""
    noise = torch.empty_like(logits, dtype=torch.float32).exponential_(generator=generator)
    return (logits.float() - noise.log()).argmax(-1)


def log_prob(logits: Tensor, actions: Tensor) -> Tensor:
    """log pi(action) per row, in float32."""
    return F.log_softmax(logits.float(), -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def log_prob_entropy(logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """log pi(action) per row and the mean entropy of the categorical policies, in float32."""
    log_p = F.log_softmax(logits.float(), -1)
    entropy = -(log_p.exp() * log_p).sum(-1).mean()
    return log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1), entropy


def discounted_returns(rewards: Tensor, dones: Tensor, gamma: float, next_value: Tensor | None = None) -> Tensor:
    """R_t = r_t + gamma (1 - done_t) R_{t+1} over (T, N) rewards, bootstrapped from `next_value` (N) after the last
    step (zero: REINFORCE's truncation). An episode's return stops at its end (`dones[t]`: the episode ended on step
    t), as the repo's RolloutStorage.compute_returns masks do."""
    keep = (~dones).float()
    running = torch.zeros_like(rewards[0]) if next_value is None else next_value.float()
    returns = torch.empty_like(rewards, dtype=torch.float32)
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * keep[t] * running
        returns[t] = running
    return returns


def gae_returns(rewards: Tensor, values: Tensor, dones: Tensor, next_value: Tensor, gamma: float, lam: float) -> Tensor:
    """Generalised advantage estimation (Schulman et al. 2016) as compute_returns(use_gae=True): returns = GAE
    advantages + values, (T, N)."""
    keep = (~dones).float()
    values = values.float()
    next_values = torch.cat([values[1:], next_value.float().unsqueeze(0)])
    deltas = rewards + gamma * next_values * keep - values
    gae = torch.zeros_like(next_value, dtype=torch.float32)
    returns = torch.empty_like(values)
    for t in reversed(range(len(rewards))):
        gae = deltas[t] + gamma * lam * keep[t] * gae
        returns[t] = gae + values[t]
    return returns


def standardise(x: Tensor, eps: float) -> Tensor:
    """(x - mean) / (std + eps): the advantage (PPO, eps 1e-5) and return (REINFORCE) normalisation."""
    return (x - x.mean()) / (x.std() + eps)


class Rollout:
    """The repo's RolloutStorage for a feed-forward policy: `steps` transitions of `num_envs` environments, plus the
    observation after the last one (the next rollout's first). Observations keep the environment's dtype (uint8
    frames: a quarter of the float32 memory)."""

    def __init__(self, steps: int, first_obs: Tensor) -> None:
        n, device = first_obs.shape[0], first_obs.device
        self.obs = first_obs.new_empty(steps + 1, *first_obs.shape)
        self.obs[0] = first_obs
        self.actions = torch.empty(steps, n, dtype=torch.long, device=device)
        self.log_probs = torch.empty(steps, n, device=device)
        self.values = torch.empty(steps, n, device=device)
        self.rewards = torch.empty(steps, n, device=device)
        self.dones = torch.empty(steps, n, dtype=torch.bool, device=device)

    def __len__(self) -> int:
        return len(self.actions)

    def insert(
        self, t: int, action: Tensor, log_prob: Tensor, value: Tensor, obs: Tensor, reward: Tensor, done: Tensor
    ) -> None:
        self.actions[t], self.log_probs[t], self.values[t] = action, log_prob, value
        self.obs[t + 1], self.rewards[t], self.dones[t] = obs, reward, done

    def after_update(self) -> None:
        """The last observation starts the next rollout (the environments carry on)."""
        self.obs[0] = self.obs[-1]


def a2c_loss(
    logits: Tensor, values: Tensor, actions: Tensor, returns: Tensor, value_coef: float, entropy_coef: float
) -> Tensor:
    """A2C_ACKTR.update's loss (A2C): value_coef * (R - V)^2 + policy gradient with advantage R - V (not
    normalised, no gradient into V through it) - entropy_coef * entropy, over one flattened rollout."""
    log_p, entropy = log_prob_entropy(logits, actions)
    advantages = returns - values.float()
    value_loss = advantages.pow(2).mean()
    action_loss = -(advantages.detach() * log_p).mean()
    return value_coef * value_loss + action_loss - entropy_coef * entropy


def ppo_loss(
    logits: Tensor,
    values: Tensor,
    actions: Tensor,
    old_log_probs: Tensor,
    old_values: Tensor,
    returns: Tensor,
    advantages: Tensor,
    clip: float,
    value_coef: float,
    entropy_coef: float,
) -> Tensor:
    """PPO.update's loss on one minibatch: the clipped surrogate (Schulman et al. 2017), the clipped value loss
    (use_clipped_value_loss=True, the repo's default) and the entropy bonus."""
    log_p, entropy = log_prob_entropy(logits, actions)
    ratio = torch.exp(log_p - old_log_probs)
    action_loss = -torch.min(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages).mean()
    values = values.float()
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    value_loss = torch.max((values - returns).pow(2), (clipped - returns).pow(2)).mean()
    return value_coef * value_loss + action_loss - entropy_coef * entropy


def mean_return(env: VecEnv, policy: Callable[[Tensor], Tensor], check_every: int = 10) -> float:
    """Mean return of the first episode of every environment of `env`, acting with `policy` (observations ->
    actions): the held-out evaluation (the repo's evaluation.py, on its own seeded environments). At most
    `max_episode_steps` steps, stopping early once every episode has ended (checked every `check_every` steps, a
    host synchronisation each); rewards after an episode's end are ignored."""
    obs = env.reset()
    total = torch.zeros(env.num_envs, device=obs.device)
    running = torch.ones(env.num_envs, dtype=torch.bool, device=obs.device)
    for t in range(1, env.max_episode_steps + 1):
        obs, reward, done = env.step(policy(obs))
        total += reward * running
        running &= ~done
        if t % check_every == 0 and not running.any():
            break
    return float(total.mean())
