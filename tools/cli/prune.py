"""``prune-and-export prune``: shrink a controller to a parameter budget, coefficients searched on the closed loop."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tools.cli.options import (
    add_controller,
    add_quantize,
    add_seed,
    check_quantize,
    controller_from_args,
    finite_float,
    fraction,
    fractions,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from tools.cli.outputs import check_output
from tools.cli.robustness import add_robustness, check_robustness_flags, robustness_from_args
from tools.cli.scale_flags import add_executor, check_executor_flags, executor_from_args
from tools.errors import ToolsError
from tools.pipeline.choices import (
    DEFAULT_METHOD,
    DEFAULT_METRIC,
    METHODS,
    METRICS,
    STABILITY_MODES,
    STABILITY_TOLERANCE,
)
from tools.plant.episodes import SEARCH_EPISODES, SEARCH_SEED

if TYPE_CHECKING:
    from rich.console import Console

HELP = "prune a controller structurally to a parameter budget (a search over soft coefficients: TPE, gradient descent, ...)"


def tolerance(text: str) -> float:
    """argparse type of --tolerance: a finite width of the budget band in [0, 1)."""
    value = finite_float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


def configure(p: argparse.ArgumentParser) -> None:
    add_controller(p)
    p.add_argument(
        "--keep",
        type=fractions,
        default=None,
        metavar="F[,F...]",
        help="fraction of the prunable parameters kept (default 0.25; with --flash-budget and no --keep the "
        "budget is in bytes only); a comma list (0.5,0.25,0.1) solves the "
        "budgets as one continuation, largest first, each search starting from the previous budget's best "
        "points, and writes one model per budget: --out DIR/c.pt becomes DIR/c.keep0.25.pt (and its sidecars)",
    )
    p.add_argument(
        "--method",
        choices=METHODS,
        default=DEFAULT_METHOD,
        help=f"coefficient search or baseline (default {DEFAULT_METHOD}, the search bench's winner, see docs/search_bench.md; "
        "gd: the paper's gradient descent; cmaes and tpe: CMA-ES (cma) and TPE (optuna) on the same problem)",
    )
    p.add_argument(
        "--metric",
        choices=METRICS,
        default=None,
        help=f"importance of units inside a group for gd/grid/global/cmaes/tpe (default {DEFAULT_METRIC}: try each at the "
        "uniform point, search with the best; those evaluations count); uniform-l1/uniform-l2/random fix their own",
    )
    p.add_argument(
        "--no-reconstruct",
        action="store_true",
        help="do not re-fit the layers that lost inputs (by default each candidate's next layers are re-fitted "
        "by least squares on states the unpruned controller visits: closed form, no training)",
    )
    p.add_argument(
        "--finetune", action="store_true", help="distil the pruned controller toward the unpruned one (off by default)"
    )
    add_seed(p)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the pruned controller file here, and beside it <stem>.pt2, <stem>.state_dict.pt, <stem>.widths.json "
        "(with several --keep budgets: <stem>.keep<F><suffix> per budget); nothing is written for a budget "
        "whose model misses a constraint",
    )
    p.add_argument(
        "--component",
        action="append",
        default=[],
        metavar="NAME=PATTERN[,PATTERN]",
        help="name a component by module-name patterns (fnmatch), sharing one coefficient; repeatable "
        "(default: each hidden Linear of the MLP is its own component)",
    )
    p.add_argument(
        "--tolerance",
        type=tolerance,
        default=0.01,
        help="a candidate may keep between keep-TOLERANCE and keep of the prunable parameters (default 0.01)",
    )
    p.add_argument(
        "--floor",
        type=finite_float,
        default=None,
        help="lowest acceptable search objective (mean return); default none",
    )
    p.add_argument(
        "--no-stability", action="store_true", help="drop the closed-loop stability constraint (not even measured)"
    )
    p.add_argument(
        "--stability",
        choices=STABILITY_MODES,
        default="strict",
        help="how the spectral radius at upright is judged: strict (< 1, the default: the only verdict that is a "
        "guarantee), relative (< 1 or no worse than the unpruned controller's + --stability-tolerance; for "
        "controllers whose own margin is tiny), off (measured and reported, never binding)",
    )
    p.add_argument(
        "--stability-tolerance",
        type=non_negative_float,
        default=STABILITY_TOLERANCE,
        metavar="R",
        help=f"--stability relative: radius a candidate may lose against the unpruned controller (default {STABILITY_TOLERANCE})",
    )
    p.add_argument("--resolution", type=fraction, default=0.1, help="grid resolution of the coefficients (default 0.1)")
    p.add_argument(
        "--max-evaluations",
        type=positive_int,
        default=150,
        help="objective evaluations gd may spend, metric trials included (default 150)",
    )
    p.add_argument(
        "--search-episodes",
        type=positive_int,
        default=SEARCH_EPISODES,
        help=f"fast-plant episodes per objective evaluation, seeds {SEARCH_SEED}.. (default {SEARCH_EPISODES})",
    )
    p.add_argument(
        "--judge-episodes",
        type=non_negative_int,
        default=100,
        help="gymnasium episodes of the controller's env (seeds 0..N-1) judging before and after; 0 skips (default 100)",
    )
    add_executor(p, "the search's candidates are evaluated")
    add_early_stop(p)
    # robustness (issue 17): scenarios in the objective and the judge
    add_robustness(p)
    # precision: weight-only int8 chosen with the coefficients (prune.precision)
    add_quantize(p, integer=True)


DEFAULT_KEEP = 0.25


def keeps_of(args: argparse.Namespace) -> list[float | None]:
    """The budgets asked: --keep, else 0.25, else (with --flash-budget alone) [None], a budget in bytes only."""
    if args.keep is not None:
        return list(args.keep)
    return [None] if args.flash_budget is not None else [DEFAULT_KEEP]


def add_early_stop(p: argparse.ArgumentParser) -> None:
    """--ceiling, --stop-within, --no-early-stop: when a search may end before its budget is spent."""
    p.add_argument(
        "--ceiling",
        type=finite_float,
        default=None,
        metavar="X",
        help="end the search at the first feasible candidate whose objective (mean search return) reaches X, "
        "the best there is (default: the env's maximum return where its reward is a known constant per "
        "step, e.g. 1000 on InvertedPendulum-v5)",
    )
    p.add_argument(
        "--stop-within",
        type=non_negative_float,
        default=None,
        metavar="X",
        help="end the search at the first feasible candidate within X of the unpruned objective (default, for "
        "an env without a known ceiling other than Pendulum-v1: the unpruned return's standard error over "
        "the search episodes)",
    )
    p.add_argument(
        "--no-early-stop",
        action="store_true",
        help="no automatic --ceiling / --stop-within: the search spends its budget (Pendulum-v1 never stops early unless asked)",
    )


def _check_before_work(args: argparse.Namespace) -> None:
    """Refuse contradictory numbers and unusable output paths before the controller loads."""
    from tools.pipeline.integer_objective import check_integer
    from tools.pipeline.prune import budget_path, metric_for

    metric_for(args.method, args.metric)  # a contradictory --metric is refused before the controller loads
    check_quantize(args.quantize, args.flash_budget)
    check_integer(args.quantize, args.flash_budget, bool(getattr(args, "scenarios", None)))
    args.keep = keeps_of(args)
    check_robustness_flags(args)
    check_executor_flags(args)
    for keep in args.keep:
        if keep is not None and args.tolerance >= keep:
            raise ToolsError(
                f"--tolerance {args.tolerance:g}: the band [keep - tolerance, keep] must stay above 0 for --keep {keep:g}"
            )
    if args.out is not None:
        for keep in args.keep:
            check_output(args.out if len(args.keep) == 1 else budget_path(args.out, keep), "--out")


def _report(console: Console, summary: dict, keep: float | None, out_asked: bool) -> None:
    """One budget's verdict: the failed constraints with their numbers, and whether the file was written."""
    if not summary["feasible"]:
        why = (
            summary.get("why_infeasible")
            or ", ".join(summary.get("failed_constraints", []))
            or "no candidate met the constraints"
        )
        console.print(
            "[red]no feasible candidate[/] "
            + (f"at keep {keep:g}" if keep is not None else f"under the flash budget {summary.get('flash_budget')} B")
            + f": {why}"
            + ("; nothing written" if out_asked and "files" not in summary else "")
        )
    if summary.get("finetune_kept") is False:
        console.print(
            "fine-tune: distilled weights not kept (see the fine-tune row); the searched weights are returned"
        )


def run(args: argparse.Namespace, console: Console) -> dict:
    # Deferred: pruning imports torch and gymnasium, which --help must not pay for.
    from tools.pipeline.prune import parse_components, print_prune_table, prune_controller_budgets

    _check_before_work(args)
    components = parse_components(args.component)
    controller = controller_from_args(args)
    robustness = robustness_from_args(args, controller.spec.env_id)  # scenario names of the controller's env
    executor = executor_from_args(args)
    if executor is not None:
        console.print(f"search candidates evaluated on {executor.name} ({executor.workers} workers)")
    try:
        pruned = prune_controller_budgets(
            controller,
            args.keep,
            args.method,
            args.metric,
            seed=args.seed,
            out=args.out,
            components=components,
            reconstruct=not args.no_reconstruct,
            finetune=args.finetune,
            tolerance=args.tolerance,
            floor=args.floor,
            stability=not args.no_stability,
            resolution=args.resolution,
            max_evaluations=args.max_evaluations,
            search_episodes=args.search_episodes,
            judge_episodes=args.judge_episodes,
            console=console,
            stability_mode=args.stability,
            stability_tolerance=args.stability_tolerance,
            write_infeasible=False,
            executor=executor,
            ceiling=args.ceiling,
            stop_within=args.stop_within,
            auto_stop=not args.no_early_stop,
            robustness=robustness,
            quantize=args.quantize,
            flash_budget=args.flash_budget,
        )
    finally:
        if executor is not None:
            executor.close()
    for keep, one in zip(args.keep, pruned):
        summary = one.summary
        summary["ok"] = one.feasible
        print_prune_table(console, summary, args.search_episodes, args.judge_episodes)
        _report(console, summary, keep, args.out is not None)

    if len(pruned) == 1:
        return pruned[0].summary
    first = pruned[0].summary
    return {
        "ok": all(p.feasible for p in pruned),
        "keeps": args.keep,
        "method": first["method"],
        "controller": first["controller"],
        "sha256": first["sha256"],
        "env_id": first["env_id"],
        "failed_constraints": {
            f"{k:g}": p.summary["failed_constraints"]
            for k, p in zip(args.keep, pruned)
            if p.summary["failed_constraints"]
        },
        "budgets": [p.summary for p in pruned],
    }
