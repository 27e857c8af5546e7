"""Search bench: best objective against evaluations for gd, grid, cmaes and tpe on the same pruning problems.

Every method climbs the same problem through :func:`prune.prune` (same candidate cache, evaluation
counter, budget projection, constraints and winner's-curse guard); the curve of a run is prune's
``search.history``: the best feasible search objective after each evaluation. The problems:

- ``ref2``: the 2-group reference controller (tools/assets/pendulum_mlp.pt) at 10% kept, closed-loop
  return on the fast plant, stability constraint on with the re-fit (off without it: no candidate is
  stable at 10% without the re-fit, see docs/bench_prune_no_refit.json);
- ``ref4``: the 4-group controller (tools/assets/pendulum_mlp4.pt) at 5% kept: the grid at resolution
  0.1 is judged in full and the other methods get a fifth of its evaluations (the issue's criterion:
  does some method reach the grid's objective with at most a fifth of its evaluations?);
- ``tdmpc``: the TD-MPC agent (5 components), planning return on the fast plant;
- ``autoencoder``: the digits autoencoder, per-image PSNR on validation images.

each with and without the least-squares re-fit (``reconstruct``). gd, cmaes and tpe run on several
seeds (ref4 and TD-MPC on one: their evaluations are the dear ones); the grid is deterministic and runs once. The importance metric of a problem is fixed up front
(prune's ``auto`` choice at the uniform point, made once) so every evaluation on a curve is a search step.

    python -m tools.usecases.search_bench --out docs/search_bench.json     # the bench (PNG and Markdown table beside it)
    python -m tools.usecases.search_bench --quick --out /tmp/sb.json       # a minute: the test's run

docs/search_bench.json was made in parallel processes and merged (a repeated grid run is kept once)::

    python -m tools.usecases.search_bench --problems ref4 --out ref4.json
    python -m tools.usecases.search_bench --problems ref2 autoencoder tdmpc --out rest.json
    python -m tools.usecases.search_bench --problems ref4 --modes refit --seeds 1 --out ref4s1.json
    python -m tools.usecases.search_bench --problems tdmpc --seeds 1 --out tdmpcs1.json
    python -m tools.usecases.search_bench --merge rest.json ref4.json ref4s1.json tdmpcs1.json --out docs/search_bench.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from prune import Groups, find_groups, prune
from tools.controllers.load import load_controller
from tools.controllers.native import default_controller_path
from tools.plant.episodes import SEARCH_SEED
from tools.plant.objectives import pendulum_stability, radius_check, return_objective, visit

METHODS = ("gd", "grid", "cmaes", "tpe")
STOCHASTIC = ("gd", "cmaes", "tpe")  # the grid is the same on every seed
PROBLEMS = ("ref2", "ref4", "tdmpc", "autoencoder")
TIE = 0.005  # objectives closer than this (after rounding to the table's two decimals) are a tie
SCHEMA = 1


@dataclass
class Sizes:
    """How much the bench spends: the real run, or ``--quick`` for the test."""

    seeds: dict[str, tuple[int, ...]]  # problem -> seeds of gd / cmaes / tpe (the grid runs once)
    pendulum_episodes: int  # fast-plant episodes per evaluation (reference controllers)
    planning_episodes: int  # fast-plant planning episodes per evaluation (TD-MPC)
    state_episodes: int  # TD-MPC: episodes whose visited inputs feed the re-fit and the data-aware metrics
    evaluations: dict[str, int]  # problem -> evaluation budget of gd / cmaes / tpe (ref4: a fifth of the grid's)
    resolution: dict[str, float]  # problem -> grid resolution
    keep: dict[str, float]  # problem -> budget (fraction of prunable parameters kept)

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        """The real run's sizes (chosen to fit ~15 minutes on a loaded 2-core machine) or the quick ones."""
        if quick:
            return cls(
                seeds={p: (0,) for p in PROBLEMS},
                pendulum_episodes=4,
                planning_episodes=2,
                state_episodes=2,
                evaluations={"ref2": 8, "ref4": 8, "tdmpc": 4, "autoencoder": 8},
                resolution={"ref2": 0.25, "ref4": 0.5, "tdmpc": 1.0, "autoencoder": 0.25},
                keep={"ref2": 0.1, "ref4": 0.05, "tdmpc": 0.25, "autoencoder": 0.25},
            )
        return cls(
            seeds={"ref2": (0, 1), "ref4": (0,), "tdmpc": (0,), "autoencoder": (0, 1, 2)},
            pendulum_episodes=8,
            planning_episodes=2,
            state_episodes=8,
            evaluations={"ref2": 40, "ref4": 0, "tdmpc": 16, "autoencoder": 60},
            resolution={"ref2": 0.05, "ref4": 0.1, "tdmpc": 1.0, "autoencoder": 0.05},
            keep={"ref2": 0.1, "ref4": 0.05, "tdmpc": 0.25, "autoencoder": 0.25},
        )


@dataclass
class Problem:
    """One pruning problem every method is run on."""

    name: str
    title: str
    model: torch.nn.Module
    groups: Groups
    keep: float
    objective: Callable[[torch.nn.Module], Any]
    states: Any
    radius: Callable[[torch.nn.Module], float] | None
    resolution: float
    metric: str = "l1"


@dataclass
class Run:
    """One method on one problem, one mode (re-fit or not), one seed."""

    problem: str
    reconstruct: bool
    method: str
    seed: int
    evaluations: int
    seconds: float
    objective: float  # the selected candidate's search objective (after the winner's-curse guard)
    best_seen: float  # the highest search objective met
    feasible: bool
    curve: list[float]  # best feasible search objective after each evaluation (NaN before the first feasible one)


@dataclass
class SearchBenchReport:
    schema: int
    config: dict
    problems: dict = field(
        default_factory=dict
    )  # name -> title, keep, metric, groups, unpruned objective, grid resolution
    runs: list[Run] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)  # one row per problem and mode: best after N evals per method
    fifth: dict = field(default_factory=dict)  # ref4: evaluations each method needs to reach the grid's objective
    seconds: float = 0.0


def reference_problem(name: str, path: str, keep: float, episodes: int, resolution: float) -> Problem:
    """A pendulum controller: return on the fast plant, stability constraint when the unpruned loop is stable."""
    controller = load_controller(path)
    model = controller.module.eval()
    groups = find_groups(model, torch.as_tensor(controller.spec.sample_observations(8, 0)))
    check = radius_check if pendulum_stability(model).stable else None
    title = f"{len(groups.components)}-group controller {controller.architecture['hidden']}, keep {keep:g}"
    return Problem(
        name,
        title,
        model,
        groups,
        keep,
        return_objective(episodes, SEARCH_SEED),
        visit(episodes, SEARCH_SEED)(model),
        check,
        resolution,
    )


def tdmpc_problem(keep: float, sizes: Sizes) -> Problem:
    """The TD-MPC agent: planning return on the fast plant (5 components)."""
    # Deferred: the agent's modules are only needed for this problem.
    from tools.usecases.tdmpc.agent import example_inputs, load_agent
    from tools.usecases.tdmpc.evaluate import planning_objective, visited_inputs

    loaded = load_agent()
    agent, planner = loaded.agent, loaded.planner
    groups = find_groups(agent, example_inputs(agent.cfg, seed=0))
    states = visited_inputs(agent, planner, sizes.state_episodes, 3000, 0)  # the TD-MPC bench's state seeds
    return Problem(
        "tdmpc",
        f"TD-MPC agent ({len(groups.components)} components), keep {keep:g}",
        agent,
        groups,
        keep,
        planning_objective(planner, sizes.planning_episodes, SEARCH_SEED, 0),
        states,
        None,
        sizes.resolution["tdmpc"],
    )


def autoencoder_problem(keep: float, resolution: float) -> Problem:
    """The digits autoencoder: per-image PSNR on validation images."""
    from tools.usecases.autoencoder.digits import load
    from tools.usecases.autoencoder.model import autoencoder_groups, load_autoencoder, psnr_objective

    data = load(None, 0)
    model, _ = load_autoencoder()
    groups = autoencoder_groups(model, False)
    return Problem(
        "autoencoder",
        f"digits autoencoder (components {', '.join(groups.components)}), keep {keep:g}",
        model,
        groups,
        keep,
        psnr_objective(data.val),
        data.train,
        None,
        resolution,
    )


def build(name: str, sizes: Sizes) -> Problem:
    """The problem called ``name`` at the sizes' budget and resolution."""
    keep, res = sizes.keep[name], sizes.resolution[name]
    if name == "ref2":
        return reference_problem(name, str(default_controller_path()), keep, sizes.pendulum_episodes, res)
    if name == "ref4":
        return reference_problem(
            name, str(resources.files("tools") / "assets" / "pendulum_mlp4.pt"), keep, sizes.pendulum_episodes, res
        )
    if name == "tdmpc":
        return tdmpc_problem(keep, sizes)
    return autoencoder_problem(keep, res)


def run(problem: Problem, method: str, reconstruct: bool, seed: int, evaluations: int) -> Run:
    """One search; its curve is prune's history (best feasible objective after each evaluation)."""
    torch.manual_seed(seed)
    # without the re-fit no candidate of the ELU reference controllers at 10% / 5% keeps the closed loop stable
    # (docs/bench_prune_no_refit.json): the shrink-only curves compare the optimisers on return alone
    result = prune(
        problem.model,
        problem.groups,
        problem.keep,
        problem.objective,
        method=method,
        metric=problem.metric,
        states=problem.states,
        seed=seed,
        radius_check=problem.radius if reconstruct else None,
        resolution=problem.resolution,
        max_evaluations=evaluations,
        reconstruct=reconstruct,
    )
    s = result.search
    curve = [float(x) for x in s.history]
    return Run(
        problem.name,
        reconstruct,
        method,
        seed,
        len(curve),
        s.seconds,
        float(s.objective),
        float(s.best_seen),
        bool(s.feasible),
        curve,
    )


def best_after(curve: list[float], n: int) -> float:
    """Best feasible objective within the first ``n`` evaluations (NaN if none was feasible)."""
    head = [x for x in curve[:n] if not math.isnan(x)]
    return max(head) if head else float("nan")


def checkpoints(budget: int) -> list[int]:
    """The evaluation counts the summary reports: a tenth, a quarter, half and all of the budget."""
    return sorted({max(1, round(budget * f)) for f in (0.1, 0.25, 0.5, 1.0)})


def summarise(runs: list[Run], problem: str, reconstruct: bool, budget: int) -> dict:
    """Mean over seeds of the best objective after each checkpoint, per method; the winner and its margin."""
    marks = checkpoints(budget)
    row: dict[str, Any] = {
        "problem": problem,
        "reconstruct": reconstruct,
        "budget": budget,
        "checkpoints": marks,
        "methods": {},
    }
    for method in METHODS:
        mine = [r for r in runs if r.problem == problem and r.reconstruct == reconstruct and r.method == method]
        if not mine:
            continue
        row["methods"][method] = {
            # a mean over the same seeds at every checkpoint: NaN until every seed has a feasible candidate
            "best_after": [float(np.mean([best_after(r.curve, n) for r in mine])) for n in marks],
            "final": float(np.mean([best_after(r.curve, budget) for r in mine])),  # at the equal budget
            "full": float(np.mean([best_after(r.curve, len(r.curve)) for r in mine])),  # the grid: over all its points
            "evaluations": int(np.mean([r.evaluations for r in mine])),
            "seeds": len(mine),
        }
    finals = {m: v["final"] for m, v in row["methods"].items() if not math.isnan(v["final"])}
    ranked = sorted(finals, key=lambda m: finals[m], reverse=True)
    if ranked:
        row["winner"] = ranked[0]
        row["tied"] = [
            m for m in ranked if finals[ranked[0]] - finals[m] < TIE
        ]  # the winner and those within TIE of it
        row["margin_over_next"] = finals[ranked[0]] - finals[ranked[1]] if len(ranked) > 1 else 0.0
        row["margin_over_gd"] = finals[ranked[0]] - finals["gd"] if "gd" in finals else None
    return row


def fifth_of_grid(runs: list[Run], reconstruct: bool) -> dict:
    """ref4: the grid's objective and evaluations; per method and seed, the evaluations needed to reach it."""
    grid = next(r for r in runs if r.problem == "ref4" and r.reconstruct == reconstruct and r.method == "grid")
    target, allowed = grid.best_seen, max(1, grid.evaluations // 5)
    out: dict[str, Any] = {
        "grid_objective": target,
        "grid_evaluations": grid.evaluations,
        "allowed": allowed,
        "methods": {},
    }
    for method in STOCHASTIC:
        reached = []
        for r in (r for r in runs if r.problem == "ref4" and r.reconstruct == reconstruct and r.method == method):
            hit = next((i + 1 for i, x in enumerate(r.curve) if not math.isnan(x) and x >= target), None)
            reached.append(
                {
                    "seed": r.seed,
                    "evaluations_to_reach": hit,
                    "best": best_after(r.curve, allowed),
                    "gap": target - best_after(r.curve, allowed),
                }
            )
        out["methods"][method] = {
            "seeds": reached,
            "reaches_within_fifth": all(
                x["evaluations_to_reach"] is not None and x["evaluations_to_reach"] <= allowed for x in reached
            ),
        }
    out["some_method_reaches"] = any(v["reaches_within_fifth"] for v in out["methods"].values())
    return out


def bench(sizes: Sizes, problems: tuple[str, ...], modes: tuple[bool, ...], console: Console) -> SearchBenchReport:
    """Every method on every problem and mode; ref4's grid first (its count sets the others' budget)."""
    start = time.perf_counter()
    report = SearchBenchReport(
        SCHEMA, {**asdict(sizes), "problems": list(problems), "modes": list(modes), "methods": list(METHODS)}
    )
    for name in problems:
        problem = build(name, sizes)
        problem.metric = prune(
            problem.model,
            problem.groups,
            problem.keep,
            problem.objective,
            method="uniform",
            metric="auto",
            states=problem.states,
            radius_check=problem.radius,
        ).metric
        report.problems[name] = {
            "title": problem.title,
            "keep": problem.keep,
            "metric": problem.metric,
            "components": list(problem.groups.components),
            "grid_resolution": problem.resolution,
            "unpruned_objective": float(np.mean(problem.objective(problem.model))),
        }
        console.print(
            f"{name}: {problem.title}; metric {problem.metric}; unpruned objective "
            f"{report.problems[name]['unpruned_objective']:.2f}"
        )
        for reconstruct in modes:
            grid = run(problem, "grid", reconstruct, 0, 0)
            report.runs.append(grid)
            budget = sizes.evaluations[name] or max(1, grid.evaluations // 5)
            console.print(
                f"  re-fit {reconstruct!s:5} grid: {grid.best_seen:.2f} in {grid.evaluations} evals {grid.seconds:.0f}s"
            )
            for method in STOCHASTIC:
                for seed in sizes.seeds[name]:
                    r = run(problem, method, reconstruct, seed, budget)
                    report.runs.append(r)
                    console.print(
                        f"  re-fit {reconstruct!s:5} {method:5} seed {seed}: {r.best_seen:.2f} in {r.evaluations} evals "
                        f"{r.seconds:.0f}s"
                    )
            report.summary.append(summarise(report.runs, name, reconstruct, budget))
            if name == "ref4":
                report.fifth[str(reconstruct)] = fifth_of_grid(report.runs, reconstruct)
    report.seconds = time.perf_counter() - start
    return report


def fmt(x: float | None) -> str:
    """A figure of the tables: two decimals, '-' for none (no feasible candidate yet)."""
    return "-" if x is None or math.isnan(x) else f"{x:.2f}"


def table_rows(report: SearchBenchReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (best objective after N evaluations, mean over seeds)."""
    header = ["problem", "re-fit", "N evals", *METHODS, "winner (margin over next, over gd)"]
    rows = []
    for s in report.summary:
        marks = s["checkpoints"]
        cells = []
        for m in METHODS:
            v = s["methods"].get(m)
            if v is None:
                cells.append("-")
            elif m == "grid":
                cells.append(
                    f"{fmt(v['final'])} in {min(v['evaluations'], s['budget'])}; {fmt(v.get('full'))} in all {v['evaluations']}"
                )
            else:
                cells.append(" / ".join(fmt(x) for x in v["best_after"]))
        win = s.get("winner", "-")
        if "winner" not in s:
            margin = "-"
        elif len(s.get("tied", [win])) > 1:
            margin = f"tie: {', '.join(s['tied'])}"
        else:
            margin = f"{win} (+{fmt(s['margin_over_next'])}, +{fmt(s['margin_over_gd'] or 0)})"
        rows.append(
            [
                report.problems[s["problem"]]["title"],
                "yes" if s["reconstruct"] else "no",
                ", ".join(map(str, marks)),
                *cells,
                margin,
            ]
        )
    return header, rows


def verdict(report: SearchBenchReport) -> str:
    """Which method wins at the equal budget, on how many rows (problem x mode), and by how much over gd."""
    rows = [x for x in report.summary if "winner" in x]
    outright = [x for x in rows if len(x.get("tied", [x["winner"]])) == 1]
    parts = []
    for m in METHODS:
        mine = [x for x in outright if x["winner"] == m]
        if mine:
            over_gd = [x["margin_over_gd"] for x in mine if x.get("margin_over_gd")]
            parts.append(
                f"{m} wins {len(mine)}" + (f" (by {min(over_gd):.2f} to {max(over_gd):.2f} over gd)" if over_gd else "")
            )
    ties = len(rows) - len(outright)
    return f"at equal evaluation budgets, of {len(rows)} rows: " + "; ".join(parts) + (f"; {ties} tied" if ties else "")


def print_tables(console: Console, report: SearchBenchReport) -> None:
    """The curve summary and the ref4 fifth-of-the-grid verdict."""
    header, rows = table_rows(report)
    t = Table(
        title="best search objective after N evaluations (mean over seeds; grid: best within the budget N, and over all its points)"
    )
    for h in header:
        t.add_column(h, justify="right")
    for r in rows:
        t.add_row(*r)
    console.print(t)
    console.print(verdict(report))
    for mode, f in report.fifth.items():
        verdicts = ", ".join(
            f"{m}: {'yes' if v['reaches_within_fifth'] else 'no'} "
            f"({'/'.join(str(x['evaluations_to_reach'] or '-') for x in v['seeds'])} evals)"
            for m, v in f["methods"].items()
        )
        console.print(
            f"4 groups at 5%, re-fit {mode}: grid {fmt(f['grid_objective'])} in {f['grid_evaluations']} evals; "
            f"reached within a fifth ({f['allowed']})? {verdicts}"
        )


def markdown(report: SearchBenchReport) -> str:
    """The summary as a Markdown table (for docs/ and the README)."""
    header, rows = table_rows(report)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", verdict(report) + "."]
    for mode, f in report.fifth.items():
        lines.append("")
        lines.append(
            f"4 groups at 5%, re-fit {'yes' if mode == 'True' else 'no'}: grid {fmt(f['grid_objective'])} in "
            f"{f['grid_evaluations']} evaluations; evaluations to reach it (per seed, at most {f['allowed']} allowed): "
            + "; ".join(
                f"{m} {'/'.join(str(x['evaluations_to_reach'] or '-') for x in v['seeds'])}"
                for m, v in f["methods"].items()
            )
        )
    return "\n".join(lines) + "\n"


def plot(report: SearchBenchReport, path: Path) -> None:
    """Best-so-far curves (mean over seeds), one panel per problem and mode."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(s["problem"], s["reconstruct"], s["budget"]) for s in report.summary]
    cols = 2
    fig, axes = plt.subplots(
        math.ceil(len(panels) / cols), cols, figsize=(11, 3.2 * math.ceil(len(panels) / cols)), squeeze=False
    )
    for ax, (name, reconstruct, budget) in zip(axes.flat, panels):
        for method in METHODS:
            mine = [r for r in report.runs if r.problem == name and r.reconstruct == reconstruct and r.method == method]
            if not mine:
                continue
            n = max(len(r.curve) for r in mine) if method == "grid" and name == "ref4" else budget
            ys = np.array([[best_after(r.curve, i) for i in range(1, n + 1)] for r in mine])
            ax.plot(
                np.arange(1, n + 1), ys.mean(axis=0), label=method
            )  # NaN (no line) until every seed has a feasible candidate
        ax.set_title(f"{report.problems[name]['title']}, re-fit {'on' if reconstruct else 'off'}", fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("evaluations", fontsize=8)
        ax.set_ylabel("best objective", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def json_safe(value: Any) -> Any:
    """NaN and infinities as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> None:
    """Run the bench, print the tables, write JSON + PNG + Markdown."""
    p = argparse.ArgumentParser(
        prog="python -m tools.usecases.search_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out", type=Path, default=Path("docs/search_bench.json"), help="JSON report (PNG and .md beside it)"
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: one seed, a few evaluations (the test's run)")
    p.add_argument("--problems", nargs="*", default=list(PROBLEMS), choices=PROBLEMS)
    p.add_argument(
        "--modes",
        default="both",
        choices=("both", "refit", "shrink"),
        help="with and without the least-squares re-fit, or one of them",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="seeds of gd / cmaes / tpe on every problem (default: per problem, see Sizes)",
    )
    p.add_argument(
        "--merge", type=Path, nargs="+", help="combine these reports (runs of other --problems) into --out; no search"
    )
    args = p.parse_args(argv)
    console = Console(width=170)
    if args.merge:
        write(merge([json.loads(m.read_text()) for m in args.merge]), args.out, console)
        return
    torch.set_num_threads(1)  # small batched models: one thread is fastest on a shared machine
    sizes = Sizes.of(args.quick)
    if args.seeds:
        sizes.seeds = {name: tuple(args.seeds) for name in PROBLEMS}
    modes = {"both": (True, False), "refit": (True,), "shrink": (False,)}[args.modes]
    write(bench(sizes, tuple(args.problems), modes, console), args.out, console)


def merge(reports: list[dict]) -> SearchBenchReport:
    """One report from several (each run on other problems, e.g. in parallel processes); summaries recomputed."""
    out = SearchBenchReport(
        SCHEMA, {**reports[0]["config"], "problems": [p for r in reports for p in r["config"]["problems"]]}
    )
    seen = set()
    for r in reports:
        out.problems.update(r["problems"])
        for x in r["runs"]:  # a run repeated in two reports (the deterministic grid) is kept once
            key = (x["problem"], x["reconstruct"], x["method"], x["seed"])
            if key not in seen:
                seen.add(key)
                out.runs.append(Run(**{**x, "curve": [float("nan") if v is None else v for v in x["curve"]]}))
        out.seconds += r["seconds"]
    # the rows are recomputed from the runs (a report of an older version may lack a column)
    rows = {(row["problem"], row["reconstruct"]): row for r in reports for row in r["summary"]}
    for row in sorted(rows.values(), key=lambda row: (PROBLEMS.index(row["problem"]), not row["reconstruct"])):
        out.summary.append(summarise(out.runs, row["problem"], row["reconstruct"], row["budget"]))
        if row["problem"] == "ref4":
            out.fifth[str(row["reconstruct"])] = fifth_of_grid(out.runs, row["reconstruct"])
    return out


def write(report: SearchBenchReport, out: Path, console: Console) -> None:
    """Print the tables; write the JSON, the PNG and the Markdown table."""
    print_tables(console, report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(json_safe(asdict(report)), indent=1) + "\n")
    plot(report, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(markdown(report))
    console.print(f"wrote {out}, {out.with_suffix('.png')}, {out.with_suffix('.md')} ({report.seconds:.0f}s of search)")


if __name__ == "__main__":
    main()
