"""When a pruning search may stop early: the env's reward ceiling, or the unpruned score's noise (plain Python + numpy).

prune/ ends a search at ``ceiling`` (the best objective there is) or within ``stop_within`` of the
unpruned model's objective (:func:`prune.prune`). This module chooses the values for an env:

- a **ceiling** only where the episode return is provably bounded and reachable: envs whose reward is
  exactly a constant per step the episode is alive (:data:`ALIVE_REWARD`, read off gymnasium's
  source), so the best return is ``max_episode_steps x`` that constant (InvertedPendulum-v5: 1000);
- otherwise, for an env searched on a gymnasium vector env, **within noise**: the standard error of
  the unpruned controller's return across the search episodes (a candidate that close to it cannot be
  told apart from it on those episodes, so searching on buys nothing measurable);
- Pendulum-v1 (the bundled plant): no automatic stop; its search runs as it always has.

Values given by the user (``--ceiling``, ``--stop-within``) always win; ``--no-early-stop`` turns the
automatic ones off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# reward of every step the episode goes on, exactly (gymnasium: v4 returns 1.0 each step, v5 int(not terminated))
ALIVE_REWARD = {"InvertedPendulum-v4": 1.0, "InvertedPendulum-v5": 1.0}
NO_AUTO_STOP = ("Pendulum-v1",)  # the bundled plant: its search and figures stay as they were


@dataclass
class EarlyStop:
    """The values handed to prune (None: not used) and, in words, where they come from."""

    ceiling: float | None = None
    stop_within: float | None = None
    why: str = "no early stop"

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"ceiling": self.ceiling, "stop_within": self.stop_within, "why": self.why}


def max_episode_steps(env_id: str) -> int | None:
    """The env's registered time limit (gymnasium's spec), None when it has none or is unknown."""
    import gymnasium as gym  # deferred: the command line names these values in its help without gymnasium

    try:
        return gym.spec(env_id).max_episode_steps
    except gym.error.Error:
        return None


def reward_ceiling(env_id: str) -> tuple[float, str] | None:
    """(the best episode return there is, why) for an env with a constant per-step reward and a time limit, else None."""
    per_step = ALIVE_REWARD.get(env_id)
    steps = max_episode_steps(env_id) if per_step is not None else None
    if per_step is None or steps is None:
        return None
    ceiling = per_step * steps
    return ceiling, f"{env_id}'s maximum return, {steps} steps x reward {per_step:g} per step"


def standard_error(scores: Sequence[float]) -> float:
    """Standard error of the mean of per-episode scores (0 for a single episode)."""
    values = np.asarray(scores, dtype=float)
    if values.size < 2:
        return 0.0
    return float(values.std(ddof=1) / math.sqrt(values.size))


def choose(
    env_id: str,
    ceiling: float | None = None,
    stop_within: float | None = None,
    auto: bool = True,
    unpruned_scores: Sequence[float] | None = None,
) -> EarlyStop:
    """The early stop of a search on ``env_id``: the user's values if any, else the automatic ones (module docstring).

    ``unpruned_scores`` are the unpruned controller's per-episode search returns (for the noise margin);
    without them no noise margin is chosen automatically.
    """
    if ceiling is not None or stop_within is not None:
        parts = ([f"ceiling {ceiling:g} (given)"] if ceiling is not None else []) + (
            [f"within {stop_within:g} of the unpruned objective (given)"] if stop_within is not None else []
        )
        return EarlyStop(ceiling, stop_within, ", ".join(parts))
    if not auto:
        return EarlyStop(why="no early stop (--no-early-stop)")
    if env_id in NO_AUTO_STOP:
        return EarlyStop()
    known = reward_ceiling(env_id)
    if known is not None:
        return EarlyStop(ceiling=known[0], why=f"ceiling {known[0]:g}: {known[1]}")
    if unpruned_scores is not None and len(unpruned_scores) > 1:
        se = standard_error(unpruned_scores)
        return EarlyStop(
            stop_within=se,
            why=f"within {se:.4g} of the unpruned objective: its standard error over "
            f"{len(unpruned_scores)} search episodes",
        )
    return EarlyStop()


def needs_scores(env_id: str, ceiling: float | None, stop_within: float | None, auto: bool) -> bool:
    """Whether :func:`choose` would use the unpruned per-episode scores (so the caller measures them only then)."""
    return (
        auto
        and ceiling is None
        and stop_within is None
        and env_id not in NO_AUTO_STOP
        and reward_ceiling(env_id) is None
    )
