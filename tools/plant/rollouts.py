"""Closed loops on any gymnasium env with Box spaces, for envs without a batched plant of our own.

Pendulum-v1 has ``tools.pendulum.BatchedPendulum`` (exact, vectorised numpy). Every other env runs
as a gymnasium vector env, one sub-env per seeded episode, stepped together so that a policy sees
one batch of observations per step; an episode's return stops counting when it terminates or
truncates (the vector env's own autoreset starts a new episode we ignore).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from tools.evaluate import Policy, as_policy, episode_seeds


def _vector_env(env_id: str, n: int):
    import gymnasium as gym

    return gym.make_vec(env_id, num_envs=n, vectorization_mode="sync")


def rollout_vector(policy: Policy, seeds: list[int], env_id: str, record: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Return of one episode per seed (episode i from reset(seed=seeds[i])); optionally the observations acted on."""
    envs = _vector_env(env_id, len(seeds))
    try:
        obs, _ = envs.reset(seed=[int(s) for s in seeds])
        total = np.zeros(len(seeds))
        done = np.zeros(len(seeds), dtype=bool)
        seen = []
        while not done.all():
            if record:
                seen.append(obs[~done].astype(np.float32))
            action = np.asarray(policy(obs.astype(np.float32)), dtype=np.float32).reshape(len(seeds), -1)
            obs, reward, terminated, truncated, _ = envs.step(action)
            total += np.where(done, 0.0, reward)
            done |= terminated | truncated
    finally:
        envs.close()
    return total, (np.concatenate(seen) if record else None)


def vector_return_objective(env_id: str, episodes: int, seed: int) -> Callable[[nn.Module], np.ndarray]:
    """objective(model) = per-episode returns on the vector env, the same seeds for every candidate."""
    seeds = episode_seeds(episodes, seed)

    def objective(model: nn.Module) -> np.ndarray:
        return rollout_vector(as_policy(model), seeds, env_id)[0]

    return objective


def vector_visit(env_id: str, episodes: int = 64, seed: int = 3000) -> Callable[[nn.Module], torch.Tensor]:
    """visit(model) -> observations the closed loop with ``model`` passes through on the vector env."""
    seeds = episode_seeds(episodes, seed)

    def states(model: nn.Module) -> torch.Tensor:
        return torch.from_numpy(rollout_vector(as_policy(model), seeds, env_id, record=True)[1]).float()

    return states


def search_callables(env_id: str, episodes: int, seed: int) -> tuple[Callable, Callable[..., Callable]]:
    """(objective, visit factory) for prune's search on env_id: the batched plant for Pendulum-v1, else a vector env."""
    from tools import objectives
    from tools.pendulum import ENV_ID

    if env_id == ENV_ID:
        return objectives.return_objective(episodes, seed), objectives.visit
    return vector_return_objective(env_id, episodes, seed), lambda episodes=64, seed=3000: vector_visit(env_id, episodes, seed)
