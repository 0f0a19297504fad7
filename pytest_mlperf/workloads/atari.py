"""Mila's atari benchmark: ikostrikov's pytorch-a2c-ppo-acktr (Mila's reinforcement/atari/pytorch/main.py copy) training
PPO on PongNoFrameskip-v4, with a small Atari-like game built in torch in place of the ROM.

What Mila runs (baselines.json "atari"): --algo ppo --num-processes 16 --num-steps 128 --use-gae --clip-param 0.1
--value-loss-coef 0.5 --num-mini-batch 4 --use-linear-lr-decay --entropy-coef 0.01, and the repo's defaults for the
rest: Adam lr 7e-4 eps 1e-5, gamma 0.99, GAE lambda 0.95, 4 PPO epochs, gradient-norm clip 0.5, clipped value loss.
Not the repo's default A2C (16 x 5 steps, RMSprop lr 7e-4 eps 1e-5 alpha 0.99), which `algo: "a2c"` selects.

- Observations as the repo's make_vec_envs builds them for Atari: frame skip 4 with the max of the last two frames
  (MaxAndSkipEnv), 84x84 grayscale (WarpFrame), rewards clipped to their sign (ClipRewardEnv), the last 4 frames
  stacked (VecPyTorchFrameStack, zeroed when an episode ends), uint8 0-255 scaled by 1/255 in the network.
- Network: CNNBase, the Nature DQN trunk: conv 32 8x8/4, conv 64 4x4/2, conv 32 3x3/1, FC 512, ReLUs, orthogonal
  initialisation (ReLU gain; 1 for the critic, 0.01 for the policy head), zero biases. With Pong's 6 actions it has
  866,439 parameters: 8,224 + 32,832 + 18,464 convolution, 803,328 FC, 513 critic, 3,078 actor.
- One iteration of Mila's timed loop: 128 steps of the 16 environments, then one PPO update (4 epochs over 4 shuffled
  minibatches of 512). Mila reports items/s = batch_size * number / time with batch_size set to num_processes, so
  one item is one environment's 128-step rollout: 16 per update. items_per_step here is the same (the environment
  count, `batch_size` in the system file), hence the unit "rollouts/s"; agent steps/s = rollouts/s x num_steps, and
  emulator frames/s 4 times that.

The game ("catch"): a ball falls from the top of the screen, drifting sideways and bouncing off the side walls, to a
paddle at the bottom that the agent moves left or right. Catching it scores +1, missing it -1 (Pong's points), a new
ball is served, and an episode is `balls` balls (the cpu preset's balls fall straight down). Its actions are Pong's
six (NOOP, FIRE, RIGHT, LEFT, RIGHTFIRE, LEFTFIRE; FIRE does nothing) so the real network is the published Pong one.
Every environment is simulated at once on the device: the ball's path is closed-form (a triangle wave for the
bounces), so a step renders the 3rd and 4th skipped frames directly. Not modelled: Atari's sticky randomness and
no-op starts (the serve is random instead), lives (EpisodicLifeEnv) and FireResetEnv (nothing to fire).

Quality: mean return of held-out episodes (other seeds), greedy actions as the repo's evaluation.py
(deterministic=True). An untrained policy catches a fifth to a third of the balls.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..run.training import Updater, autocast, evaluating, prepare, seeded
from .registry import Preset, Quality, Setup, Workload, register
from .rl import Rollout, a2c_loss, discounted_returns, gae_returns, log_prob, mean_return, ppo_loss, sample, standardise

SKIP = 4  #: MaxAndSkipEnv(skip=4)
BALL, PADDLE = 236, 148  #: grey levels (uint8)
#: Pong's action set: NOOP, FIRE, RIGHT, LEFT, RIGHTFIRE, LEFTFIRE -> paddle direction
DIRECTIONS = (0, 0, 1, -1, 1, -1)


def bounce(x: Tensor, width: Tensor | float) -> Tensor:
    """Where a point moving freely to `x` ends up between walls at 0 and `width`, reflected at each: a triangle
    wave of period 2 * width."""
    r = torch.remainder(x, 2 * width)
    return width - (r - width).abs()


class Catch:
    """`num_envs` games of catch (a `rl.VecEnv`) whose observations are the stacked uint8 frames
    (num_envs, stack, size, size) of Atari's wrappers. Lengths in pixels, times in emulator frames."""

    def __init__(
        self,
        num_envs: int,
        device: torch.device,
        seed: int,
        size: int = 84,
        ball: int = 3,
        paddle: int = 12,
        speed: float = 2.0,
        drift: float = 1.0,
        fall: int = 15,
        balls: int = 5,
        stack: int = 4,
    ) -> None:
        self.num_envs, self.size, self.ball, self.paddle = num_envs, size, ball, paddle
        self.drift, self.balls = drift, balls
        self.fall_frames = fall * SKIP  #: a ball reaches the paddle after `fall` agent steps
        self.max_episode_steps = fall * balls
        self.paddle_row = size - 2 * ball
        self.centre = (size - paddle) / 2
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.pixels = torch.arange(size, device=device)
        self.paddle_rows = ((self.pixels >= self.paddle_row) & (self.pixels < self.paddle_row + ball)).unsqueeze(-1)
        self.directions = torch.tensor(DIRECTIONS, device=device, dtype=torch.float32) * speed
        self.last_two = torch.tensor([[SKIP - 1.0], [SKIP]], device=device)  #: the frames MaxAndSkipEnv keeps
        zeros = torch.zeros(num_envs, device=device)
        # The serve: where the ball starts (x0) and its sideways speed (vx, per frame); frames since the serve (t).
        self.x0, self.vx, self.t = zeros.clone(), zeros.clone(), zeros.clone()
        self.paddle_x, self.left, self.top = zeros.clone(), zeros.clone(), zeros
        self.frames = torch.zeros(num_envs, stack, size, size, dtype=torch.uint8, device=device)

    def _serve(self, where: Tensor) -> None:
        """A new ball where `where` (bool, per environment): random column and drift, at the top."""
        x0, vx = torch.rand(2, self.num_envs, generator=self.generator, device=where.device)
        self.x0 = torch.where(where, x0 * (self.size - self.ball), self.x0)
        self.vx = torch.where(where, (vx * 2 - 1) * self.drift, self.vx)
        self.t = torch.where(where, 0.0, self.t)

    def _ball(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """The ball's top-left corner (x, y) `t` frames after its serve."""
        y = t * ((self.paddle_row - self.ball) / self.fall_frames)
        return bounce(self.x0 + self.vx * t, self.size - self.ball), y

    def _render(self, ball_x: Tensor, ball_y: Tensor, paddle_x: Tensor) -> Tensor:
        """(..., size, size) uint8 frames of the ball and the paddle, given their top-left corners (...)."""

        def span(start: Tensor, length: int) -> Tensor:
            offset = self.pixels - start.floor().unsqueeze(-1)
            return (offset >= 0) & (offset < length)

        ball = span(ball_y, self.ball).unsqueeze(-1) & span(ball_x, self.ball).unsqueeze(-2)
        paddle = self.paddle_rows & span(paddle_x, self.paddle).unsqueeze(-2)
        return torch.where(ball, BALL, torch.where(paddle, PADDLE, 0)).to(torch.uint8)

    def reset(self) -> Tensor:
        self._serve(torch.ones(self.num_envs, dtype=torch.bool, device=self.pixels.device))
        self.paddle_x = torch.full_like(self.paddle_x, self.centre)
        self.left = torch.full_like(self.left, self.balls)
        self.frames.zero_()
        self.frames[:, -1] = self._render(self.x0, self.top, self.paddle_x)
        return self.frames.clone()

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # The action is repeated for SKIP frames; the paddle moves `speed` per frame, stopped by the walls (moving one
        # way, clamping once at the end is the same as clamping every frame). (2, N): the last two frames.
        paddle = (self.paddle_x + self.directions[action] * self.last_two).clamp(0, self.size - self.paddle)
        ball_x, ball_y = self._ball(self.t + self.last_two)
        # A ball reaches the paddle row at the end of a step (fall_frames is a multiple of SKIP): caught or missed.
        self.t = self.t + SKIP
        landed = self.t >= self.fall_frames
        caught = (ball_x[1] < paddle[1] + self.paddle) & (ball_x[1] + self.ball > paddle[1])
        reward = torch.where(landed, caught.float() * 2 - 1, 0.0).sign()  # ClipRewardEnv: the sign of the sum
        self.left = self.left - landed.float()
        done = self.left <= 0
        self._serve(landed)
        self.paddle_x = torch.where(done, self.centre, paddle[1])
        self.left = torch.where(done, float(self.balls), self.left)
        # Frames 3 and 4 of the step, and the first frame of a new episode (the reset observation vectorised gym
        # environments return for it): one render of (3, N).
        images = self._render(
            torch.cat([ball_x, self.x0.unsqueeze(0)]),
            torch.cat([ball_y, self.top.unsqueeze(0)]),
            torch.cat([paddle, self.paddle_x.unsqueeze(0)]),
        )
        newest = torch.where(done.view(-1, 1, 1), images[2], images[:2].amax(0))  # MaxAndSkipEnv: max of the two
        # VecPyTorchFrameStack: shift, zero the stack of a new episode, newest frame last.
        self.frames = torch.cat([self.frames[:, 1:] * ~done.view(-1, 1, 1, 1), newest.unsqueeze(1)], 1)
        return self.frames, reward, done


def conv_size(size: int) -> int:
    """Side of CNNBase's last feature map for size x size frames (7 for 84)."""
    for kernel, stride in ((8, 4), (4, 2), (3, 1)):
        size = (size - kernel) // stride + 1
    if size < 1:
        raise ValueError("CNNBase needs frames of at least 36x36")
    return size


def orthogonal(layer: nn.Module, gain: float) -> nn.Module:
    """The repo's init(): orthogonal weights with `gain`, zero biases."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    """CNNBase and the Categorical head of the repo's Policy: uint8 frames -> (action logits, value)."""

    def __init__(
        self, actions: int, frames: int = 4, size: int = 84, widths: Sequence[int] = (32, 64, 32), hidden: int = 512
    ) -> None:
        super().__init__()
        c1, c2, c3 = widths
        relu = nn.init.calculate_gain("relu")
        self.main = nn.Sequential(
            orthogonal(nn.Conv2d(frames, c1, 8, stride=4), relu),
            nn.ReLU(),
            orthogonal(nn.Conv2d(c1, c2, 4, stride=2), relu),
            nn.ReLU(),
            orthogonal(nn.Conv2d(c2, c3, 3, stride=1), relu),
            nn.ReLU(),
            nn.Flatten(),
            orthogonal(nn.Linear(c3 * conv_size(size) ** 2, hidden), relu),
            nn.ReLU(),
        )
        self.critic_linear = orthogonal(nn.Linear(hidden, 1), 1.0)
        self.dist = orthogonal(nn.Linear(hidden, actions), 0.01)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """obs: (N, frames, size, size) uint8; converted to the parameters' dtype, channels-last (the layout the
        trainer gives the convolutions) and scaled by 1/255 as CNNBase does."""
        x = obs.to(dtype=self.critic_linear.weight.dtype, memory_format=torch.channels_last) / 255.0
        x = self.main(x)
        return self.dist(x), self.critic_linear(x).squeeze(-1)


def game(p: Preset, num_envs: int, device: torch.device, seed: int) -> Catch:
    keys = ("size", "ball", "paddle", "speed", "drift", "fall", "balls", "stack")
    return Catch(num_envs, device, seed, **{k: p[k] for k in keys})


class ActorCriticTrainer:
    """One step = `num_steps` steps of every environment (carried on from the previous step, as the repo's loop),
    then one PPO update (`ppo_epoch` epochs of `num_mini_batch` minibatches) or one A2C update."""

    def __init__(self, setup: Setup) -> None:
        p, n, device = setup.preset, setup.batch_size, setup.device
        self.p = p
        self.env = game(p, n, device, seed=0)
        self.device = device
        self.model = prepare(
            seeded(lambda: ActorCritic(len(DIRECTIONS), p["stack"], p["size"], p["widths"], p["hidden"])),
            setup,
            channels_last=True,
        )
        if p["algo"] == "ppo":
            optimizer: torch.optim.Optimizer = torch.optim.Adam(
                self.model.parameters(), lr=p["lr"], eps=p["eps"], fused=True
            )
        elif p["algo"] == "a2c":
            optimizer = torch.optim.RMSprop(
                self.model.parameters(), lr=p["lr"], eps=p["eps"], alpha=p["alpha"], foreach=True
            )
        else:
            raise ValueError(f"algo is 'ppo' or 'a2c', not {p['algo']!r}")
        self.update = Updater(optimizer, setup, clip=p["max_grad_norm"])
        self.autocast = autocast(setup)
        self.rollout = Rollout(p["num_steps"], self.env.reset())
        self.generator = torch.Generator(device=device).manual_seed(2)  # actions and minibatches
        # --use-linear-lr-decay: lr falls linearly to 0 over num_env_steps // num_steps // num_processes updates (by
        # update count, as the repo's main.py; Mila's copy passes its repeat counter, which a benchmark's few dozen
        # updates barely move either way).
        self.decay_updates = p["env_steps"] // (p["num_steps"] * n) if p["lr_decay"] else 0
        self.updates = 0
        # items = rollouts, Mila's atari unit (batch_size = num_processes per update; see the module docstring).
        self.items_per_step = n

    def step(self) -> Tensor:
        if self.decay_updates:
            fraction = max(0.0, 1 - self.updates / self.decay_updates)
            self.update.optimizer.param_groups[0]["lr"] = self.p["lr"] * fraction
        self.updates += 1
        next_value = self._collect()
        r, p = self.rollout, self.p
        if p["gae_lambda"] is None:
            returns = discounted_returns(r.rewards, r.dones, p["gamma"], next_value)
        else:
            returns = gae_returns(r.rewards, r.values, r.dones, next_value, p["gamma"], p["gae_lambda"])
        loss = self._ppo(returns) if p["algo"] == "ppo" else self._a2c(returns)
        r.after_update()
        return loss

    def _collect(self) -> Tensor:
        """Fill the rollout with the current policy's sampled actions; returns the value of the last observation."""
        r = self.rollout
        with torch.no_grad(), self.autocast:
            for t in range(len(r)):
                logits, value = self.model(r.obs[t])
                action = sample(logits, self.generator)
                r.insert(t, action, log_prob(logits, action), value, *self.env.step(action))
            return self.model(r.obs[-1])[1].float()

    def _ppo(self, returns: Tensor) -> Tensor:
        r, p = self.rollout, self.p
        obs = r.obs[:-1].flatten(0, 1)
        actions, old_log_probs, old_values = r.actions.flatten(), r.log_probs.flatten(), r.values.flatten()
        returns = returns.flatten()
        advantages = standardise(returns - old_values, 1e-5)
        size = len(actions) // p["num_mini_batch"]
        losses = []
        for _ in range(p["ppo_epoch"]):
            order = torch.randperm(len(actions), generator=self.generator, device=actions.device)
            for i in order.split(size):
                with self.autocast:
                    logits, values = self.model(obs[i])
                loss = ppo_loss(
                    logits,
                    values,
                    actions[i],
                    old_log_probs[i],
                    old_values[i],
                    returns[i],
                    advantages[i],
                    p["clip_param"],
                    p["value_loss_coef"],
                    p["entropy_coef"],
                )
                self.update(loss)
                losses.append(loss.detach())
        return torch.stack(losses).mean()

    def _a2c(self, returns: Tensor) -> Tensor:
        r, p = self.rollout, self.p
        with self.autocast:
            logits, values = self.model(r.obs[:-1].flatten(0, 1))
        loss = a2c_loss(logits, values, r.actions.flatten(), returns.flatten(), p["value_loss_coef"], p["entropy_coef"])
        self.update(loss)
        return loss.detach()

    def evaluate(self) -> float:
        held_out = game(self.p, self.p["eval_episodes"], self.device, seed=1)  # the same episodes every time
        with evaluating(self.model, self.autocast):
            return mean_return(held_out, lambda obs: self.model(obs)[0].argmax(-1))


def build(setup: Setup) -> ActorCriticTrainer:
    return ActorCriticTrainer(setup)


#: Mila's baselines.json atari arguments and the repo's defaults for the others.
MILA_PPO = {
    "algo": "ppo",
    "num_steps": 128,
    "ppo_epoch": 4,
    "num_mini_batch": 4,
    "clip_param": 0.1,
    "value_loss_coef": 0.5,
    "entropy_coef": 0.01,
    "lr": 7e-4,
    "eps": 1e-5,
    "alpha": 0.99,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "max_grad_norm": 0.5,
    "lr_decay": True,
    "env_steps": 10_000_000,
}

register(
    Workload(
        name="atari",
        family="reinforcement",
        task="training",
        unit="rollouts/s",
        description="Mila atari: a2c-ppo-acktr PPO (Nature CNN, 16 envs x 128 steps), a built-in 84x84 Atari-like game",
        presets={
            "real": {
                **MILA_PPO,
                "widths": (32, 64, 32),
                "hidden": 512,
                "size": 84,
                "stack": 4,
                "ball": 3,
                "paddle": 12,
                "speed": 2.0,
                "drift": 1.0,
                "fall": 15,
                "balls": 5,
                "eval_episodes": 16,
            },
            # 36x36 frames (the smallest CNNBase takes: 1x1 after its last convolution), narrower layers, 8-step
            # rollouts (more environments learn faster than longer rollouts), shorter straight falls; the same PPO.
            "cpu": {
                **MILA_PPO,
                "num_steps": 8,
                "widths": (8, 16, 16),
                "hidden": 64,
                "size": 36,
                "stack": 4,
                "ball": 2,
                "paddle": 8,
                "speed": 1.0,
                "drift": 0.0,
                "fall": 6,
                "balls": 5,
                "eval_episodes": 32,
            },
        },
        build=build,
        # 3 = four balls in five caught. The cpu preset goes from about -2.5 (untrained) to 3 in 30-50 steps at 32
        # environments (five seeds, fp32 and bf16); at 16 environments one seed in two stalled near 2.5.
        quality=Quality("held-out mean episode return (5 balls, +1 caught, -1 missed)", target=3.0, max_steps=200),
    )
)
