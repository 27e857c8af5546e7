"""``prune-and-export prune``: shrink a controller to a parameter budget, coefficients searched on the closed loop."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from prune import PruneError, find_groups, prune, save_pruned
from prune.io import sidecar_paths
from tools.controller import mlp_architecture, save_controller
from tools.env_rollouts import search_callables
from tools.evaluate import closed_loop_return
from tools.objectives import SEARCH_EPISODES, SEARCH_SEED, pendulum_stability, radius_check
from tools.options import add_controller, add_seed, controller_from_args, non_negative_int, positive_int
from tools.pendulum import ENV_ID

HELP = "prune a controller structurally to a parameter budget (gradient descent or grid over soft coefficients)"
METHODS = ("gd", "grid", "uniform-l1", "uniform-l2", "random", "global")
METRICS = ("auto", "l1", "l2", "random", "activation", "contribution")
# CLI method -> (search method, importance metric it fixes, or None when --metric decides)
METHOD_PLAN = {
    "gd": ("gd", None), "grid": ("grid", None), "global": ("global", None),
    "uniform-l1": ("uniform", "l1"), "uniform-l2": ("uniform", "l2"), "random": ("uniform", "random"),
}
DEFAULT_METRIC = "auto"  # the metric whose uniform point scores best on the objective (prune.api.choose_metric)


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text}")
    return value


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


def _write(out: Path, small: torch.nn.Module, controller, example: torch.Tensor, widths: dict, summary: dict) -> dict:
    """Controller file plus sidecars, written in a temp dir and renamed into place together."""
    out = Path(out)
    if out.is_dir():
        raise PruneError(f"--out {out}: is a directory, expected a file path")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prune-out-", dir=out.parent))
    try:
        tmp_out = tmp / out.name
        activation = controller.architecture.get("activation", "")
        save_controller(tmp_out, small, controller.spec, mlp_architecture(small, activation))
        side = save_pruned(small, example, tmp_out, widths, extra={"summary": summary})
        final = sidecar_paths(out)
        for src, dst in ((side.program, final.program), (side.state_dict, final.state_dict), (side.widths, final.widths)):
            Path(src).replace(dst)
        tmp_out.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"controller": str(out), **final.to_dict()}


def run(args: argparse.Namespace, console: Console) -> dict:
    torch.manual_seed(args.seed)
    # The objective runs a small MLP on 64 observations per step: a second thread only adds
    # synchronisation (4x slower on this loaded 2-core machine), so the search runs on one.
    torch.set_num_threads(1)
    search_method, fixed_metric = METHOD_PLAN[args.method]
    if fixed_metric and args.metric and args.metric != fixed_metric:
        raise PruneError(f"--method {args.method} ranks units by {fixed_metric}; drop --metric {args.metric} or use gd/grid/global")
    metric = fixed_metric or args.metric or DEFAULT_METRIC
    controller = controller_from_args(args)
    model = controller.module.eval()
    console.print(f"controller {controller.path} (sha256 {controller.sha256[:12]}), seed {args.seed}, "
                  f"method {args.method}, metric {metric}, keep {args.keep}")
    example = torch.as_tensor(controller.spec.sample_observations(8, args.seed))
    components = {}
    for spec in args.component:
        name, sep, patterns = spec.partition("=")
        if not sep or not name or not patterns:
            raise PruneError(f"--component {spec!r}: expected NAME=PATTERN[,PATTERN]")
        components[name] = patterns.split(",")
    with torch.no_grad():
        groups = find_groups(model, example, components=components)
    for w in groups.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    env_id = controller.spec.env_id
    objective, visit_for = search_callables(env_id, args.search_episodes, SEARCH_SEED)
    pendulum = env_id == ENV_ID  # the closed-loop linearisation exists for the pendulum plant only
    before = pendulum_stability(model) if pendulum else None
    check = None if args.no_stability or not pendulum else radius_check
    if not pendulum:
        console.print(f"note: {env_id} is searched on a gymnasium vector env; no stability constraint (pendulum only)")
    if check is not None and not before.stable:
        console.print(f"[yellow]warning:[/] the unpruned controller is not stable at upright (spectral radius {before.radius:.4f}); "
                      "the stability constraint is off")
        check = None
    states = visit_for(args.search_episodes, SEARCH_SEED)(model)  # data-aware metrics and the least-squares re-fit
    result = prune(model, groups, args.keep, objective, method=search_method,
                   metric=metric, states=states, seed=args.seed, tolerance=args.tolerance, floor=args.floor,
                   radius_check=check, resolution=args.resolution, max_evaluations=args.max_evaluations,
                   reconstruct=not args.no_reconstruct,
                   finetune=visit_for(seed=3000) if args.finetune else None, progress=True)
    after = pendulum_stability(result.model) if pendulum else None
    summary = {"method": args.method, **result.to_dict(), "controller": str(controller.path), "sha256": controller.sha256,
               "stability_constraint": check is not None, "env_id": env_id}
    if pendulum:
        summary.update(stability_before=before.to_dict(), stability_after=after.to_dict())
    if args.judge_episodes:
        summary["return_before"] = closed_loop_return(model, args.judge_episodes, 0, "gym", env_id).mean
        summary["return_after"] = closed_loop_return(result.model, args.judge_episodes, 0, "gym", env_id).mean
    if args.out is not None:
        summary["files"] = _write(args.out, result.model, controller, example, result.widths, summary)
    _print(console, summary, args)
    summary["ok"] = bool(result.search.feasible)
    if not result.search.feasible:
        console.print(f"[red]no feasible candidate[/]: best found keeps {result.search.keep_fraction:.4f}, see --tolerance/--floor")
    return summary


def _print(console: Console, s: dict, args: argparse.Namespace) -> None:
    table = Table(title=f"prune {s['method']} ({s['metric']}), keep {s['keep']} of prunable parameters, seed {s['seed']}")
    for col in ("", "before", "after"):
        table.add_column(col, justify="right")
    table.add_row("parameters", f"{s['params_before']:,}", f"{s['params_after']:,}")
    table.add_row("prunable parameters", f"{s['prunable_params_before']:,}", f"{s['prunable_params_after']:,} ({s['keep_fraction']:.1%})")
    table.add_row("bytes (float32)", f"{s['bytes_before']:,}", f"{s['bytes_after']:,}")
    table.add_row("multiply-adds / step", f"{s['macs_before']:,}", f"{s['macs_after']:,}")
    table.add_row(f"objective (fast, {args.search_episodes} ep.)", f"{s['objective_before']:.1f}", f"{s['objective_after']:.1f}")
    if "return_before" in s:
        table.add_row(f"return (gymnasium {s['env_id']}, seeds 0..{args.judge_episodes - 1})", f"{s['return_before']:.1f}", f"{s['return_after']:.1f}")
    if "stability_before" in s:
        table.add_row("stability margin (1 - radius)", f"{s['stability_before']['margin']:.4f}", f"{s['stability_after']['margin']:.4f}")
    widths = ", ".join(f"{k}:{v['out']}" for k, v in s["widths"].items() if "out" in v)
    table.add_row("widths (out)", "", widths)
    table.add_row("coefficients", "", ", ".join(f"{k}:{v:.3f}" for k, v in s["coefficients"].items()))
    if s.get("metric_trials"):
        table.add_row("metric (auto: uniform point)", "", ", ".join(f"{k}:{v:.1f}" for k, v in s["metric_trials"].items()) + f" -> {s['metric']}")
    if s.get("finetune"):
        ft = s["finetune"]
        table.add_row("fine-tune objective", f"{ft['objective_before']:.1f}", f"{ft['objective_after']:.1f}"
                      + ("" if ft["kept"] else " (worse: searched weights kept)"))
    table.add_row("evaluations / seconds", "", f"{s['evaluations']} / {s['seconds']:.1f}")
    console.print(table)
