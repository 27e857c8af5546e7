"""Benchmark of prune/: methods x budgets on the reference controller, judged by gymnasium's Pendulum-v1.

Reads top to bottom. For every budget (fraction of prunable parameters kept) and every method, the
coefficients are searched on the fast plant (seeds 2000..2063, disjoint from the judge's), then the
pruned controller is judged on gymnasium's own Pendulum-v1, seeds 0..99, and its closed loop is
linearised at the upright equilibrium. A second part runs grid (resolution 0.1) against gradient
descent on a controller with four hidden layers (four groups). Prints tables, writes JSON and a PNG
of return against parameters kept, and checks the issue's acceptance criteria.

    python -m tools.bench.prune --out bench_prune.json
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from prune import find_groups, prune
from tools.bench.report import budget_table, checks_table
from tools.controllers.load import load_controller
from tools.controllers.native import default_controller_path
from tools.plant.episodes import SEARCH_SEED
from tools.plant.evaluate import closed_loop_return
from tools.plant.objectives import pendulum_stability, radius_check, return_objective, visit

BUDGETS = (0.5, 0.25, 0.1, 0.05)
# label -> (search method, importance metric, fine-tune)
METHODS = {
    "random": ("uniform", "random", False),
    "uniform-l1": ("uniform", "l1", False),
    "uniform-l2": ("uniform", "l2", False),
    "global": ("global", None, False),
    "grid": ("grid", None, False),
    "gd": ("gd", None, False),
    "gd+finetune": ("gd", None, True),
    "cmaes": ("cmaes", None, False),  # CMA-ES (cma) on the same problem
    "tpe": ("tpe", None, False),  # Optuna's TPE sampler on the same problem
}
DEFAULT_METHODS = (
    "random",
    "uniform-l1",
    "uniform-l2",
    "global",
    "grid",
    "gd",
    "gd+finetune",
)  # what the bench compared before cmaes/tpe
UNIFORM = ("random", "uniform-l1", "uniform-l2")


@dataclass
class BenchConfig:
    controller: str = str(default_controller_path())
    """reference controller (two hidden layers)"""
    controller4: str = str(resources.files("tools") / "assets" / "pendulum_mlp4.pt")
    """controller with four hidden layers for the grid-vs-gd comparison ('' skips it)"""
    metric: str = "auto"
    """importance metric of grid / gd / gd+finetune / global ('auto': the best at the uniform point, see prune.api.choose_metric)"""
    reconstruct: bool = True
    """re-fit layers that lost inputs by least squares on visited states (every method alike)"""
    search_episodes: int = 64
    """fast-plant episodes per objective evaluation (seeds 2000..)"""
    judge_episodes: int = 100
    """gymnasium episodes judging each pruned controller (seeds 0..N-1)"""
    tolerance: float = 0.01
    """budget tolerance (fraction of prunable parameters)"""
    max_evaluations: int = 150
    """objective evaluations gradient descent may spend (SPSA with restarts; metric trials included)"""
    seed: int = 0
    """seed of random importance, SPSA and fine-tuning"""
    four_group_budgets: tuple[float, ...] = (0.05,)
    """budgets of the grid-vs-gd comparison (the snapped grid judges ~2,000-4,000 points per budget: minutes each)"""


@dataclass
class BenchRow:
    """One method at one budget."""

    controller: str
    method: str
    metric: str
    keep: float
    keep_fraction: float
    feasible: bool
    params: int
    macs: int
    widths: list[int]
    coefficients: dict[str, float]
    objective: float
    best_seen: float  # highest search objective met; ``objective`` is the one selected (significance guard)
    judge_return: float
    judge_ratio: float  # return / unpruned return (returns are negative: 1.10 is 10% worse)
    radius: float
    evaluations: int
    seconds: float
    finetune_seconds: float = 0.0
    finetune_kept: bool | None = None  # False: distilling lowered the search objective, the searched weights were kept
    metric_trials: dict[str, float] = field(default_factory=dict)  # metric 'auto': uniform-point objective per metric
    judge_returns: list[float] = field(default_factory=list)  # per gym episode (seeds 0..N-1): paired comparisons


@dataclass
class BenchReport:
    config: dict
    unpruned: dict
    rows: list[BenchRow] = field(default_factory=list)
    four_group: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)


def run_method(model, groups, label, method, metric, ft, keep, cfg, states, name, base: float) -> BenchRow:
    """Prune with one method at one budget, judge on gymnasium, linearise the closed loop."""
    # the stability constraint only means something for a controller that is stable before pruning
    check = radius_check if pendulum_stability(model).stable else None
    result = prune(
        model,
        groups,
        keep,
        return_objective(cfg.search_episodes, SEARCH_SEED),
        method=method,
        metric=metric,
        states=states,
        seed=cfg.seed,
        tolerance=cfg.tolerance,
        radius_check=check,
        max_evaluations=cfg.max_evaluations,
        reconstruct=cfg.reconstruct,
        finetune=visit(seed=3000) if ft else None,
        progress=True,
    )
    judged = closed_loop_return(result.model, cfg.judge_episodes, 0, "gym") if cfg.judge_episodes else None
    judge = judged.mean if judged else float("nan")
    widths = [w["out"] for k, w in result.widths.items() if "out" in w][:-1]
    return BenchRow(
        name,
        label,
        result.metric,
        keep,
        result.search.keep_fraction,
        result.search.feasible,
        result.after.params,
        result.after.macs,
        widths,
        result.coefficients,
        result.objective_after,
        result.search.best_seen,
        judge,
        judge / base,
        pendulum_stability(result.model).radius,
        result.search.evaluations,
        result.search.seconds,
        result.finetune.seconds if result.finetune else 0.0,
        result.finetune.kept if result.finetune else None,
        result.search.metric_trials,
        [float(x) for x in judged.returns] if judged else [],
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m tools.bench.prune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("bench_prune.json"), help="JSON report (PNG beside it)")
    p.add_argument("--controller", default=BenchConfig.controller)
    p.add_argument("--controller4", default=BenchConfig.controller4)
    p.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS))
    p.add_argument("--methods", nargs="*", default=list(DEFAULT_METHODS), choices=list(METHODS))
    p.add_argument("--metric", default=BenchConfig.metric)
    p.add_argument("--judge-episodes", type=int, default=BenchConfig.judge_episodes)
    p.add_argument("--seed", type=int, default=BenchConfig.seed)
    p.add_argument("--max-evaluations", type=int, default=BenchConfig.max_evaluations)
    p.add_argument("--tolerance", type=float, default=BenchConfig.tolerance)
    p.add_argument(
        "--four-group-budgets",
        type=float,
        nargs="*",
        default=list(BenchConfig.four_group_budgets),
        help="budgets of the four-group grid-vs-gd comparison (none skips it)",
    )
    p.add_argument(
        "--no-reconstruct", action="store_true", help="shrink only, no least-squares re-fit of the next layers"
    )
    args = p.parse_args(argv)
    cfg = BenchConfig(
        controller=args.controller,
        controller4=args.controller4,
        metric=args.metric,
        judge_episodes=args.judge_episodes,
        seed=args.seed,
        max_evaluations=args.max_evaluations,
        tolerance=args.tolerance,
        reconstruct=not args.no_reconstruct,
        four_group_budgets=tuple(args.four_group_budgets),
    )
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)  # tiny batched MLP calls: one thread is fastest on this shared 2-core machine
    console = Console(width=150)
    console.print(f"bench_prune, seed {cfg.seed}: {asdict(cfg)}")

    controller = load_controller(cfg.controller)
    model = controller.module.eval()
    example = torch.as_tensor(controller.spec.sample_observations(8, cfg.seed))
    groups = find_groups(model, example)
    objective = return_objective(cfg.search_episodes, SEARCH_SEED)
    unpruned_return = closed_loop_return(model, cfg.judge_episodes, 0, "gym").mean
    unpruned = {
        "params": sum(p.numel() for p in model.parameters()),
        "objective": float(np.mean(objective(model))),
        "judge_return": unpruned_return,
        "radius": pendulum_stability(model).radius,
        "architecture": controller.architecture,
        "sha256": controller.sha256,
    }
    console.print(
        f"unpruned {controller.architecture}: return {unpruned_return:.1f} (gym seeds 0..{cfg.judge_episodes - 1}), "
        f"objective {unpruned['objective']:.1f}, spectral radius {unpruned['radius']:.4f}"
    )
    report = BenchReport(asdict(cfg), unpruned)
    states = visit(cfg.search_episodes, SEARCH_SEED)(model)
    for keep in args.budgets:
        for label in args.methods:
            method, metric, ft = METHODS[label]
            metric = metric or cfg.metric
            row = run_method(model, groups, label, method, metric, ft, keep, cfg, states, "reference", unpruned_return)
            report.rows.append(row)
            console.print(
                f"keep {keep:.2f} {label:12s} {row.metric:12s} return {row.judge_return:8.1f} ({row.judge_ratio:.3f}x) "
                f"objective {row.objective:8.1f} evals {row.evaluations:4d} {row.seconds:6.1f}s widths {row.widths}"
            )

    if cfg.controller4 and cfg.four_group_budgets:
        report.four_group = four_group(cfg, cfg.four_group_budgets, console)
    report.checks = checks(report, args.budgets)
    print_tables(console, report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(asdict(report), indent=2, allow_nan=True) + "\n")
    plot(report, args.out.with_suffix(".png"))
    console.print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


def four_group(cfg: BenchConfig, budgets, console: Console) -> dict:
    """Grid at resolution 0.1 against gradient descent on the four-hidden-layer controller."""
    controller = load_controller(cfg.controller4)
    model = controller.module.eval()
    groups = find_groups(model, torch.as_tensor(controller.spec.sample_observations(8, cfg.seed)))
    states = visit(cfg.search_episodes, SEARCH_SEED)(model)
    base = closed_loop_return(model, cfg.judge_episodes, 0, "gym").mean if cfg.judge_episodes else float("nan")
    out: dict = {
        "controller": cfg.controller4,
        "architecture": controller.architecture,
        "groups": groups.names,
        "unpruned_return": base,
        "unpruned_objective": float(np.mean(return_objective(cfg.search_episodes, SEARCH_SEED)(model))),
        "budgets": {},
    }
    for keep in budgets:
        entry: dict = {}
        grid = run_method(model, groups, "grid", "grid", cfg.metric, False, keep, cfg, states, "four-layer", base)
        # gradient descent may spend what the acceptance criterion allows: a fifth of the grid's evaluations
        allowed = replace(cfg, max_evaluations=max(1, grid.evaluations // 5))
        gd = run_method(model, groups, "gd", "gd", cfg.metric, False, keep, allowed, states, "four-layer", base)
        entry["grid"], entry["gd"] = asdict(grid), asdict(gd)
        g, d = entry["grid"], entry["gd"]
        entry["gd_reaches_grid"] = d["objective"] >= g["objective"]
        entry["gap"] = g["objective"] - d["objective"]  # how far gd ends below grid's pick (<= 0: reached)
        entry["gd_reaches_grid_best_seen"] = d["best_seen"] >= g["best_seen"]
        entry["evaluation_ratio"] = d["evaluations"] / max(1, g["evaluations"])
        out["budgets"][str(keep)] = entry
        console.print(
            f"4 groups keep {keep:.2f}: grid {g['objective']:.1f} in {g['evaluations']} evals {g['seconds']:.1f}s | "
            f"gd {d['objective']:.1f} in {d['evaluations']} evals {d['seconds']:.1f}s"
        )
    return out


PAIRED_SE = 2.0


def paired_gap(a: BenchRow, b: BenchRow) -> float:
    """Mean per-episode return difference a - b on the same judge seeds, in standard errors (inf when identical)."""
    d = np.asarray(a.judge_returns) - np.asarray(b.judge_returns)
    if d.size < 2:
        return float("nan")
    se = d.std(ddof=1) / np.sqrt(d.size)
    return float(d.mean() / se) if se > 0 else (0.0 if d.mean() == 0 else math.copysign(math.inf, d.mean()))


def checks(report: BenchReport, budgets) -> dict:
    """The issue's acceptance criteria, evaluated on the measured rows."""
    by = {(r.method, r.keep): r for r in report.rows}
    out = {}
    for keep in budgets:
        gd = by.get(("gd", keep))
        if gd is None:
            continue
        uni = [by[(m, keep)] for m in UNIFORM if (m, keep) in by]
        out[f"gd_ge_uniform_judge_{keep}"] = all(gd.judge_return >= u.judge_return for u in uni)
        # the same on the judge's episodes, paired: gd is not worse than any uniform baseline by more than
        # PAIRED_SE standard errors of the per-episode difference (held-out episodes carry noise no search removes)
        out[f"gd_not_worse_than_uniform_paired_{keep}"] = all(paired_gap(gd, u) >= -PAIRED_SE for u in uni)
        out[f"gd_ge_uniform_objective_{keep}"] = all(gd.objective >= u.objective for u in uni)
        out[f"gd_under_60s_{keep}"] = gd.seconds < 60
    if ("gd", 0.25) in by:
        out["gd_25_within_10pct"] = by[("gd", 0.25)].judge_ratio <= 1.10
    if ("gd+finetune", 0.1) in by:
        out["gd_finetune_10_within_10pct"] = by[("gd+finetune", 0.1)].judge_ratio <= 1.10
    for keep, entry in report.four_group.get("budgets", {}).items():
        out[f"four_group_gd_reaches_grid_{keep}"] = entry["gd_reaches_grid"]
        out[f"four_group_gd_fifth_of_evals_{keep}"] = entry["evaluation_ratio"] <= 0.2
    return out


def print_tables(console: Console, report: BenchReport) -> None:
    n = report.config.get("judge_episodes", 100)

    def cell(r) -> str:
        mark = "" if r.feasible else " [red]x[/]"  # x: no candidate met the constraints (stability, budget band)
        return f"{r.judge_return:.1f}{mark} ({r.evaluations} ev, {r.seconds:.0f}s)"

    title = f"gymnasium Pendulum-v1 return (seeds 0..{n - 1}) by method and parameters kept; unpruned {report.unpruned['judge_return']:.1f}"
    console.print(budget_table(title, report.rows, cell))
    console.print(
        "x: infeasible (closed loop unstable at upright, or budget outside the band); gd+finetune shows the search's verdict"
    )
    if report.four_group:
        t4 = Table(
            title=f"four groups ({report.four_group['architecture']['hidden']}): grid 0.1 vs gradient descent, search objective"
        )
        for col in (
            "keep",
            "grid objective (best seen)",
            "grid evals",
            "grid s",
            "gd objective (best seen)",
            "gd evals",
            "gd s",
            "gd >= grid",
            "evals ratio",
            "grid return",
            "gd return",
        ):
            t4.add_column(col, justify="right")
        for keep, e in report.four_group["budgets"].items():
            g, d = e["grid"], e["gd"]
            t4.add_row(
                keep,
                f"{g['objective']:.2f} ({g['best_seen']:.2f})",
                str(g["evaluations"]),
                f"{g['seconds']:.1f}",
                f"{d['objective']:.2f} ({d['best_seen']:.2f})",
                str(d["evaluations"]),
                f"{d['seconds']:.1f}",
                str(e["gd_reaches_grid"]),
                f"{e['evaluation_ratio']:.3f}",
                f"{g['judge_return']:.1f}",
                f"{d['judge_return']:.1f}",
            )
        console.print(t4)
    console.print(checks_table(report.checks, "acceptance checks"))


def plot(report: BenchReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in dict.fromkeys(r.method for r in report.rows):
        rows = sorted((r for r in report.rows if r.method == label), key=lambda r: r.keep_fraction)
        ax.plot([100 * r.keep_fraction for r in rows], [r.judge_return for r in rows], marker="o", label=label)
    ax.axhline(report.unpruned["judge_return"], color="k", ls="--", lw=1, label="unpruned")
    ax.axhline(1.1 * report.unpruned["judge_return"], color="grey", ls=":", lw=1, label="unpruned - 10%")
    ax.set_xscale("log")
    ticks = [5, 10, 25, 50, 100]
    ax.set_xticks(ticks, [f"{t}%" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("prunable parameters kept")
    ax.set_ylabel(f"return, gymnasium Pendulum-v1 seeds 0..{report.config.get('judge_episodes', 100) - 1}")
    ax.set_title(
        "structured pruning of the reference controller"
        + (" (least-squares re-fit)" if report.config.get("reconstruct") else " (no re-fit)")
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
