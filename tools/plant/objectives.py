"""The pendulum callables handed to prune/: search objective, closed-loop step for stability, visited states.

prune/ knows no plant; these wrap ``tools.plant.pendulum`` (or a gymnasium vector env) for it:

- :func:`return_objective`: mean return on the batched plant over fixed seeds (the same seeds for
  every candidate). The default seeds 2000.. are disjoint from the judge's 0..99 and from the
  training validation seeds 1000..1099, so a search cannot tune itself to the reported numbers.
- :func:`closed_loop_step` / :func:`radius_check`: the closed loop ``x' = f(x, pi(obs(x)))`` through
  the differentiable ``torch_step``; linearised at the upright equilibrium ``(theta, theta_dot) = 0``.
- :func:`visit`: observations the closed loop passes through, for fine-tuning and data-aware metrics.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from prune import Stability, stability
from tools.plant.episodes import SEARCH_EPISODES, SEARCH_SEED, episode_seeds
from tools.plant.pendulum import ENV_ID, BatchedPendulum, torch_observation, torch_step
from tools.plant.policy import as_policy
from tools.plant.rollouts import rollout_fast, rollout_vector

UPRIGHT = torch.zeros(2, dtype=torch.float64)


def return_objective(episodes: int = SEARCH_EPISODES, seed: int = SEARCH_SEED) -> Callable[[nn.Module], np.ndarray]:
    """objective(model) = fast-plant return of each episode, gymnasium seeds seed..seed+episodes-1.

    prune/ maximises the mean and uses the per-episode returns to tell a real improvement from one
    the fixed search episodes alone produce (see ``prune.search.Problem.selected``).
    """
    seeds = episode_seeds(episodes, seed)

    def objective(model: nn.Module) -> np.ndarray:
        return np.asarray(rollout_fast(as_policy(model), seeds)[0], dtype=float)

    return objective


def closed_loop_step(state: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Next (theta, theta_dot) of Pendulum-v1 under ``model``, differentiable in the (float64) state."""
    action = model(torch_observation(state).to(torch.float32))
    next_state, _ = torch_step(state, action[:, 0].to(state.dtype))
    return next_state


def pendulum_stability(model: nn.Module) -> Stability:
    """Spectral radius of the closed loop linearised at the upright equilibrium."""
    return stability(closed_loop_step, model, UPRIGHT)


def radius_check(model: nn.Module) -> float:
    """The spectral radius alone, as prune's search constraint wants it."""
    return pendulum_stability(model).radius


def visit(episodes: int = 64, seed: int = 3000) -> Callable[[nn.Module], torch.Tensor]:
    """visit(model) -> (episodes * 200, 3) observations the closed loop with ``model`` passes through."""
    seeds = episode_seeds(episodes, seed)

    def states(model: nn.Module) -> torch.Tensor:
        policy, plant = as_policy(model), BatchedPendulum()
        obs = plant.reset(seeds)
        seen = []
        for _ in range(plant.max_episode_steps):
            seen.append(obs)
            obs, _ = plant.step(policy(obs))
        return torch.from_numpy(np.concatenate(seen)).float()

    return states


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
    if env_id == ENV_ID:
        return return_objective(episodes, seed), visit
    return vector_return_objective(env_id, episodes, seed), lambda episodes=64, seed=3000: vector_visit(
        env_id, episodes, seed
    )
