"""Benchmark: plant steps per second, batched numpy Pendulum-v1 against gymnasium's own env.

    python -m tools.bench.plant --out runs/bench_plant.json

Both run the same random torques in the same process; the table shows environment steps per second
(one step of one episode is one step) and the speed-up over gymnasium.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from rich.console import Console
from rich.table import Table

from tools.plant.pendulum import BatchedPendulum


@dataclass
class PlantRow:
    runner: str
    parallel_episodes: int
    steps: int
    seconds: float
    steps_per_second: float
    speedup_vs_gymnasium: float = 0.0


def time_batched(n: int, steps: int, seed: int) -> PlantRow:
    """Step n episodes together for `steps` steps each."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-2, 2, size=(steps, n, 1)).astype(np.float32)
    plant = BatchedPendulum()
    plant.reset(list(range(seed, seed + n)))
    start = time.perf_counter()
    for t in range(steps):
        plant.step(actions[t])
    seconds = time.perf_counter() - start
    return PlantRow("batched numpy", n, n * steps, seconds, n * steps / seconds)


def time_gymnasium(steps: int, seed: int) -> PlantRow:
    """Step gymnasium.make('Pendulum-v1') one episode at a time (resetting every 200 steps)."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-2, 2, size=(steps, 1)).astype(np.float32)
    env = gym.make("Pendulum-v1")
    env.reset(seed=seed)
    start = time.perf_counter()
    for t in range(steps):
        _, _, terminated, truncated, _ = env.step(actions[t])
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return PlantRow("gymnasium Pendulum-v1", 1, steps, seconds, steps / seconds)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m tools.bench.plant", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("runs/bench_plant.json"), help="JSON file to write")
    p.add_argument("--steps", type=int, default=2000, help="steps per episode slot timed (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    console = Console()
    console.print(f"plant benchmark, seed {args.seed}, {args.steps} steps per slot")
    reference = time_gymnasium(args.steps, args.seed)
    rows = [reference] + [time_batched(n, args.steps, args.seed) for n in (1, 64, 1024)]
    for row in rows:
        row.speedup_vs_gymnasium = row.steps_per_second / reference.steps_per_second
    table = Table(title="Pendulum-v1 steps per second (higher is better)")
    for col in ("runner", "parallel episodes", "steps/s", "x gymnasium"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(
            row.runner, str(row.parallel_episodes), f"{row.steps_per_second:,.0f}", f"{row.speedup_vs_gymnasium:.1f}"
        )
    console.print(table)
    report = {
        "machine": platform.platform(),
        "processor": platform.processor(),
        "seed": args.seed,
        "rows": [asdict(r) for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(args.out)
    console.print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
