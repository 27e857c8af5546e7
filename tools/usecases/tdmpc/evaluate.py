"""Closed-loop return of the TD-MPC agent *with planning*: on the fast plant, or judged by gymnasium.

Planning costs far more than an MLP forward pass, so the gymnasium judge plays its episodes in
lockstep: one ``gymnasium.make('Pendulum-v1')`` per episode, each reset with its own seed and
stepped by gymnasium itself, while the planner acts on all of their observations in one batch.
Every episode is still gymnasium's own episode for that seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import torch
from torch import nn

from tools.plant.episodes import JUDGES, episode_seeds
from tools.plant.evaluate import ReturnStats
from tools.plant.pendulum import ENV_ID, BatchedPendulum
from tools.plant.rollouts import rollout_fast
from tools.usecases.tdmpc.agent import MAX_TORQUE, Planner, PlannerConfig, TDMPCAgent

SEARCH_SEED = 2000  # search episodes, disjoint from the judge's 0..99 and the training validation 1000..
SEARCH_EPISODES = 16


def rollout_gym_lockstep(policy: Callable[[np.ndarray], np.ndarray], seeds: list[int]) -> np.ndarray:
    """One gymnasium Pendulum-v1 episode per seed, stepped together; returns per episode."""
    import gymnasium as gym

    envs = [gym.make(ENV_ID) for _ in seeds]
    try:
        obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)])
        totals = np.zeros(len(seeds))
        done = np.zeros(len(seeds), dtype=bool)
        while not done.all():
            actions = np.asarray(policy(obs), dtype=np.float32).reshape(len(seeds), -1)
            for i, env in enumerate(envs):
                if done[i]:
                    continue
                o, r, terminated, truncated, _ = env.step(actions[i])
                obs[i], totals[i] = o, totals[i] + float(r)
                done[i] = terminated or truncated
    finally:
        for env in envs:
            env.close()
    return totals


def planning_return(
    agent: TDMPCAgent, planner: PlannerConfig, episodes: int = 100, start: int = 0, judge: str = "fast", seed: int = 0
) -> ReturnStats:
    """Return of MPPI planning with ``agent`` over episodes seeded start..start+episodes-1 (planner noise from ``seed``)."""
    if judge not in JUDGES:
        raise ValueError(f"judge must be one of {JUDGES}, got {judge!r}")
    seeds = episode_seeds(episodes, start)
    policy = Planner(agent, planner, seed=seed)
    returns = rollout_fast(policy, seeds)[0] if judge == "fast" else rollout_gym_lockstep(policy, seeds)
    return ReturnStats.of(judge, seeds, returns)


def visited_inputs(
    agent: TDMPCAgent, planner: PlannerConfig, episodes: int = SEARCH_EPISODES, start: int = SEARCH_SEED, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(obs, a) for the agent's forward: observations its planning visits on the fast plant, each twice,
    with the action the planner chose and with a uniform random one (planning queries d, R and Q off
    its chosen actions too). For prune's least-squares re-fit of layers that lost inputs."""
    plant, policy = BatchedPendulum(), Planner(agent, planner, seed=seed)
    obs = plant.reset(episode_seeds(episodes, start))
    seen, acts = [], []
    for _ in range(plant.max_episode_steps):
        action = policy(obs)
        seen.append(obs)
        acts.append(action / MAX_TORQUE)
        obs, _ = plant.step(action)
    o = torch.as_tensor(np.concatenate(seen))
    chosen = torch.as_tensor(np.concatenate(acts))
    rand = torch.rand(chosen.shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return torch.cat([o, o]), torch.cat([chosen, rand])


def planning_objective(
    planner: PlannerConfig, episodes: int = SEARCH_EPISODES, start: int = SEARCH_SEED, seed: int = 0
) -> Callable[[nn.Module], np.ndarray]:
    """objective(agent) = per-episode planning return on the fast plant, fixed seeds and planner noise (for prune/)."""

    def objective(agent: nn.Module) -> np.ndarray:
        return np.asarray(
            planning_return(cast(TDMPCAgent, agent), planner, episodes, start, "fast", seed).returns, dtype=float
        )

    return objective
