"""``prune-and-export prune``: shrink a controller to a parameter budget, coefficients searched on the closed loop."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tools.cli.options import add_controller, add_seed, controller_from_args, fraction, non_negative_int, positive_int
from tools.pipeline.choices import DEFAULT_METRIC, METHODS, METRICS
from tools.plant.episodes import SEARCH_EPISODES, SEARCH_SEED

if TYPE_CHECKING:
    from rich.console import Console

HELP = "prune a controller structurally to a parameter budget (gradient descent or grid over soft coefficients)"


def configure(p: argparse.ArgumentParser) -> None:
    add_controller(p)
    p.add_argument("--keep", type=fraction, default=0.25, help="fraction of the prunable parameters kept (default 0.25)")
    p.add_argument("--method", choices=METHODS, default="gd", help="coefficient search or baseline (default gd)")
    p.add_argument("--metric", choices=METRICS, default=None,
                   help=f"importance of units inside a group for gd/grid/global (default {DEFAULT_METRIC}: try each at the "
                        "uniform point, search with the best; those evaluations count); uniform-l1/uniform-l2/random fix their own")
    p.add_argument("--no-reconstruct", action="store_true",
                   help="do not re-fit the layers that lost inputs (by default each candidate's next layers are re-fitted "
                        "by least squares on states the unpruned controller visits: closed form, no training)")
    p.add_argument("--finetune", action="store_true", help="distil the pruned controller toward the unpruned one (off by default)")
    add_seed(p)
    p.add_argument("--out", type=Path, default=None, metavar="PATH",
                   help="write the pruned controller file here, and beside it <stem>.pt2, <stem>.state_dict.pt, <stem>.widths.json")
    p.add_argument("--component", action="append", default=[], metavar="NAME=PATTERN[,PATTERN]",
                   help="name a component by module-name patterns (fnmatch), sharing one coefficient; repeatable "
                        "(default: each hidden Linear of the MLP is its own component)")
    p.add_argument("--tolerance", type=float, default=0.01, help="a candidate may keep between keep-TOLERANCE and keep of the prunable parameters (default 0.01)")
    p.add_argument("--floor", type=float, default=None, help="lowest acceptable search objective (mean return); default none")
    p.add_argument("--no-stability", action="store_true", help="drop the closed-loop stability constraint")
    p.add_argument("--resolution", type=fraction, default=0.1, help="grid resolution of the coefficients (default 0.1)")
    p.add_argument("--max-evaluations", type=positive_int, default=150, help="objective evaluations gd may spend, metric trials included (default 150)")
    p.add_argument("--search-episodes", type=positive_int, default=SEARCH_EPISODES,
                   help=f"fast-plant episodes per objective evaluation, seeds {SEARCH_SEED}.. (default {SEARCH_EPISODES})")
    p.add_argument("--judge-episodes", type=non_negative_int, default=100,
                   help="gymnasium episodes of the controller's env (seeds 0..N-1) judging before and after; 0 skips (default 100)")


def run(args: argparse.Namespace, console: Console) -> dict:
    # Deferred: pruning imports torch and gymnasium, which --help must not pay for.
    from tools.pipeline.prune import metric_for, parse_components, print_prune_table, prune_controller

    metric_for(args.method, args.metric)  # a contradictory --metric is refused before the controller loads
    controller = controller_from_args(args)
    pruned = prune_controller(
        controller, args.keep, args.method, args.metric, seed=args.seed, out=args.out,
        components=parse_components(args.component), reconstruct=not args.no_reconstruct, finetune=args.finetune,
        tolerance=args.tolerance, floor=args.floor, stability=not args.no_stability, resolution=args.resolution,
        max_evaluations=args.max_evaluations, search_episodes=args.search_episodes, judge_episodes=args.judge_episodes,
        console=console)
    summary = pruned.summary
    print_prune_table(console, summary, args.search_episodes, args.judge_episodes)
    summary["ok"] = pruned.feasible
    if not pruned.feasible:
        console.print(f"[red]no feasible candidate[/]: best found keeps {pruned.result.search.keep_fraction:.4f}, see --tolerance/--floor")
    return summary
