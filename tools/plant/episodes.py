"""Which episodes judge a controller and which ones a search sees: seeds and judges (plain Python, no torch,
so the command line can name them in its help)."""

from __future__ import annotations

JUDGES = ("fast", "gym")
SEARCH_SEED = 2000  # prune's search episodes start here: disjoint from the judge's 0..99 and training's 1000..1099
SEARCH_EPISODES = 64


def episode_seeds(episodes: int, seed: int) -> list[int]:
    """Episode i starts from gymnasium's reset(seed=seed + i)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return list(range(seed, seed + episodes))
