"""``prune-and-export eval``: a controller's closed-loop return on Pendulum-v1."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tools.cli.options import add_controller, add_episodes, add_seed, controller_from_args
from tools.plant.episodes import JUDGES

if TYPE_CHECKING:
    from rich.console import Console

HELP = "closed-loop return of a controller on seeded episodes of its env (Pendulum-v1 unless --env)"


def configure(p: argparse.ArgumentParser) -> None:
    add_controller(p)
    add_episodes(p)
    add_seed(p)
    p.add_argument(
        "--judge",
        choices=JUDGES,
        default="gym",
        help="gym: gymnasium's own env (the judge); fast: the batched plant (default gym)",
    )


def run(args: argparse.Namespace, console: Console) -> dict:
    # Deferred: the closed loop imports torch and gymnasium (and tables need rich), which --help must not pay for.
    from rich.table import Table

    from tools.pipeline.evaluate import evaluate_controller

    controller = controller_from_args(args)
    console.print(
        f"controller {controller.path} (sha256 {controller.sha256[:12]}), seed {args.seed}, judge {args.judge}"
    )
    evaluation = evaluate_controller(controller, args.episodes, args.seed, args.judge)
    stats, seconds = evaluation.stats, evaluation.seconds
    table = Table(
        title=f"closed-loop return, {args.episodes} episodes, seeds {args.seed}..{args.seed + args.episodes - 1}"
    )
    for col in ("judge", "mean", "std", "min", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(stats.judge, f"{stats.mean:.1f}", f"{stats.std:.1f}", f"{stats.min:.1f}", f"{seconds:.2f}")
    console.print(table)
    return {
        "controller": str(controller.path),
        "sha256": controller.sha256,
        "seed": args.seed,
        "episodes": args.episodes,
        "seconds": seconds,
        **stats.to_dict(),
        **{k: controller.architecture[k] for k in ("obs_norm", "notes") if k in controller.architecture},
    }
