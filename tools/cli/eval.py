"""``prune-and-export eval``: a controller's closed-loop return on Pendulum-v1."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tools.cli.options import add_controller, add_episodes, add_seed, controller_from_args
from tools.cli.robustness import add_robustness, check_robustness_flags, robustness_from_args
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
    # robustness (issue 17): the judge under scenarios too
    add_robustness(p, search=False)


def run(args: argparse.Namespace, console: Console) -> dict:
    # Deferred: the closed loop imports torch and gymnasium (and tables need rich), which --help must not pay for.
    from rich.table import Table

    from tools.pipeline.evaluate import evaluate_controller

    check_robustness_flags(args)
    controller = controller_from_args(args)
    robustness = robustness_from_args(args, controller.spec.env_id)
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
    robust = None
    if robustness is not None:
        robust = robustness.judge(controller.module, args.episodes, args.seed, controller.spec.env_id)
        console.print(robust_table(robust, controller.spec.env_id))
    return {
        "controller": str(controller.path),
        "sha256": controller.sha256,
        "seed": args.seed,
        "episodes": args.episodes,
        "seconds": seconds,
        **stats.to_dict(),
        **{k: controller.architecture[k] for k in ("obs_norm", "notes") if k in controller.architecture},
        **({"robust": robust} if robust is not None else {}),
    }


def robust_table(robust: dict, env_id: str):
    """Nominal and every scenario side by side (mean return, balanced share), and the aggregate: a rich Table."""
    from rich.table import Table

    from tools.plant.scenarios import plant_label  # deferred with the table: --help must not pay for the plant

    seeds = f"seeds {robust['seeds'][0]}..{robust['seeds'][1]}"
    table = Table(title=f"closed-loop return under scenario set {robust['set']} ({plant_label(env_id)}, {seeds})")
    for col in ("scenario", "mean", "balanced"):
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for name, mean in robust["mean"].items():
        table.add_row(name, f"{mean:.1f}", f"{robust['balanced_share'][name]:.0%}")
    table.add_row(f"{robust['aggregate']} over the set", f"{robust['value']:.1f}", "")
    return table
