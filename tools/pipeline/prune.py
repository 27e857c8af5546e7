"""Prune a controller to a parameter budget, the coefficients searched on the closed loop: :func:`prune_controller`
(several budgets as one continuation: :func:`prune_controller_budgets`)."""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from prune import (
    STABILITY_TOLERANCE,
    Groups,
    Int8Linear,
    PruneError,
    PruneResult,
    bytes_footprint,
    find_groups,
    keep_fraction,
    prune,
    prune_budgets,
    save_pruned,
    sidecar_paths,
)
from prune import quantize as int8_weights  # aliased: 'quantize' is the precision option's name here
from tools.controllers.native import Controller, mlp_architecture, save_controller
from tools.pipeline.choices import DEFAULT_METHOD, DEFAULT_METRIC, METHOD_PLAN, METHODS
from tools.pipeline.integer_objective import INTEGER, IntegerObjective, check_integer, integer_report
from tools.plant.episodes import SEARCH_EPISODES, SEARCH_SEED
from tools.plant.evaluate import closed_loop_return
from tools.plant.objectives import pendulum_stability, radius_check, search_callables
from tools.plant.pendulum import ENV_ID
from tools.plant.robust import Robustness
from tools.plant.scenarios import plant_label
from tools.plant.stopping import EarlyStop, choose, needs_scores
from tools.scale import Executor, batched


@dataclass
class PrunedController:
    """The outcome of :func:`prune_controller`: the smaller module, prune's result, and the summary ``--json`` prints."""

    module: torch.nn.Module
    result: PruneResult
    summary: dict  # JSON-ready: prune's result, the method, stability before/after, returns, files written
    warnings: list[str]  # what the caller should show the user (found while tracing the groups)

    @property
    def feasible(self) -> bool:
        """Whether the returned model (fine-tuned or not) meets every constraint (budget, floor, stability)."""
        return bool(self.result.feasible)


def metric_for(method: str, metric: str | None) -> str:
    """The importance metric a method searches with; a metric a uniform method does not use is an error."""
    if method not in METHODS:
        raise PruneError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    fixed_metric = METHOD_PLAN[method][1]
    if fixed_metric and metric and metric != fixed_metric:
        raise PruneError(
            f"--method {method} ranks units by {fixed_metric}; drop --metric {metric} or use gd/grid/global"
        )
    return fixed_metric or metric or DEFAULT_METRIC


def parse_components(specs: list[str]) -> dict[str, list[str]]:
    """NAME=PATTERN[,PATTERN] strings -> {name: patterns}, as find_groups takes components."""
    components = {}
    for spec in specs:
        name, sep, patterns = spec.partition("=")
        if not sep or not name or not patterns:
            raise PruneError(f"--component {spec!r}: expected NAME=PATTERN[,PATTERN]")
        components[name] = patterns.split(",")
    return components


def _write(
    out: Path, small: torch.nn.Module, controller: Controller, example: torch.Tensor, widths: dict, summary: dict
) -> dict:
    """Controller file plus sidecars, written in a temp dir and renamed into place together.

    The native controller file is written for the native MLP (an ``nn.Sequential``); a controller read
    from another format is a graph, saved as the ``.pt2`` program (plus state dict and widths) only, which
    ``--controller`` reads back (its env from the widths file).
    """
    out = Path(out)
    if out.is_dir():
        raise PruneError(f"--out {out}: is a directory, expected a file path")
    out.parent.mkdir(parents=True, exist_ok=True)
    native = isinstance(small, torch.nn.Sequential)
    tmp = Path(tempfile.mkdtemp(prefix=".prune-out-", dir=out.parent))
    try:
        tmp_out = tmp / out.name
        if native:
            activation = controller.architecture.get("activation", "")
            save_controller(tmp_out, small, controller.spec, mlp_architecture(small, activation))
        side = save_pruned(small, example, tmp_out, widths, extra={"summary": summary})
        final = sidecar_paths(out)
        for src, dst in (
            (side.program, final.program),
            (side.state_dict, final.state_dict),
            (side.widths, final.widths),
        ):
            Path(src).replace(dst)
        if native:
            tmp_out.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"controller": str(out) if native else final.program, **final.to_dict()}


def save_pruned_controller(pruned: PrunedController, controller: Controller, out: Path) -> dict:
    """Write one pruned model made from ``controller`` to ``out`` (and its sidecars, atomically); its summary's ``files``.

    For a model made elsewhere (a bench cell on a Ray worker) and written here, as ``prune_controller`` writes it.
    """
    example = torch.as_tensor(controller.spec.sample_observations(8, pruned.summary["seed"]))
    pruned.summary["files"] = _write(out, pruned.module, controller, example, pruned.result.widths, pruned.summary)
    return pruned.summary["files"]


def unit_share(groups: Groups) -> tuple[float, str]:
    """The largest fraction of the prunable parameters one unit carries (at full width), and its group.

    It is the coarsest step a search can take in the kept fraction: a budget band narrower than this
    may hold no model at all on a small network (a 3-32-32-1 MLP: one first-layer unit is 3.0%).
    """
    full = {g.name: g.size for g in groups.groups}
    shares = {g.name: 1.0 - keep_fraction(groups, {**full, g.name: g.size - 1}) for g in groups.groups if g.size > 1}
    if not shares:
        return 0.0, ""
    name = max(shares, key=lambda k: shares[k])
    return shares[name], name


def band_tolerance(groups: Groups, tolerance: float) -> tuple[float, str | None]:
    """The bench's budget band: ``tolerance``, widened to one unit's share where a unit is coarser (and why).

    A fixed 1% band cannot be met on a tiny model whose single unit is 3% of its parameters, and the
    bench would report "budget missed" for a budget no model can meet; widened, it benchmarks the
    nearest model there is and says so. On the bundled 3-256-256-1 controller one unit is 0.39%:
    nothing changes there.
    """
    share, group = unit_share(groups)
    if share <= tolerance:
        return tolerance, None
    return share, (
        f"budget band widened from {tolerance:g} to {share:.4f} of the prunable parameters: one unit of group "
        f"{group} is {share:.2%} of them, so a narrower band may hold no model of this size"
    )


def budget_path(out: Path, keep: float) -> Path:
    """Where one budget of a multi-budget run is written: ``<stem>.keep<KEEP><suffix>`` beside ``out``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.keep{keep:g}{out.suffix}")


def search_early_stop(
    env_id: str,
    model: torch.nn.Module,
    objective: Callable,
    ceiling: float | None,
    stop_within: float | None,
    auto: bool,
) -> tuple[EarlyStop, Callable]:
    """The search's early stop for env_id, and the objective to search with.

    The noise margin needs the unpruned controller's per-episode search returns: measured once here,
    and the objective answers prune's own first call (the unpruned model) from them, so the margin costs
    no extra evaluation.
    """
    if not needs_scores(env_id, ceiling, stop_within, auto):
        return choose(env_id, ceiling, stop_within, auto), objective
    with torch.no_grad():
        scores = objective(model)

    def searched(candidate: torch.nn.Module):
        return scores if candidate is model else objective(candidate)

    if hasattr(objective, "batch"):
        searched.batch = objective.batch  # type: ignore[attr-defined]  # prune's batch contract, passed through
    return choose(env_id, ceiling, stop_within, auto, list(map(float, scores))), searched


def prune_controller(
    controller: Controller,
    keep: float = 0.25,
    method: str = DEFAULT_METHOD,
    metric: str | None = None,
    *,
    seed: int = 0,
    out: Path | None = None,
    components: dict[str, list[str]] | None = None,
    reconstruct: bool = True,
    finetune: bool = False,
    tolerance: float = 0.01,
    floor: float | None = None,
    stability: bool = True,
    resolution: float = 0.1,
    max_evaluations: int = 150,
    search_episodes: int = SEARCH_EPISODES,
    judge_episodes: int = 100,
    console: Console | None = None,
    stability_mode: str = "strict",
    stability_tolerance: float = STABILITY_TOLERANCE,
    write_infeasible: bool = True,
    executor: Executor | None = None,
    ceiling: float | None = None,
    stop_within: float | None = None,
    auto_stop: bool = True,
    robustness: Robustness | None = None,
    quantize: str = "off",
    flash_budget: int | None = None,
) -> PrunedController:
    """Prune ``controller`` to keep a fraction of its prunable parameters; write it (and sidecars) to ``out`` if given.

    The objective is the closed-loop return on the batched plant (Pendulum-v1) or a gymnasium vector env;
    for the pendulum the closed loop must stay stable at upright unless ``stability`` is False
    (judged under ``stability_mode``: strict, relative or off, see :mod:`prune.constraints`).
    ``write_infeasible`` False leaves ``out`` unwritten when the returned model misses a constraint.
    ``executor`` (:mod:`tools.scale`): where the search's batches of candidates are evaluated (None: here).
    ``ceiling`` / ``stop_within`` end the search early (:func:`prune.prune`); when neither is given and
    ``auto_stop``, :func:`tools.plant.stopping.choose` picks them for the env (none for Pendulum-v1).
    ``quantize`` (off | int8 | auto) and ``flash_budget`` (weight bytes) make the weights' precision part
    of the search (:mod:`prune.precision`); ``keep`` None with a flash budget: a budget in bytes only.
    The summary's ``quantization`` says which components went to int8 and why (:func:`quantization_summary`).
    ``quantize`` integer: the float coefficients are searched on each candidate's full-integer twin, as
    ``export --targets cortex-m3`` builds it (:mod:`tools.pipeline.integer_objective`); the summary's
    ``integer_twin`` holds its returns (not with ``flash_budget`` or ``robustness``).
    ``robustness`` (None: the nominal plant): the search maximises its aggregate over its scenarios, and
    the summary's ``robust`` holds nominal and robust figures before and after on the judge's seeds.
    """
    return prune_controller_budgets(
        controller,
        [keep],
        method,
        metric,
        seed=seed,
        out=out,
        components=components,
        reconstruct=reconstruct,
        finetune=finetune,
        tolerance=tolerance,
        floor=floor,
        stability=stability,
        resolution=resolution,
        max_evaluations=max_evaluations,
        search_episodes=search_episodes,
        judge_episodes=judge_episodes,
        console=console,
        stability_mode=stability_mode,
        stability_tolerance=stability_tolerance,
        write_infeasible=write_infeasible,
        executor=executor,
        ceiling=ceiling,
        stop_within=stop_within,
        auto_stop=auto_stop,
        robustness=robustness,
        quantize=quantize,
        flash_budget=flash_budget,
    )[0]


def prune_controller_budgets(
    controller: Controller,
    keeps: Sequence[float | None],
    method: str = DEFAULT_METHOD,
    metric: str | None = None,
    *,
    seed: int = 0,
    out: Path | None = None,
    components: dict[str, list[str]] | None = None,
    reconstruct: bool = True,
    finetune: bool = False,
    tolerance: float = 0.01,
    floor: float | None = None,
    stability: bool = True,
    resolution: float = 0.1,
    max_evaluations: int = 150,
    search_episodes: int = SEARCH_EPISODES,
    judge_episodes: int = 100,
    console: Console | None = None,
    stability_mode: str = "strict",
    stability_tolerance: float = STABILITY_TOLERANCE,
    write_infeasible: bool = True,
    outs: Sequence[Path] | None = None,
    executor: Executor | None = None,
    ceiling: float | None = None,
    stop_within: float | None = None,
    auto_stop: bool = True,
    robustness: Robustness | None = None,
    quantize: str = "off",
    flash_budget: int | None = None,
) -> list[PrunedController]:
    """:func:`prune_controller` at several budgets solved as one continuation (:func:`prune.prune_budgets`).

    One budget is exactly :func:`prune_controller`. With several, each is written to
    :func:`budget_path` (``<stem>.keep<KEEP><suffix>``) of ``out``, or to ``outs`` (one path per budget, in the
    order of ``keeps``) if given; the results follow the order of ``keeps``.
    """
    console = console or Console(quiet=True)
    check_integer(quantize, flash_budget, robustness is not None)
    torch.manual_seed(seed)
    # The objective runs a small MLP on 64 observations per step: a second thread only adds
    # synchronisation (4x slower on this loaded 2-core machine), so the search runs on one.
    torch.set_num_threads(1)
    metric = metric_for(method, metric)
    search_method = METHOD_PLAN[method][0]
    model = controller.module.eval()
    keep_text = keeps[0] if len(keeps) == 1 else ",".join(f"{k:g}" for k in keeps if k is not None)
    console.print(
        f"controller {controller.path} (sha256 {controller.sha256[:12]}), seed {seed}, "
        f"method {method}, metric {metric}, keep {keep_text}"
        + (f", quantize {quantize}" if quantize != "off" else "")
        + (f", flash budget {flash_budget:,} B" if flash_budget is not None else "")
    )
    example = torch.as_tensor(controller.spec.sample_observations(8, seed))
    with torch.no_grad():
        groups = find_groups(model, example, components=components or {})
    for w in groups.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    env_id = controller.spec.env_id
    objective, visit_for = search_callables(env_id, search_episodes, SEARCH_SEED)
    if robustness is not None:  # the aggregate over the scenarios replaces the nominal return (same seeds)
        objective = robustness.objective(search_episodes, SEARCH_SEED, env_id)
        console.print(f"objective: {robustness.aggregate} over scenarios {', '.join(robustness.scenarios.names())}")
    integer = None
    if quantize == INTEGER:  # the full-integer twin's return replaces the float model's (same search seeds)
        integer = IntegerObjective(env_id, search_episodes, SEARCH_SEED)
        objective = integer
        first = integer.twin(model)  # fails here, before the search, on a model with no integer form
        console.print(
            f"objective: the full-integer twin's return ({integer.to_dict()['target']}: calibrated on "
            f"{integer.calibration_episodes} episodes of each candidate, seeds {integer.calibration_seed}..; "
            f"search seeds {SEARCH_SEED}..): unpruned {first.returns.mean():.2f}, {first.seconds:.2f} s per evaluation"
        )
    objective = objective if executor is None else batched(objective, executor)  # same scores, batches fanned out
    pendulum = env_id == ENV_ID  # the closed-loop linearisation exists for the pendulum plant only
    before = pendulum_stability(model) if pendulum else None
    check = None if not stability or not pendulum else radius_check
    if not pendulum:
        console.print(f"note: {env_id} is searched on a gymnasium vector env; no stability constraint (pendulum only)")
    if check is not None and before is not None and not before.stable and stability_mode == "strict":
        console.print(
            f"[yellow]warning:[/] the unpruned controller is not stable at upright (spectral radius {before.radius:.4f}); "
            "the stability constraint is off"
        )
        check = None
    states = visit_for(search_episodes, SEARCH_SEED)(model)  # data-aware metrics and the least-squares re-fit
    stop, objective = search_early_stop(env_id, model, objective, ceiling, stop_within, auto_stop)
    if stop.ceiling is not None or stop.stop_within is not None:
        console.print(f"early stop: {stop.why}")
    options = dict(
        method=search_method,
        metric=metric,
        states=states,
        seed=seed,
        tolerance=tolerance,
        floor=floor,
        radius_check=check,
        resolution=resolution,
        max_evaluations=max_evaluations,
        reconstruct=reconstruct,
        finetune=visit_for(seed=3000) if finetune else None,
        progress=True,
        stability=stability_mode,
        stability_tolerance=stability_tolerance,
        ceiling=stop.ceiling,
        stop_within=stop.stop_within,
        precision="off" if integer is not None else quantize,  # integer: float coefficients, the twin judged
        flash_budget=flash_budget,
    )
    if len(keeps) == 1:
        results = [prune(model, groups, keeps[0], objective, **options)]
    else:
        results = prune_budgets(model, groups, [float(k) for k in keeps if k is not None], objective, **options)
    return_before = closed_loop_return(model, judge_episodes, 0, "gym", env_id).mean if judge_episodes else None
    robust_before = robustness.judge(model, judge_episodes, 0, env_id) if robustness and judge_episodes else None
    pruned: list[PrunedController] = []
    for keep, result in zip(keeps, results):
        after = pendulum_stability(result.model) if pendulum else None
        summary = {
            "method": method,
            **result.to_dict(),
            "controller": str(controller.path),
            "sha256": controller.sha256,
            "stability_constraint": check is not None,
            "env_id": env_id,
            "failed_constraints": [name for name, c in result.constraints.items() if not c.ok],
            "early_stop": stop.to_dict(),
        }
        if integer is not None:  # what the search maximised: the integer twin's return, per episode
            summary["quantize"] = INTEGER
            summary["integer_twin"] = integer_report(integer, model, result.model, judge_episodes)
            console.print(
                f"integer twin: search objective {summary['integer_twin']['objective_after']:.2f} "
                f"({integer.builds} builds, {integer.seconds_per_build or 0:.2f} s each, {integer.hits} cache hits)"
            )
        if result.precision_report is not None:
            summary["quantization"] = quantization_summary(result)
            summary["budget_in_bytes"] = keep is None  # keep then is the share of the prunable bytes
        if robustness is not None:
            summary["robust"] = {"objective": robustness.to_dict()}
            if robust_before is not None:
                summary["robust"].update(
                    before=robust_before, after=robustness.judge(result.model, judge_episodes, 0, env_id)
                )
        for key in (
            "obs_norm",
            "notes",
        ):  # a foreign controller: which statistics it runs with (None: raw), what was assumed
            if key in controller.architecture:
                summary[key] = controller.architecture[key]
        if before is not None and after is not None:
            summary.update(stability_before=before.to_dict(), stability_after=after.to_dict())
        if judge_episodes:
            summary["return_before"] = return_before
            summary["return_after"] = closed_loop_return(result.model, judge_episodes, 0, "gym", env_id).mean
        target = (
            outs[len(pruned)]
            if outs is not None
            else out
            if out is None or len(keeps) == 1 or keep is None
            else budget_path(out, keep)
        )
        if target is not None and (write_infeasible or result.feasible):
            summary["files"] = _write(target, result.model, controller, example, result.widths, summary)
        pruned.append(PrunedController(result.model, result, summary, list(groups.warnings)))
    return pruned


def int8_controller(controller: Controller) -> Controller:
    """``controller`` with every Linear's weights int8 (weight-only, :func:`prune.quantize`), no search: what
    ``prune --quantize int8`` deploys, for a controller that is not pruned. Its architecture records ``int8``."""
    example = torch.as_tensor(controller.spec.sample_observations(8, 0))
    with torch.no_grad():
        groups = find_groups(controller.module.eval(), example)
    module = int8_weights(controller.module, groups=groups).eval()
    quantized = sum(isinstance(m, Int8Linear) for m in module.modules())
    if not quantized:
        raise PruneError(f"{controller.path}: no Linear layer to quantize")
    arch = dict(controller.architecture, int8_weights=quantized, weight_bytes=bytes_footprint(module))
    if isinstance(module, torch.nn.Sequential):
        arch.update(mlp_architecture(module, controller.architecture.get("activation", "")))
    return dataclasses.replace(controller, module=module, architecture=arch)


def quantization_summary(result: PruneResult) -> dict:
    """Which components went to int8 and why, for ``--json`` and the table (from prune's :class:`PrecisionReport`).

    ``components`` lists every component with its precision, the objective it alone lost in int8 on the
    unpruned model, the bytes its int8 form saves and the loss per byte saved (``--quantize auto`` ranks by
    it), and ``why`` in words; ``assignments`` every assignment searched (auto tries the prefixes of the
    ranking) with its objective, feasibility and bytes; ``fits`` whether the weights fit ``flash_budget``.
    """
    report = result.precision_report
    assert report is not None  # only called when a precision or a flash budget was asked
    ranked = {r.component: (i, r) for i, r in enumerate(report.ranking)}
    chosen = report.chosen
    searched = [t for t in report.trials if not t.skipped]
    best = next((t for t in searched if t.precision == chosen), None)
    components = []
    for comp, prec in chosen.items():
        row: dict = {"component": comp, "precision": prec}
        if comp in ranked:
            i, r = ranked[comp]
            finite = math.isfinite(r.loss)  # a component whose int8 form breaks the loop lost "everything": null
            row.update(
                rank=i + 1,
                loss=r.loss if finite else None,
                bytes_saved=r.bytes_saved,
                loss_per_byte=r.cost if finite else None,
            )
        if report.mode == "int8":
            why = "--quantize int8: every component's weights are int8"
        elif report.mode == "off":
            why = "--quantize off: float weights (the flash budget is met by pruning alone)"
        elif comp not in ranked:
            why = "kept float: its int8 form saves no bytes (one float scale per output costs what the codes save)"
        else:
            i, r = ranked[comp]
            cost = f"rank {i + 1} of {len(ranked)} by objective lost per byte saved ({r.loss:.4g} over {r.bytes_saved:,} B = {r.cost:.3g}/B)"
            score = (
                f"; the chosen assignment scored {best.objective:.6g}" if best and best.objective is not None else ""
            )
            why = (
                f"int8: {cost}{score}, the best feasible of the {len(searched)} assignments searched"
                if prec == "int8"
                else f"kept float: {cost}; {_best_with(comp, searched, best)}"
            )
        row["why"] = why
        components.append(row)
    return {
        "mode": report.mode,
        "flash_budget": report.flash_budget,
        "weight_bytes": report.weight_bytes,
        "fits": report.flash_budget is None or report.weight_bytes <= report.flash_budget,
        "int8": [c for c, p in chosen.items() if p == "int8"],
        "float": [c for c, p in chosen.items() if p != "int8"],
        "components": components,
        "assignments": [
            {
                "int8": [c for c, p in t.precision.items() if p == "int8"],
                "keep": t.keep,
                "objective": t.objective,
                "feasible": t.feasible,
                "weight_bytes": t.weight_bytes,
                "evaluations": t.evaluations,
                "chosen": t.precision == chosen and not t.skipped,
                **({"skipped": t.skipped} if t.skipped else {}),
            }
            for t in report.trials
        ],
    }


def _best_with(comp: str, searched: list, chosen) -> str:
    """Why a component stayed float under auto: the best assignment that quantized it, against the chosen one."""
    tried = [t for t in searched if t.precision.get(comp) == "int8" and t.objective is not None]
    if not tried:
        return "no assignment quantizing it was searched (an earlier one already fit the budget unpruned)"
    alt = max(tried, key=lambda t: (t.feasible, t.objective))
    ref = f" against the chosen {chosen.objective:.6g}" if chosen is not None and chosen.objective is not None else ""
    return f"the best assignment quantizing it scored {alt.objective:.6g}{'' if alt.feasible else ' (infeasible)'}{ref}"


def print_prune_table(console: Console, s: dict, search_episodes: int, judge_episodes: int) -> None:
    """The before/after table of a prune summary (:attr:`PrunedController.summary`)."""
    table = Table(
        title=f"prune {s['method']} ({s['metric']}), keep {s['keep']} of prunable "
        + ("bytes" if s.get("budget_in_bytes") else "parameters")
        + f", seed {s['seed']}"
    )
    for col in ("", "before", "after"):
        table.add_column(col, justify="right")
    table.add_row("parameters", f"{s['params_before']:,}", f"{s['params_after']:,}")
    table.add_row(
        "prunable parameters",
        f"{s['prunable_params_before']:,}",
        f"{s['prunable_params_after']:,} ({s['keep_fraction']:.1%})",
    )
    table.add_row("bytes (float32)", f"{s['bytes_before']:,}", f"{s['bytes_after']:,}")
    q = s.get("quantization")
    if q:
        budget = (
            f" (flash budget {q['flash_budget']:,}: {'fits' if q['fits'] else 'does not fit'})"
            if q["flash_budget"]
            else ""
        )
        table.add_row(f"weight bytes at precision, --quantize {q['mode']}", "", f"{q['weight_bytes']:,}{budget}")
        for c in q["components"]:
            table.add_row(f"  {c['component']}", "", f"{c['precision']}: {c['why']}")
    table.add_row("multiply-adds / step", f"{s['macs_before']:,}", f"{s['macs_after']:,}")
    robust = s.get("robust")
    searched = "" if robust is None else f"{robust['objective']['aggregate']} over {robust['objective']['set']}, "
    twin = s.get("integer_twin")
    if twin is not None:  # --quantize integer: the objective rows are the integer twin's
        searched = f"{twin['target']} integer twin, "
        table.add_row(
            "integer tables (bytes)", f"{twin['int_weight_bytes_before']:,}", f"{twin['int_weight_bytes_after']:,}"
        )
    table.add_row(
        f"objective ({searched}{plant_label(s['env_id'])}, {search_episodes} ep.)",
        f"{s['objective_before']:.1f}",
        f"{s['objective_after']:.1f}",
    )
    if "return_before" in s:
        table.add_row(
            f"return (gymnasium {s['env_id']}, seeds 0..{judge_episodes - 1})",
            f"{s['return_before']:.1f}",
            f"{s['return_after']:.1f}",
        )
    if twin is not None and "return_before" in twin:
        table.add_row(
            f"integer twin return (gymnasium {s['env_id']}, seeds 0..{judge_episodes - 1})",
            f"{twin['return_before']:.1f}",
            f"{twin['return_after']:.1f}",
        )
    if robust is not None and "before" in robust:
        b, a = robust["before"], robust["after"]
        seeds = f"seeds {b['seeds'][0]}..{b['seeds'][1]}"
        for name in b["mean"]:
            table.add_row(
                f"return under {name} ({plant_label(s['env_id'])}, {seeds})",
                f"{b['mean'][name]:.1f} ({b['balanced_share'][name]:.0%})",
                f"{a['mean'][name]:.1f} ({a['balanced_share'][name]:.0%})",
            )
        table.add_row(
            f"robust: {b['aggregate']} over {b['set']} (balanced share in brackets)",
            f"{b['value']:.1f}",
            f"{a['value']:.1f}",
        )
    if "stability_before" in s:
        table.add_row(
            "stability margin (1 - radius)",
            f"{s['stability_before']['margin']:.4f}",
            f"{s['stability_after']['margin']:.4f}",
        )
    widths = ", ".join(f"{k}:{v['out']}" for k, v in s["widths"].items() if "out" in v)
    table.add_row("widths (out)", "", widths)
    table.add_row("coefficients", "", ", ".join(f"{k}:{v:.3f}" for k, v in s["coefficients"].items()))
    if s.get("metric_trials"):
        table.add_row(
            "metric (auto: uniform point)",
            "",
            ", ".join(f"{k}:{v:.1f}" for k, v in s["metric_trials"].items()) + f" -> {s['metric']}",
        )
    if s.get("finetune"):
        ft = s["finetune"]
        table.add_row(
            "fine-tune objective",
            f"{ft['objective_before']:.1f}",
            f"{ft['objective_after']:.1f}" + ("" if ft["kept"] else " (worse: searched weights kept)"),
        )
    table.add_row("evaluations / seconds", "", f"{s['evaluations']} / {s['seconds']:.1f}")
    if s.get("stopped"):
        table.add_row("search stopped", "", stop_text(s))
    console.print(table)


def stop_text(s: dict) -> str:
    """Why the search of a prune summary ended, in words."""
    stop = s.get("early_stop") or {}
    reason = s.get("stopped")
    if reason == "ceiling":
        return f"objective reached the ceiling {stop.get('ceiling'):g} ({stop.get('why', '')}): it cannot improve"
    if reason == "within_noise":
        return (
            f"objective within {stop.get('stop_within'):.4g} of the unpruned one ({stop.get('why', '')}): "
            "no better candidate could be told apart on the search episodes"
        )
    if reason == "max_evaluations":
        return f"evaluation budget spent ({s.get('evaluations')} evaluations)"
    return "the method ran to its end"
