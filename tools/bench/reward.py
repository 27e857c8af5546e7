"""Closed-loop reward on the controller's gymnasium env (Pendulum-v1 by default): torch and the compiled artifact
through the stub, same seeds.

The device episodes are lockstep HIL (:func:`tools.hil.run_hil`), which also plays the torch
controller in gymnasium on the same seeds as its reference. The observations each controller acted
on are recorded on the way (the host policy sees every observation of both runs), so the share of
episodes that end upright is measured on gymnasium's own trajectories, not recomputed.
Returns vary far more between start states (std about 80) than between models, so models are
compared per seed: the paired difference's mean and its standard error. On an env other than Pendulum-v1
episodes may end early and "upright" means nothing: the share is not measured there (None, shown as "-").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tools.errors import ToolsError
from tools.pipeline.hil import run_hil
from tools.plant.episodes import episode_seeds
from tools.plant.pendulum import ENV_ID, BatchedPendulum
from tools.plant.policy import Policy
from tools.plant.rollouts import rollout_gym

UPRIGHT_RAD = 0.1  # |angle| below this counts as upright
UPRIGHT_STEPS = 50  # ... in each of the last this many observations of an episode
STEPS = BatchedPendulum.max_episode_steps


@dataclass
class RewardStats:
    """Returns of one model in one runtime, in seed order, and their summary."""

    seeds: list[int]
    returns: list[float]
    upright: list[bool]  # per episode: |angle| < UPRIGHT_RAD in each of the last UPRIGHT_STEPS observations
    mean: float
    std: float
    worst: float
    upright_share: float | None  # None: not measured (an env other than Pendulum-v1)

    @classmethod
    def of(cls, seeds: list[int], returns, upright) -> RewardStats:
        """``upright`` None: not measured (an env other than Pendulum-v1), share None."""
        r = np.asarray(returns, dtype=np.float64)
        u = [] if upright is None else [bool(x) for x in upright]
        share = float(np.mean(u)) if upright is not None else None
        return cls(list(seeds), r.tolist(), u, float(r.mean()), float(r.std()), float(r.min()), share)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Paired:
    """Per-seed difference ``a - b`` of two models' returns on the same seeds."""

    n: int
    mean_diff: float
    stderr: float  # standard error of the mean difference (sample std / sqrt(n)); 0 with one seed

    @classmethod
    def of(cls, a: RewardStats, b: RewardStats) -> Paired:
        if a.seeds != b.seeds:
            raise ToolsError("paired difference over different seeds")
        d = np.subtract(a.returns, b.returns)
        stderr = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
        return cls(int(d.size), float(d.mean()), stderr)


@dataclass
class DeviceReward:
    """Lockstep HIL of one model on one target: the device's reward and how closely it tracked torch."""

    torch: RewardStats  # the torch controller in gymnasium (HIL's host reference)
    device: RewardStats
    runner: str
    max_return_diff: float  # largest |device - torch| return over the episodes
    max_abs_action_diff: float


class _Recorder:
    """A policy that remembers every observation it is asked about."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.rows: list[np.ndarray] = []

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.rows.append(np.array(obs, dtype=np.float64).reshape(-1, obs.shape[-1]))
        return self.policy(obs)

    def episodes(self, n: int, start: int = 0) -> np.ndarray:
        """(n, STEPS, obs_dim) observations from row ``start`` on (one row per step)."""
        rows = np.concatenate(self.rows[start : start + n * STEPS]) if self.rows else np.empty((0, 3))
        if rows.shape[0] != n * STEPS:
            raise ToolsError(f"recorded {rows.shape[0]} observations where {n} episodes of {STEPS} steps were expected")
        return rows.reshape(n, STEPS, -1)


def ends_upright(observations: np.ndarray) -> np.ndarray:
    """Per episode (n, steps, [cos, sin, thdot]): |angle| < UPRIGHT_RAD in each of the last UPRIGHT_STEPS observations."""
    angle = np.arctan2(observations[:, -UPRIGHT_STEPS:, 1], observations[:, -UPRIGHT_STEPS:, 0])
    return np.all(np.abs(angle) < UPRIGHT_RAD, axis=1)


def device_reward(
    bundle: Path,
    target: str,
    policy: Policy,
    episodes: int,
    seed: int,
    public_key: Path | None = None,
    env_id: str = ENV_ID,
) -> DeviceReward:
    """Lockstep HIL through the stub for ``target``; ``policy`` is the same controller in torch (the reference).

    With ``public_key`` the device runs the bundle only if it is signed with its private half.
    """
    if env_id != ENV_ID:  # no upright to measure: the returns alone, on the env's own episodes
        d = run_hil(
            bundle, target, policy, episodes, seed, mode="lockstep", public_key=public_key, env_id=env_id
        ).to_dict()
        return DeviceReward(
            RewardStats.of(d["seeds"], d["host_returns"], None),
            RewardStats.of(d["seeds"], d["returns"], None),
            d["runner"],
            float(d["max_return_diff"]),
            float(d["max_abs_action_diff"]),
        )
    rec = _Recorder(policy)
    report = run_hil(bundle, target, rec, episodes, seed, mode="lockstep", public_key=public_key)
    d = report.to_dict()
    seeds = d["seeds"]
    # run_hil first plays the host policy alone, then asks it about every observation the device acted on
    host, dev = rec.episodes(episodes), rec.episodes(episodes, start=episodes * STEPS)
    if not np.array_equal(host[:, 0], dev[:, 0]):
        raise ToolsError(f"{target}: HIL episodes do not start where the torch episodes did; cannot attribute them")
    return DeviceReward(
        RewardStats.of(seeds, d["host_returns"], ends_upright(host)),
        RewardStats.of(seeds, d["returns"], ends_upright(dev)),
        d["runner"],
        float(d["max_return_diff"]),
        float(d["max_abs_action_diff"]),
    )


def torch_reward(policy: Policy, episodes: int, seed: int, env_id: str = ENV_ID) -> RewardStats:
    """The torch controller alone in gymnasium on the same seeds (HIL's host reference, for a model no device runs)."""
    seeds = episode_seeds(episodes, seed)
    if env_id != ENV_ID:
        return RewardStats.of(seeds, rollout_gym(policy, seeds, env_id), None)
    rec = _Recorder(policy)
    returns = rollout_gym(rec, seeds)
    return RewardStats.of(seeds, returns, ends_upright(rec.episodes(episodes)))
