"""Closed-loop return of a policy on Pendulum-v1: fast (batched plant) or judged by gymnasium itself."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from torch import nn

from tools.plant.episodes import JUDGES, episode_seeds
from tools.plant.pendulum import ENV_ID
from tools.plant.policy import Policy, as_policy
from tools.plant.rollouts import rollout_fast, rollout_gym, rollout_vector


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
    def of(cls, judge: str, seeds: list[int], returns: np.ndarray) -> ReturnStats:
        r = np.asarray(returns, dtype=np.float64)
        return cls(judge, list(seeds), r.tolist(), float(r.mean()), float(r.std()), float(r.min()))

    def to_dict(self) -> dict:
        return asdict(self)


def closed_loop_return(
    policy: Policy | nn.Module, episodes: int = 100, seed: int = 0, judge: str = "fast", env_id: str = ENV_ID
) -> ReturnStats:
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
        returns = rollout_vector(policy, seeds, env_id)[0]
    return ReturnStats.of(judge, seeds, returns)
