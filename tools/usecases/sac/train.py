"""Train a stable-baselines3 SAC on gymnasium Pendulum-v1 with a 3-256-256 ReLU actor, within a wall-clock limit.

    python -m tools.usecases.sac.train --out sac.zip --steps 20000 --minutes 8

The actor is what ``prune-and-export prune --controller sac.zip`` reads (its own sb3 reader). The
hyper-parameters are rl-zoo's for Pendulum-v1 (learning rate 1e-3); training stops at ``--steps``
environment steps or after ``--minutes`` of wall clock, whichever comes first, and prints how many
steps it took and the deterministic return on gymnasium seeds 0..99.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback


class WallClock(BaseCallback):
    """Stops training after ``seconds`` of wall clock."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.deadline = time.monotonic() + seconds

    def _on_step(self) -> bool:
        return time.monotonic() < self.deadline


def mean_return(model: SAC, episodes: int = 100) -> float:
    """Deterministic return on gymnasium Pendulum-v1, seeds 0..episodes-1."""
    env = gym.make("Pendulum-v1")
    total = []
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        done, ret = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, term, trunc, _ = env.step(action)
            ret += float(r)
            done = term or trunc
        total.append(ret)
    return float(np.mean(total))


def main(argv: list[str] | None = None) -> None:
    """Train, save, print steps and return."""
    p = argparse.ArgumentParser(
        prog="python -m tools.usecases.sac.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("sac.zip"))
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = SAC(
        "MlpPolicy",
        "Pendulum-v1",
        learning_rate=1e-3,
        seed=args.seed,
        verbose=0,
        policy_kwargs={"net_arch": [256, 256], "activation_fn": torch.nn.ReLU},
    )
    start = time.monotonic()
    model.learn(total_timesteps=args.steps, callback=WallClock(60 * args.minutes))
    model.save(args.out)
    print(
        f"trained {model.num_timesteps} steps in {time.monotonic() - start:.0f}s; "
        f"return {mean_return(model):.1f} (gymnasium Pendulum-v1 seeds 0..99); saved {args.out}"
    )


if __name__ == "__main__":
    main()
