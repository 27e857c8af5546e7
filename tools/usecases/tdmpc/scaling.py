"""Scaling benchmark of the TD-MPC agent: its grid search in-process against Ray with 1 and 2 workers.

The same measurement as :mod:`tools.bench.scaling` (results checked equal first, start-up timed
apart, ratios to in-process), with one part: a grid over the agent's components, each candidate
judged by MPPI planning on the fast plant (seconds per candidate, where fanning out pays most).

    python -m tools.usecases.tdmpc.scaling --resolution 0.5 --episodes 4 --out bench_scaling_tdmpc.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from prune import find_groups, prune
from tools.bench.scaling import ScalingConfig, measure, print_table, summary_json
from tools.scale import Executor, batched
from tools.usecases.tdmpc.agent import example_inputs, load_agent
from tools.usecases.tdmpc.evaluate import SEARCH_SEED, planning_objective


@dataclass
class FlushedDenormals:
    """The planning objective with denormals flushed to zero in whichever process runs it (as the TD-MPC bench runs)."""

    objective: object

    def __call__(self, agent: nn.Module) -> np.ndarray:
        torch.set_flush_denormal(
            True
        )  # a process-wide setting: it does not travel with the candidate, so it is set here
        return self.objective(agent)  # type: ignore[operator]


def tdmpc_grid(cfg: ScalingConfig, executor: Executor | None) -> tuple[str, int]:
    """The timed search: a grid over the bundled TD-MPC agent's components; returns its JSON and its evaluations."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    loaded = load_agent(None)
    groups = find_groups(loaded.agent, example_inputs(loaded.agent.cfg, seed=cfg.seed))
    objective = FlushedDenormals(planning_objective(loaded.planner, cfg.episodes, SEARCH_SEED, cfg.seed))
    searched = objective if executor is None else batched(objective, executor)
    result = prune(loaded.agent, groups, cfg.keep, searched, method="grid", resolution=cfg.resolution, seed=cfg.seed)
    return summary_json(result), result.search.evaluations


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, measure the TD-MPC grid, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=float, default=0.5)
    parser.add_argument("--keep", type=float, default=0.25)
    parser.add_argument("--episodes", type=int, default=4, help="planning episodes per candidate (seeds 2000..)")
    parser.add_argument("--workers", default="1,2", help="Ray worker counts, comma separated")
    parser.add_argument("--out", type=Path, default=Path("bench_scaling_tdmpc.json"))
    args = parser.parse_args(argv)
    cfg = ScalingConfig(
        resolution=args.resolution,
        keep=args.keep,
        episodes=args.episodes,
        workers=tuple(int(w) for w in args.workers.split(",")),
    )
    console = Console()
    report = measure(cfg, console, {"tdmpc-grid": tdmpc_grid})
    print_table(report, console)
    args.out.write_text(json.dumps(asdict(report), indent=2))
    console.print(f"wrote {args.out}")
    if not all(report.equal.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
