"""``prune-and-export run`` (the default): the whole pipeline on a controller, the bundled one by default."""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tools.controller import load_controller
from tools.evaluate import as_policy, closed_loop_return
from tools.options import add_controller, add_episodes, add_seed

HELP = "run the whole pipeline (load, evaluate, prune with gd, export x86_64, bench report) on a controller; the default subcommand"


def configure(p: argparse.ArgumentParser) -> None:
    add_controller(p)
    add_episodes(p)
    add_seed(p)
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="bench report folder to create (default runs/<UTC timestamp>)")
    p.add_argument("--quick", action="store_true", help="bench with few calls and a short search (for tests)")


def run(args: argparse.Namespace, console: Console) -> dict:
    controller = load_controller(args.controller)
    module = controller.module
    params = sum(p.numel() for p in module.parameters())
    console.print(f"[bold]prune-and-export[/bold]: controller {controller.path}")
    console.print(f"  sha256 {controller.sha256[:16]}  architecture {controller.architecture}  parameters {params}")
    console.print(f"  task {controller.spec.env_id}: obs {controller.spec.obs_dim}, action {controller.spec.act_dim} "
                  f"in [{controller.spec.act_low}, {controller.spec.act_high}]; seed {args.seed}")
    results = {}
    table = Table(title=f"closed-loop return, {args.episodes} episodes, seeds {args.seed}..{args.seed + args.episodes - 1}")
    for col in ("judge", "mean", "std", "min", "seconds"):
        table.add_column(col, justify="right")
    for judge in ("fast", "gym"):
        start = time.perf_counter()
        stats = closed_loop_return(as_policy(module), args.episodes, args.seed, judge)
        seconds = time.perf_counter() - start
        results[judge] = {**stats.to_dict(), "seconds": seconds}
        table.add_row(judge, f"{stats.mean:.1f}", f"{stats.std:.1f}", f"{stats.min:.1f}", f"{seconds:.2f}")
    console.print(table)
    bench = _bench(args, console)
    return {"controller": str(controller.path), "sha256": controller.sha256, "architecture": controller.architecture,
            "params": params, "seed": args.seed, "episodes": args.episodes, "evaluation": results, "bench": bench}


def _bench(args: argparse.Namespace, console: Console) -> dict:
    """The last step: ``prune-and-export bench`` at its defaults (gd at the default budget, x86_64)."""
    from tools import cmd_bench

    out = args.out or Path("runs") / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    argv = ["--out", str(out), "--episodes", str(args.episodes), "--seed", str(args.seed), "--targets", "x86_64",
            "--methods", "gd"]
    argv += (["--controller", str(args.controller)] if args.controller else []) + (["--quick"] if args.quick else [])
    parser = argparse.ArgumentParser()
    cmd_bench.configure(parser)
    return cmd_bench.run(parser.parse_args(argv), console)
