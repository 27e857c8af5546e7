"""Closed-loop return of a policy on Pendulum-v1: fast (batched plant) or judged by gymnasium itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from tools.pendulum import ENV_ID, BatchedPendulum

Policy = Callable[[np.ndarray], np.ndarray]
JUDGES = ("fast", "gym")


@dataclass
class ReturnStats:
    """Per-episode returns (in seed order) and their summary."""

    judge: str
    seeds: list[int]
    returns: list[float]
    mean: float
    std: float
    min: float

    @classmethod
    def of(cls, judge: str, seeds: list[int], returns: np.ndarray) -> "ReturnStats":
        r = np.asarray(returns, dtype=np.float64)
        return cls(judge, list(seeds), r.tolist(), float(r.mean()), float(r.std()), float(r.min()))

    def to_dict(self) -> dict:
        return asdict(self)


def as_policy(module: nn.Module) -> Policy:
    """Wrap a torch module as a numpy batch policy (float32 in, float32 out, no grad)."""

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    return policy


def episode_seeds(episodes: int, seed: int) -> list[int]:
    """Episode i starts from gymnasium's reset(seed=seed + i)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return list(range(seed, seed + episodes))


def rollout_fast(policy: Policy, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Play one episode per seed on the batched plant; return (returns, angle trajectory (T, N))."""
    plant = BatchedPendulum()
    obs = plant.reset(seeds)
    total = np.zeros(len(seeds))
    angles = np.empty((plant.max_episode_steps, len(seeds)))
    for t in range(plant.max_episode_steps):
        obs, reward = plant.step(policy(obs))
        total += reward
        angles[t] = plant.state[:, 0]
    return total, angles


def rollout_gym(policy: Policy, seeds: list[int], env_id: str = ENV_ID) -> np.ndarray:
    """Play one episode per seed in ``gymnasium.make(env_id)`` (default Pendulum-v1), the judge."""
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    try:
        for s in seeds:
            obs, _ = env.reset(seed=int(s))
            total, done = 0.0, False
            while not done:
                action = np.asarray(policy(obs[None, :]), dtype=np.float32).reshape(-1)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return np.array(returns)


def closed_loop_return(policy: Policy | nn.Module, episodes: int = 100, seed: int = 0, judge: str = "fast",
                       env_id: str = ENV_ID) -> ReturnStats:
    """Mean, std and min of the return over ``episodes`` seeded episodes (seeds seed..seed+episodes-1).

    judge 'fast' is the batched plant for Pendulum-v1 and a gymnasium vector env for any other env id.
    """
    if judge not in JUDGES:
        raise ValueError(f"judge must be one of {JUDGES}, got {judge!r}")
    if isinstance(policy, nn.Module):
        policy = as_policy(policy)
    seeds = episode_seeds(episodes, seed)
    if judge == "gym":
        returns = rollout_gym(policy, seeds, env_id)
    elif env_id == ENV_ID:
        returns = rollout_fast(policy, seeds)[0]
    else:
        from tools.env_rollouts import rollout_vector

        returns = rollout_vector(policy, seeds, env_id)[0]
    return ReturnStats.of(judge, seeds, returns)
