"""Closed loops, one episode per seed: on the batched plant (fast), in gymnasium (the judge), on a vector env.

Closed loops on any gymnasium env with Box spaces, for envs without a batched plant of our own:

Pendulum-v1 has ``tools.pendulum.BatchedPendulum`` (exact, vectorised numpy). Every other env runs
as a gymnasium vector env, one sub-env per seeded episode, stepped together so that a policy sees
one batch of observations per step; an episode's return stops counting when it terminates or
truncates (the vector env's own autoreset starts a new episode we ignore).
"""

from __future__ import annotations

import numpy as np

from tools.plant.pendulum import ENV_ID, BatchedPendulum
from tools.plant.policy import Policy


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


def _vector_env(env_id: str, n: int):
    import gymnasium as gym

    return gym.make_vec(env_id, num_envs=n, vectorization_mode="sync")


def rollout_vector(
    policy: Policy, seeds: list[int], env_id: str, record: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
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
