"""Batched Pendulum-v1: gymnasium's plant, stepping N episodes at once.

The physics is gymnasium's ``PendulumEnv.step`` line for line, with arrays in place of scalars, so
that a policy can be searched over hundreds of episodes in the time gymnasium runs one.

| observation | ``[cos(theta), sin(theta), theta_dot]``, float32, theta_dot in [-8, 8]      |
|-------------|-----------------------------------------------------------------------------|
| action      | torque in [-2, 2], clipped                                                  |
| reward      | ``-(angle_normalize(theta)**2 + 0.1 * theta_dot**2 + 0.001 * torque**2)``  |
| start state | theta uniform in [-pi, pi], theta_dot uniform in [-1, 1], from the seed     |
| episode     | 200 steps, no termination                                                   |

Start states come from the same generator gymnasium seeds in ``reset(seed=s)``, so episode i of a
batch started from ``seeds[i]`` is the very episode ``gymnasium.make("Pendulum-v1")`` plays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

ENV_ID = "Pendulum-v1"


def angle_normalize(x):
    """Wrap an angle to [-pi, pi), as gymnasium does (works on numpy and torch)."""
    return ((x + np.pi) % (2 * np.pi)) - np.pi


class BatchedPendulum:
    """N independent Pendulum-v1 episodes stepped together in float64 numpy."""

    max_speed = 8.0
    max_torque = 2.0
    dt = 0.05
    g = 10.0
    m = 1.0
    l = 1.0  # noqa: E741 - gymnasium's name for the length
    max_episode_steps = 200
    damping = 0.0  # viscous friction (1/s); 0 in Pendulum-v1, set off nominal by tools.plant.scenarios

    def __init__(self) -> None:
        self.state = np.zeros((0, 2))

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        """Start one episode per seed, each from gymnasium's own start state for that seed."""
        high = np.array([np.pi, 1.0])
        starts = [
            np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(s)))).uniform(low=-high, high=high)
            for s in seeds
        ]
        self.state = np.array(starts, dtype=np.float64).reshape(-1, 2)
        return self.observation()

    def reset_to(self, state: np.ndarray) -> np.ndarray:
        """Start from given (theta, theta_dot) rows, e.g. for data collection."""
        self.state = np.asarray(state, dtype=np.float64).reshape(-1, 2).copy()
        return self.observation()

    def observation(self) -> np.ndarray:
        th, thdot = self.state[:, 0], self.state[:, 1]
        return np.stack([np.cos(th), np.sin(th), thdot], axis=1).astype(np.float32)

    def step(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply torques of shape (N,) or (N, 1); return (observation, reward)."""
        th, thdot = self.state[:, 0], self.state[:, 1]
        g, m, l, dt = self.g, self.m, self.l, self.dt  # noqa: E741
        # Keep the caller's dtype: gymnasium computes with a float32 torque when given one.
        u = np.clip(np.asarray(u).reshape(len(th), -1)[:, 0], -self.max_torque, self.max_torque)
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)

        newthdot = thdot + (3 * g / (2 * l) * np.sin(th) + 3.0 / (m * l**2) * u) * dt
        if self.damping:  # only off nominal: Pendulum-v1's own step stays the line above, bit for bit
            newthdot = newthdot - self.damping * thdot * dt
        newthdot = np.clip(newthdot, -self.max_speed, self.max_speed)
        newth = th + newthdot * dt

        self.state = np.stack([newth, newthdot], axis=1)
        return self.observation(), -costs


def torch_step(state: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable Pendulum-v1 step on (N, 2) states and (N,) torques; returns (state, reward).

    The same equations as :class:`BatchedPendulum`, for training through the plant and for
    linearising the closed loop.
    """
    p = BatchedPendulum
    th, thdot = state[:, 0], state[:, 1]
    u = u.clamp(-p.max_torque, p.max_torque)
    reward = -(angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2)
    newthdot = thdot + (3 * p.g / (2 * p.l) * torch.sin(th) + 3.0 / (p.m * p.l**2) * u) * p.dt
    newthdot = newthdot.clamp(-p.max_speed, p.max_speed)
    newth = th + newthdot * p.dt
    return torch.stack([newth, newthdot], dim=1), reward


def torch_observation(state: torch.Tensor) -> torch.Tensor:
    """Observation of (N, 2) states, differentiable."""
    th, thdot = state[:, 0], state[:, 1]
    return torch.stack([torch.cos(th), torch.sin(th), thdot], dim=1)
