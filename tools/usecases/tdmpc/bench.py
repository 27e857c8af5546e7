"""Benchmark of component-aware pruning on the TD-MPC agent: methods x budgets, judged with planning on gymnasium.

Reads top to bottom. The agent's pruning groups are traced by ``prune.find_groups`` (components:
encoder, dynamics, reward, policy, q; the latent width is protected, see ``tools/tdmpc.py``), one
soft coefficient per component. For every budget (fraction of prunable parameters kept) and method,
the coefficients are searched with the objective "mean return of MPPI planning with the pruned
agent" on the fast plant (32 episodes, seeds 2000.., disjoint from the judge's), every candidate's
layers that lost inputs re-fitted by least squares on (obs, a) the unpruned planner visits (seeds 3000..); the pruned agent then plans on
gymnasium's own Pendulum-v1, seeds 0..99 (lockstep episodes, ``tools/usecases/tdmpc/evaluate.py``). Methods:
uniform-l1 / uniform-l2 / random (one coefficient for all components), grid (every point of
{0, r, .., 1}^5 snapped onto the budget; r = 1.0 by default, far coarser than the MLP bench's 0.1,
because each evaluation plans 32 episodes of 200 steps, and r = 0.5 already snaps to 157-192 points) and gd (SPSA with restarts, from the best
uniform point; grid and gd pick the importance metric whose uniform point scores best, 'auto').
gd-l1 / gd-l2 (not in the default set) fix the metric, to separate what the coefficient search adds
from what the metric choice adds. Then the policy path (h then pi) of the unpruned and the gd agent at the middle
budget is exported as a controller bundle, one MPPI iteration as ONNX + TVM, timed at batch 1, and the
packed iteration (one vector in, one out) as a bundle verified and timed in the firmware stub on every
target (x86_64 native in µs; ARM under qemu-user as ratios gd / unpruned).
Prints tables, writes JSON, Markdown and PNGs. Each method (its budgets and their judging) is one cell
(:class:`MethodCell`), run here or on a Ray cluster through ``tools.scale.run_cells``
(``prune-and-export bench --controller tdmpc --executor ray``), with the same report.

    python -m tools.usecases.tdmpc.bench --out /tmp/tdmpc_bench
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from export import export_bundle, move_into_place
from prune import find_groups, prune_budgets
from targets import get_target
from tools.bench.folder import temp_dir_for
from tools.bench.latency import measure_stub
from tools.bench.report import budget_table, checks_table
from tools.controllers.native import pendulum_spec
from tools.pipeline.prune import band_tolerance
from tools.plant.evaluate import closed_loop_return
from tools.scale import Cell, Executor, run_cells
from tools.usecases.tdmpc.agent import (
    COMPONENTS,
    PolicyPath,
    TDMPCAgent,
    default_agent_path,
    example_inputs,
    load_agent,
)
from tools.usecases.tdmpc.evaluate import SEARCH_SEED, planning_objective, planning_return, visited_inputs
from tools.usecases.tdmpc.export import (
    device_planner,
    export_packed_step,
    export_planner_step,
    pack_inputs,
    step_inputs,
)

BUDGETS = (0.5, 0.25, 0.1)
# label -> (search method, importance metric; None: 'auto', the best metric at the uniform point)
METHODS = {
    "uniform-l1": ("uniform", "l1"),
    "uniform-l2": ("uniform", "l2"),
    "random": ("uniform", "random"),
    "grid": ("grid", None),
    "gd": ("gd", None),
    # gd with the metric fixed: isolates what the coefficient search adds over the uniform baseline of that metric
    "gd-l1": ("gd", "l1"),
    "gd-l2": ("gd", "l2"),
}
DEFAULT_METHODS = ("uniform-l1", "uniform-l2", "random", "grid", "gd")
UNIFORM = ("uniform-l1", "uniform-l2", "random")
STATE_SEED = 3000
# h then pi is six layers and a x2 torque scale: TVM's fused kernels sum in another order than
# onnxruntime and land about 1e-5 apart (the MLP's 1e-5 default failed at 1.03e-5); 1e-4 N m is far below any effect on the plant
POLICY_TOLERANCE = 1e-4


@dataclass
class TdmpcBenchConfig:
    agent: str = str(default_agent_path())
    """agent file (tools/usecases/tdmpc/train.py)"""
    budgets: tuple[float, ...] = BUDGETS
    """fractions of the prunable parameters kept"""
    methods: tuple[str, ...] = DEFAULT_METHODS
    """methods compared at every budget"""
    search_episodes: int = 32
    """fast-plant planning episodes per objective evaluation (seeds 2000..)"""
    judge_episodes: int = 100
    """gymnasium planning episodes judging each pruned agent (seeds 0..N-1)"""
    max_evaluations: int = 30
    """objective evaluations gd may spend (metric trials included)"""
    grid_resolution: float = 1.0
    """grid step of the coefficients: 1.0 is {0, 1}^5, 23-31 distinct points after snapping onto the budget
    (0.5 gives 157-192 and 0.25 about 1,250: at seconds per planning evaluation, far over a minute)"""
    tolerance: float = 0.01
    """budget tolerance (fraction of prunable parameters)"""
    reconstruct: bool = True
    """re-fit every layer that lost inputs by least squares on (obs, a) the unpruned planner visits (every method alike)"""
    state_episodes: int = 32
    """episodes (seeds 3000.., disjoint from search and judge) whose visited (obs, a) feed the re-fit and data-aware metrics"""
    seed: int = 0
    """seed of random importance, SPSA and the planner's noise"""
    export: bool = True
    """export the policy path and the planner step (unpruned and gd at the export budget) and time them"""
    export_keep: float = 0.25
    """budget whose gd agent is exported"""
    targets: tuple[str, ...] = ("x86_64",)
    """TVM targets of the exports; the packed planner step runs in the firmware stub on each (ARM ones under qemu-user)"""
    device_rounds: int = 5
    """rounds of the stub's bench per packed planner step, interleaved between the unpruned and the gd agent"""
    device_calls: int = 400
    """timed planner steps per round in the stub"""


@dataclass
class TdmpcRow:
    """One method at one budget."""

    method: str
    metric: str
    keep: float
    keep_fraction: float
    feasible: bool
    params: int
    component_coefficients: dict[str, float]  # fraction of each component's hidden units removed
    component_params_kept: dict[str, float]  # fraction of each component's prunable parameters kept
    objective: float  # search objective (fast plant, search seeds) of the selected candidate
    best_seen: float
    judge_return: float  # planning, gymnasium seeds 0..N-1
    judge_ratio: float  # return / unpruned return (returns are negative: 1.10 is 10% worse)
    policy_return: float  # policy path alone (h then pi), gymnasium seeds 0..N-1
    evaluations: int
    seconds: float
    metric_trials: dict[str, float] = field(default_factory=dict)


@dataclass
class TdmpcReport:
    config: dict
    unpruned: dict
    groups: dict
    rows: list[TdmpcRow] = field(default_factory=list)
    export: dict = field(default_factory=dict)
    device: dict = field(default_factory=dict)  # the packed planner step in the firmware stub, per target
    checks: dict = field(default_factory=dict)
    seconds: float = 0.0
    band: dict = field(default_factory=dict)  # the budget band used: asked, used (widened to one unit's share?), why

    def to_dict(self) -> dict:
        return asdict(self)


def component_params(agent: torch.nn.Module) -> dict[str, int]:
    """Parameters per component."""
    return {c: sum(p.numel() for p in agent.get_submodule(c).parameters()) for c in COMPONENTS}


def run_method(
    agent, groups, label: str, cfg: TdmpcBenchConfig, planner, base: float, base_params: dict, states
) -> list[tuple[TdmpcRow, torch.nn.Module]]:
    """Prune with one method at every budget of ``cfg`` as one continuation (largest first, each search starting
    from the previous budget's best points), judge each pruned agent's planning on gymnasium; rows in budget order."""
    method, metric = METHODS[label]
    objective = planning_objective(planner, cfg.search_episodes, SEARCH_SEED, cfg.seed)
    budgets = sorted(cfg.budgets, reverse=True)
    results = prune_budgets(
        agent,
        groups,
        budgets,
        objective,
        method=method,
        metric=metric or "auto",
        seed=cfg.seed,
        states=states,
        reconstruct=cfg.reconstruct,
        tolerance=band_tolerance(groups, cfg.tolerance)[0],
        max_evaluations=cfg.max_evaluations,
        resolution=cfg.grid_resolution,
        progress=True,
    )
    made = {
        keep: judged_row(result, label, keep, cfg, planner, base, base_params) for keep, result in zip(budgets, results)
    }
    return [made[keep] for keep in cfg.budgets]


def judged_row(
    result, label: str, keep: float, cfg: TdmpcBenchConfig, planner, base: float, base_params: dict
) -> tuple[TdmpcRow, torch.nn.Module]:
    """One budget's pruned agent judged: planning and policy path on gymnasium, its components' sizes."""
    small = cast(TDMPCAgent, result.model.eval())  # prune returns a smaller model of the same class
    judge = planning_return(small, planner, cfg.judge_episodes, 0, "gym", cfg.seed).mean
    policy = closed_loop_return(PolicyPath(small), cfg.judge_episodes, 0, "gym").mean
    after = component_params(small)
    kept = {c: after[c] / base_params[c] for c in COMPONENTS}
    row = TdmpcRow(
        label,
        result.metric,
        keep,
        result.search.keep_fraction,
        result.search.feasible,
        result.after.params,
        result.search.component_coefficients,
        kept,
        result.objective_after,
        result.search.best_seen,
        judge,
        judge / base,
        policy,
        result.search.evaluations,
        result.search.seconds,
        result.search.metric_trials,
    )
    return row, small


@dataclass(frozen=True)
class MethodCell:
    """One bench cell's work, run wherever the executor puts it: a method's budgets as one continuation, judged.

    A cell (:class:`tools.scale.Cell`) is one method at one seed, its budgets in ``options["keeps"]``; this
    carries the agent, its groups, the planner and the visited states themselves (no paths), so a worker
    needs nothing but the code. The pruned agents come back with their rows.
    """

    agent: TDMPCAgent
    groups: Any  # prune.PruneGroups of ``agent``
    planner: Any  # PlannerConfig
    cfg: TdmpcBenchConfig
    base: float  # unpruned judge return
    base_params: dict[str, int]
    states: Any  # (obs, a) the unpruned planner visits

    def __call__(self, cell: Cell) -> list[tuple[TdmpcRow, torch.nn.Module]]:
        # process-wide settings do not travel with the cell: set here as run_tdmpc_bench sets them
        torch.manual_seed(cell.seed)
        torch.set_num_threads(1)
        torch.set_flush_denormal(True)
        cfg = replace(self.cfg, seed=cell.seed, budgets=tuple(cell.options["keeps"]))
        return run_method(
            self.agent, self.groups, cell.method, cfg, self.planner, self.base, self.base_params, self.states
        )


def method_cells(cfg: TdmpcBenchConfig) -> list[Cell]:
    """The bench's cells: one per method at the config's seed, the budgets (in the config's order) as one continuation."""
    return [Cell(label, max(cfg.budgets), cfg.seed, options={"keeps": tuple(cfg.budgets)}) for label in cfg.methods]


def checks(report: TdmpcReport) -> dict:
    """The issue's acceptance criterion (gd beats every uniform baseline at 25% kept) and friends, on measured rows."""
    by = {(r.method, r.keep): r for r in report.rows}
    out = {}
    for keep in sorted({r.keep for r in report.rows}, reverse=True):
        gd = by.get(("gd", keep))
        uni = [by[(m, keep)] for m in UNIFORM if (m, keep) in by]
        if gd is None or not uni:
            continue
        out[f"gd_coefficients_differ_from_uniform_{keep}"] = (
            len({round(v, 2) for v in gd.component_coefficients.values()}) > 1
        )
        out[f"gd_beats_uniform_judge_{keep}"] = all(gd.judge_return > u.judge_return for u in uni)
        out[f"gd_ge_uniform_objective_{keep}"] = all(gd.objective >= u.objective for u in uni)
        out[f"gd_under_60s_{keep}"] = gd.seconds < 60
    return out


def run_tdmpc_bench(
    cfg: TdmpcBenchConfig, out_dir: Path, console: Console, executor: Executor | None = None
) -> TdmpcReport:
    """The whole benchmark; writes exports under ``out_dir`` (the caller writes the report files).

    ``executor`` (:mod:`tools.scale`): where the cells (one per method, see :class:`MethodCell`) run (None: here);
    the report is the same either way, timings aside."""
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    loaded = load_agent(cfg.agent)
    agent, planner = loaded.agent, loaded.planner
    groups = find_groups(agent, example_inputs(agent.cfg, seed=cfg.seed))
    base_params = component_params(agent)
    console.print(f"bench_tdmpc, seed {cfg.seed}: {asdict(cfg)}")
    console.print(f"agent {loaded.path} (sha256 {loaded.sha256[:12]}), planner {planner.to_dict()}")
    console.print(f"groups: {groups.components}; protected: {list(groups.protected)}")
    base = planning_return(agent, planner, cfg.judge_episodes, 0, "gym", cfg.seed)
    objective = planning_objective(planner, cfg.search_episodes, SEARCH_SEED, cfg.seed)
    unpruned = {
        "params": sum(p.numel() for p in agent.parameters()),
        "prunable_params": groups.total_params,
        "component_params": base_params,
        "judge_return": base.mean,
        "judge_std": base.std,
        "judge_min": base.min,
        "objective": float(np.mean(objective(agent))),
        "policy_return": closed_loop_return(PolicyPath(agent), cfg.judge_episodes, 0, "gym").mean,
        "planner": planner.to_dict(),
        "sha256": loaded.sha256,
    }
    console.print(
        f"unpruned: planning return {base.mean:.1f} (gym seeds 0..{cfg.judge_episodes - 1}), policy path "
        f"{unpruned['policy_return']:.1f}, search objective {unpruned['objective']:.1f}"
    )
    report = TdmpcReport(
        asdict(cfg),
        unpruned,
        {"components": groups.components, "protected": groups.protected, "excluded": groups.excluded},
    )
    # states from their own seeds: re-fitting on the search episodes themselves flatters the search objective
    states = visited_inputs(agent, planner, cfg.state_episodes, STATE_SEED, cfg.seed)
    tolerance, widened = band_tolerance(groups, cfg.tolerance)
    report.band = {"tolerance": cfg.tolerance, "used": tolerance, "why": widened}
    if widened:
        console.print(f"note: {widened}")
    cells = method_cells(cfg)
    if executor is not None:
        console.print(f"bench cells ({len(cells)}, one per method) run on {executor.name} ({executor.workers} workers)")
    ran = run_cells(MethodCell(agent, groups, planner, cfg, base.mean, base_params, states), cells, executor)
    made = {cell.method: rows for cell, rows in zip(cells, ran)}
    pruned = {}
    for i, keep in enumerate(cfg.budgets):  # rows budget-major, as the tables read them
        for label in cfg.methods:
            row, small = made[label][i]
            pruned[(label, keep)] = small
            report.rows.append(row)
            coeffs = " ".join(f"{c}={row.component_coefficients.get(c, 0):.2f}" for c in COMPONENTS)
            console.print(
                f"keep {keep:.2f} {label:10s} {row.metric:7s} planning {row.judge_return:8.1f} ({row.judge_ratio:.3f}x) "
                f"policy {row.policy_return:8.1f} objective {row.objective:8.1f} evals {row.evaluations:3d} {row.seconds:5.1f}s  c: {coeffs}"
            )
    report.checks = checks(report)
    if cfg.export:
        report.export, report.device = export_agents(
            agent, pruned.get(("gd", cfg.export_keep)), planner, cfg, out_dir, console
        )
    report.seconds = time.perf_counter() - start
    return report


def export_agents(
    agent, gd_agent, planner, cfg: TdmpcBenchConfig, out_dir: Path, console: Console
) -> tuple[dict, dict]:
    """Policy-path bundle, planner-step ONNX/TVM and packed planner-step bundle of the unpruned and the gd agent,
    with parity and latency; returns (per agent, the packed step on the device per target)."""
    out = {}
    packed = {}
    for name, model in (("unpruned", agent), (f"gd-{cfg.export_keep}", gd_agent)):
        if model is None:
            continue
        packed[name] = export_packed_step(
            model,
            device_planner(model, planner),
            out_dir / "bundles" / f"{name}-planner-step-packed",
            cfg.targets,
            seed=cfg.seed,
        )
        console.print(f"export {name}: policy path bundle and planner step ({', '.join(cfg.targets)})")
        manifest = export_bundle(
            PolicyPath(model).eval(),
            pendulum_spec(),
            [get_target(t) for t in cfg.targets],
            out_dir / "bundles" / f"{name}-policy",
            seed=cfg.seed,
            force=True,
            tolerance=POLICY_TOLERANCE,
        )
        step = export_planner_step(
            model, planner, out_dir / "bundles" / f"{name}-planner-step", cfg.targets, seed=cfg.seed
        )
        out[name] = {
            "policy_bundle": {
                "folder": f"bundles/{name}-policy",
                "onnx_parity_max_abs_err": manifest.onnx["parity_max_abs_err"],
                "verifications": manifest.verifications(),
                "param_count": manifest.param_count,
            },
            "planner_step": {"folder": f"bundles/{name}-planner-step", **step.to_dict()},
        }
    return out, device_planner_step(agent, planner, packed, cfg, out_dir, console)


def device_planner_step(
    agent, planner, manifests: dict, cfg: TdmpcBenchConfig, out_dir: Path, console: Console
) -> dict:
    """The packed planner step timed by the firmware stub's bench mode on every target, unpruned and gd interleaved.

    The device step plans with the agent's samples (``device_planner``; an input of more than one
    frame is a multi-part request); native times are microseconds, qemu-user times only ratios.
    """
    dev = device_planner(agent, planner)
    obs = np.concatenate([pack_inputs(s) for s in step_inputs(agent, dev, cfg.device_calls, cfg.seed)])
    bundles = {name: out_dir / "bundles" / f"{name}-planner-step-packed" for name in manifests}
    base = next(iter(manifests))
    rows = {}
    for t in cfg.targets:
        console.print(f"device planner step on {t}: stub bench, {cfg.device_rounds} rounds x {cfg.device_calls} calls")
        bench = measure_stub(bundles, t, obs, cfg.device_rounds, warmup=min(50, cfg.device_calls))
        per = {}
        for name, b in bench.items():
            v = manifests[name].verifications()[t]
            per[name] = {
                "median_us": b.latency.median_us,
                "p99_us": b.latency.p99_us,
                "spread": b.latency.spread,
                "ratio_to_unpruned": b.latency.median_us / bench[base].latency.median_us,
                "per_control_step_us": b.latency.median_us * dev.iterations,
                "peak_rss_kb": b.peak_rss_kb,
                "verification": v.get("status"),
                "max_abs_err": v.get("max_abs_err"),
                "params": manifests[name].param_count,
            }
        rows[t] = {
            "runner": bench[base].runner,
            "runtime": bench[base].runtime,
            "emulated": "qemu" in bench[base].runner,
            "agents": per,
        }
    return {
        "planner": dev.to_dict(),
        "agent_planner_samples": planner.samples,
        "inputs": int(obs.shape[1]),
        "outputs": manifests[base].controller_spec.act_dim,
        "tolerance": manifests[base].verifications()[cfg.targets[0]].get("tolerance"),
        "onnx_parity_max_abs_err": {n: m.onnx["parity_max_abs_err"] for n, m in manifests.items()},
        "folders": {n: f"bundles/{n}-planner-step-packed" for n in manifests},
        "targets": rows,
    }


def device_table(device: dict) -> tuple[str, list[str], list[list[str]]]:
    """Title, header and rows of "planner step on the device": native rows in µs, qemu-user rows as ratios only."""
    d = device["planner"]
    title = (
        f"planner step on the device: packed step (in {device['inputs']} floats, out {device['outputs']}) in the firmware stub, "
        f"{d['samples']} samples (the agent plans with {device['agent_planner_samples']}; inputs over 64 floats go as multi-part requests), "
        f"elites {d['elites']}, horizon {d['horizon']}; x{d['iterations']} iterations per control step"
    )
    header = [
        "target",
        "runner",
        "agent",
        "params",
        "parity vs onnxruntime",
        "median us",
        "per control step us",
        "gd / unpruned",
    ]
    rows = []
    for t, r in device["targets"].items():
        for name, a in r["agents"].items():
            emulated = r["emulated"]
            err = a["max_abs_err"]
            rows.append(
                [
                    t,
                    "qemu-user" if emulated else "native",
                    name,
                    str(a["params"]),
                    f"{a['verification']} ({err:.1e})" if err is not None else str(a["verification"]),
                    "(emulated)" if emulated else f"{a['median_us']:.0f}",
                    "(emulated)" if emulated else f"{a['per_control_step_us']:.0f}",
                    f"{a['ratio_to_unpruned']:.2f}",
                ]
            )
    return title, header, rows


# -- output -----------------------------------------------------------------------------------------


def print_tables(console: Console, report: TdmpcReport) -> None:
    title = (
        f"TD-MPC planning return, gymnasium Pendulum-v1 seeds 0..{report.config['judge_episodes'] - 1}, "
        f"by method and parameters kept; unpruned {report.unpruned['judge_return']:.1f}"
    )
    console.print(
        budget_table(
            title,
            report.rows,
            lambda r: f"{r.judge_return:.1f} ({r.judge_ratio:.2f}x, {r.evaluations} ev, {r.seconds:.0f}s)",
        )
    )
    tc = Table(title="coefficients per component (fraction of hidden units removed) chosen by grid and gd")
    for col in ("keep", "method", *COMPONENTS, "planning return"):
        tc.add_column(col, justify="right")
    for r in report.rows:
        if r.method in ("grid", "gd"):
            tc.add_row(
                f"{r.keep:.2f}",
                r.method,
                *(f"{r.component_coefficients.get(c, 0):.2f}" for c in COMPONENTS),
                f"{r.judge_return:.1f}",
            )
    console.print(tc)
    if report.export:
        te = Table(title="export: planner step (one MPPI iteration), batch 1, median microseconds")
        for col in (
            "agent",
            "params",
            "ONNX vs torch",
            "TVM vs ONNX",
            "torch",
            "onnxruntime",
            "tvm-x86_64",
            "planning per control step (tvm)",
        ):
            te.add_column(col, justify="right")
        for name, e in report.export.items():
            s = e["planner_step"]
            tvm = s["tvm"].get("x86_64", {})
            te.add_row(
                name,
                str(s["params"]),
                f"{s['ort_max_abs_err']:.1e}",
                f"{tvm.get('max_abs_err_vs_onnxruntime') or float('nan'):.1e}",
                f"{s['latency_us'].get('torch', float('nan')):.0f}",
                f"{s['latency_us'].get('onnxruntime', float('nan')):.0f}",
                f"{s['latency_us'].get('tvm-x86_64', float('nan')):.0f}",
                f"{s['planning_us_per_control_step'].get('tvm-x86_64', float('nan')):.0f}",
            )
        console.print(te)
    if report.device:
        title, header, rows = device_table(report.device)
        td = Table(title=title)
        for col in header:
            td.add_column(col, justify="right")
        for row in rows:
            td.add_row(*row)
        console.print(td)
    console.print(checks_table(report.checks))


def write_markdown(report: TdmpcReport, path: Path) -> None:
    """The report as Markdown: returns by method and budget, component coefficients, export, checks."""
    budgets = sorted({r.keep for r in report.rows}, reverse=True)
    u = report.unpruned
    lines = [
        "# TD-MPC agent: component-aware pruning, judged with planning",
        "",
        f"Unpruned: {u['params']} parameters, planning return {u['judge_return']:.1f} (std {u['judge_std']:.1f}) on gymnasium "
        f"Pendulum-v1 seeds 0..{report.config['judge_episodes'] - 1}; policy path alone {u['policy_return']:.1f}. "
        f"Planner: {u['planner']}.",
        "",
        f"Search objective: mean planning return on the fast plant, {report.config['search_episodes']} episodes (seeds "
        f"{SEARCH_SEED}..), seed {report.config['seed']}. Grid resolution {report.config['grid_resolution']}.",
        "",
        "## Planning return by method and fraction of prunable parameters kept",
        "",
        "| method | " + " | ".join(f"{b:.0%} kept" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    for label in dict.fromkeys(r.method for r in report.rows):
        cells = []
        for b in budgets:
            r = next((r for r in report.rows if r.method == label and r.keep == b), None)
            cells.append(
                ""
                if r is None
                else f"{r.judge_return:.1f} ({r.judge_ratio:.2f}x; policy {r.policy_return:.1f}; {r.evaluations} ev, {r.seconds:.0f} s)"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Coefficients per component (fraction of hidden units removed; parameters kept in brackets)",
        "",
        "| keep | method | " + " | ".join(COMPONENTS) + " | planning return |",
        "|---|---|" + "---:|" * (len(COMPONENTS) + 1),
    ]
    for r in report.rows:
        lines.append(
            f"| {r.keep:.2f} | {r.method} | "
            + " | ".join(
                f"{r.component_coefficients.get(c, 0):.2f} ({r.component_params_kept[c]:.0%})" for c in COMPONENTS
            )
            + f" | {r.judge_return:.1f} |"
        )
    if report.export:
        lines += [
            "",
            "## Export",
            "",
            "| agent | policy bundle verified | planner step ONNX vs torch | TVM vs ONNX | torch us | onnxruntime us | tvm-x86_64 us | planning per control step, tvm us |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, e in report.export.items():
            s, b = e["planner_step"], e["policy_bundle"]
            tvm = s["tvm"].get("x86_64", {})
            ver = ", ".join(f"{t}: {v.get('status')}" for t, v in b["verifications"].items())
            lines.append(
                f"| {name} | {ver} | {s['ort_max_abs_err']:.1e} | {tvm.get('max_abs_err_vs_onnxruntime') or float('nan'):.1e} | "
                f"{s['latency_us'].get('torch', float('nan')):.0f} | {s['latency_us'].get('onnxruntime', float('nan')):.0f} | "
                f"{s['latency_us'].get('tvm-x86_64', float('nan')):.0f} | {s['planning_us_per_control_step'].get('tvm-x86_64', float('nan')):.0f} |"
            )
    if report.device:
        title, header, rows = device_table(report.device)
        lines += [
            "",
            "## Planner step on the device",
            "",
            title + ". Native rows in microseconds; qemu-user rows are emulated, "
            "so only the ratio gd / unpruned is kept.",
            "",
            "| " + " | ".join(header) + " |",
            "|---|---|---|" + "---:|" * (len(header) - 3),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "## Checks", ""] + [f"- {k}: {'yes' if v else 'NO'}" for k, v in report.checks.items()]
    path.write_text("\n".join(lines) + "\n")


def plot(report: TdmpcReport, path: Path) -> None:
    """Planning return against parameters kept per method, and gd's coefficients per component."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label in dict.fromkeys(r.method for r in report.rows):
        rows = sorted((r for r in report.rows if r.method == label), key=lambda r: r.keep_fraction)
        ax.plot([100 * r.keep_fraction for r in rows], [r.judge_return for r in rows], marker="o", label=label)
    ax.axhline(report.unpruned["judge_return"], color="k", ls="--", lw=1, label="unpruned")
    ax.set_xscale("log")
    ticks = [10, 25, 50, 100]
    ax.set_xticks(ticks, [f"{t}%" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("prunable parameters kept")
    ax.set_ylabel("planning return, gymnasium Pendulum-v1")
    ax.set_title("TD-MPC agent: pruning methods")
    ax.legend(fontsize=8)
    gd = sorted((r for r in report.rows if r.method == "gd"), key=lambda r: -r.keep)
    width = 0.8 / max(1, len(gd))
    for i, r in enumerate(gd):
        bx.bar(
            np.arange(len(COMPONENTS)) + i * width,
            [r.component_coefficients.get(c, 0) for c in COMPONENTS],
            width,
            label=f"gd, {r.keep:.0%} kept",
        )
    bx.set_xticks(np.arange(len(COMPONENTS)) + width * (len(gd) - 1) / 2, COMPONENTS)
    bx.set_ylabel("coefficient (fraction of hidden units removed)")
    bx.set_title("what gradient descent pruned per component")
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def json_safe(value):
    """The report as strict JSON: non-finite numbers (a metric not tried, nothing feasible) become null."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_outputs(report: TdmpcReport, out_dir: Path) -> dict[str, str]:
    """report.json, report.md and pruning.png into ``out_dir``; returns their names."""
    files = {"json": "report.json", "markdown": "report.md", "plot": "pruning.png"}
    (out_dir / files["json"]).write_text(json.dumps(json_safe(report.to_dict()), indent=2, allow_nan=False) + "\n")
    write_markdown(report, out_dir / files["markdown"])
    plot(report, out_dir / files["plot"])
    return files


QUICK = {
    "search_episodes": 2,
    "max_evaluations": 4,
    "judge_episodes": 3,
    "state_episodes": 2,
    "device_rounds": 1,
    "device_calls": 20,
}
"""the sizes of a short run (tests): fields of TdmpcBenchConfig"""


def run_into(
    cfg: TdmpcBenchConfig, out: Path, force: bool, console: Console, executor: Executor | None = None
) -> tuple[TdmpcReport, dict[str, str]]:
    """Run the bench (its cells on ``executor``, None: here) into a temp folder beside ``out`` and rename it into
    place (nothing half-written on failure)."""
    tmp = temp_dir_for(out, force)
    try:
        tmp.chmod(0o755)
        report = run_tdmpc_bench(cfg, tmp, console, executor)
        files = write_outputs(report, tmp)
        move_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return report, files


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m tools.usecases.tdmpc.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out", type=Path, default=Path("bench_tdmpc"), help="folder for report.json, report.md, pruning.png, bundles/"
    )
    p.add_argument("--agent", default=TdmpcBenchConfig.agent)
    p.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS))
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(METHODS))
    p.add_argument("--search-episodes", type=int, default=TdmpcBenchConfig.search_episodes)
    p.add_argument("--judge-episodes", type=int, default=TdmpcBenchConfig.judge_episodes)
    p.add_argument("--max-evaluations", type=int, default=TdmpcBenchConfig.max_evaluations)
    p.add_argument("--grid-resolution", type=float, default=TdmpcBenchConfig.grid_resolution)
    p.add_argument("--seed", type=int, default=TdmpcBenchConfig.seed)
    p.add_argument("--no-export", action="store_true", help="skip the policy-path and planner-step exports")
    args = p.parse_args(argv)
    cfg = TdmpcBenchConfig(
        agent=args.agent,
        budgets=tuple(args.budgets),
        methods=tuple(args.methods),
        search_episodes=args.search_episodes,
        judge_episodes=args.judge_episodes,
        max_evaluations=args.max_evaluations,
        grid_resolution=args.grid_resolution,
        seed=args.seed,
        export=not args.no_export,
    )
    console = Console(width=160)
    args.out.mkdir(parents=True, exist_ok=True)
    report = run_tdmpc_bench(cfg, args.out, console)
    write_outputs(report, args.out)
    print_tables(console, report)
    console.print(f"wrote {args.out}/report.json, report.md, pruning.png in {report.seconds:.0f}s")


if __name__ == "__main__":
    main()
