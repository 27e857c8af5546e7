"""Robustness in the objective and in the judge: returns over a scenario set, aggregated as mean, worst or CVaR.

- :class:`Aggregate` (``mean`` | ``worst`` | ``cvar:ALPHA``, :mod:`tools.plant.aggregate`): one number from the per-scenario mean
  returns. ``cvar:ALPHA`` is the average of the worst ALPHA fraction of the scenarios, the fraction
  counted exactly (with S scenarios, k = ALPHA * S of them: the floor(k) worst in full, the next one
  in part), so ``cvar:1`` is the mean and ``cvar:ALPHA`` with ALPHA <= 1/S is the worst case.
- :func:`robust_objective`: prune's objective over a scenario set. It returns per-episode scores
  ``v[e] = sum_s w_s * return[s, e]`` where ``w`` are the aggregate's weights for this candidate's
  scenario means, so ``mean(v)`` is exactly the aggregate, and episode e is the same seed (and the
  same noise) for every candidate: prune's paired winner's-curse guard compares like with like.
- :func:`robust_returns`: the judge, nominal and every scenario side by side, with the share of
  episodes that end balanced (Pendulum: upright over the last 50 steps; MuJoCo: never terminated).

Scenario means are raw returns: a scenario that is easier for the controller (e.g. a wider start
spread on the swing-up, which hands it energy) sits above nominal and never enters a worst-case or
CVaR tail. That is the aggregate doing its job, not a fault of the scenario.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from tools.plant.aggregate import Aggregate, as_aggregate
from tools.plant.episodes import SEARCH_EPISODES, SEARCH_SEED, episode_seeds
from tools.plant.evaluate import ReturnStats
from tools.plant.pendulum import ENV_ID
from tools.plant.policy import Policy, as_policy
from tools.plant.scenarios import Scenario, ScenarioSet, rollout_scenario

NOMINAL = Scenario("nominal")


def scenario_returns(policy: Policy, scenarios: ScenarioSet, seeds: Sequence[int], env_id: str = ENV_ID) -> np.ndarray:
    """Returns (S, N): scenario s, episode seeds[n]."""
    return np.stack([rollout_scenario(policy, s, seeds, env_id).returns for s in scenarios])


def combine(returns: np.ndarray, how: str | Aggregate) -> np.ndarray:
    """Per-episode scores whose mean is the aggregate of the scenario means of ``returns`` (S, N)."""
    w = as_aggregate(how).weights(returns.mean(axis=1))
    return w @ returns


def robust_objective(
    scenarios: ScenarioSet,
    aggregate: str | Aggregate = "mean",
    episodes: int = SEARCH_EPISODES,
    seed: int = SEARCH_SEED,
    env_id: str = ENV_ID,
) -> Callable[[nn.Module], np.ndarray]:
    """objective(model) = per-episode scores over ``scenarios`` whose mean is the aggregate (see module doc).

    The same seeds seed..seed+episodes-1 for every scenario and every candidate. Without scenarios the
    nominal objective is :func:`tools.plant.objectives.return_objective`, untouched.
    """
    how = as_aggregate(aggregate)
    seeds = episode_seeds(episodes, seed)

    def objective(model: nn.Module) -> np.ndarray:
        return combine(scenario_returns(as_policy(model), scenarios, seeds, env_id), how)

    return objective


@dataclass
class ScenarioStats:
    """A controller's returns under one scenario and the share of its episodes that end balanced."""

    scenario: Scenario
    returns: ReturnStats
    balanced: list[bool]
    balanced_share: float

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {
            "scenario": self.scenario.to_dict(),
            "returns": self.returns.to_dict(),
            "balanced": self.balanced,
            "balanced_share": self.balanced_share,
        }


@dataclass
class RobustReturns:
    """Nominal and every scenario of a set, side by side, on the same seeds."""

    set_name: str
    nominal: ScenarioStats
    scenarios: dict[str, ScenarioStats] = field(default_factory=dict)

    def returns(self) -> dict[str, ReturnStats]:
        """{scenario name: ReturnStats}, nominal first."""
        return {"nominal": self.nominal.returns, **{k: v.returns for k, v in self.scenarios.items()}}

    def balanced_share(self) -> dict[str, float]:
        """{scenario name: share of balanced episodes}, nominal first."""
        return {"nominal": self.nominal.balanced_share, **{k: v.balanced_share for k, v in self.scenarios.items()}}

    def aggregate(self, how: str | Aggregate) -> float:
        """The set's scenario means aggregated (nominal not included unless the set holds it)."""
        return as_aggregate(how)([v.returns.mean for v in self.scenarios.values()])

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {
            "set": self.set_name,
            "nominal": self.nominal.to_dict(),
            "scenarios": {k: v.to_dict() for k, v in self.scenarios.items()},
        }

    def summary(self, how: str | Aggregate) -> dict:
        """The figures a report shows, JSON-ready: nominal and each scenario's mean return and balanced share,
        and the aggregate ``how`` over the set, on the same seeds."""
        return {
            "set": self.set_name,
            "aggregate": str(as_aggregate(how)),
            "value": self.aggregate(how),
            "seeds": [self.nominal.returns.seeds[0], self.nominal.returns.seeds[-1]],
            "mean": {k: v.mean for k, v in self.returns().items()},
            "balanced_share": self.balanced_share(),
        }


def _stats(policy: Policy, scenario: Scenario, seeds: list[int], env_id: str) -> ScenarioStats:
    played = rollout_scenario(policy, scenario, seeds, env_id)
    balanced = [bool(b) for b in played.balanced]
    return ScenarioStats(scenario, ReturnStats.of("fast", seeds, played.returns), balanced, float(np.mean(balanced)))


def robust_returns(
    policy: Policy | nn.Module, scenarios: ScenarioSet, episodes: int = 100, seed: int = 0, env_id: str = ENV_ID
) -> RobustReturns:
    """The judge under every scenario of the set, and nominally, on seeds seed..seed+episodes-1.

    The nominal row is the fast judge's own figure (:func:`tools.plant.evaluate.closed_loop_return`).
    """
    if isinstance(policy, nn.Module):
        policy = as_policy(policy)
    seeds = episode_seeds(episodes, seed)
    return RobustReturns(
        scenarios.name,
        _stats(policy, NOMINAL, seeds, env_id),
        {s.name: _stats(policy, s, seeds, env_id) for s in scenarios},
    )


@dataclass(frozen=True)
class Robustness:
    """What a search optimises beyond the nominal plant, and what the judge adds: a scenario set and its aggregate."""

    scenarios: ScenarioSet
    aggregate: Aggregate = field(default_factory=Aggregate)

    def objective(self, episodes: int, seed: int, env_id: str = ENV_ID) -> Callable[[nn.Module], np.ndarray]:
        """The search objective: :func:`robust_objective` over the set, aggregated by ``aggregate``."""
        return robust_objective(self.scenarios, self.aggregate, episodes, seed, env_id)

    def judge(self, policy: Policy | nn.Module, episodes: int, seed: int, env_id: str = ENV_ID) -> dict:
        """Nominal and every scenario on seeds seed..seed+episodes-1, with the aggregate: :meth:`RobustReturns.summary`."""
        return robust_returns(policy, self.scenarios, episodes, seed, env_id).summary(self.aggregate)

    def to_dict(self) -> dict:
        """The set's scenario names and the aggregate, JSON-ready."""
        return {"scenarios": self.scenarios.names(), "set": self.scenarios.name, "aggregate": str(self.aggregate)}
