"""The two-line API: ``groups = find_groups(model, x); result = prune(model, groups, keep=0.25, objective=f)``."""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from prune.budget import ByteCounter, Footprint, check_keep, footprint
from prune.constraints import STABILITY_TOLERANCE, Constraint, failed, why
from prune.errors import PruneError
from prune.finetune import FinetuneReport, Visit, distill
from prune.groups import Groups
from prune.importance import score
from prune.jsonable import jsonable
from prune.modes import set_mode
from prune.precision import (
    PrecisionReport,
    PrecisionTrial,
    Ranked,
    assignment,
    bytes_keep,
    check_precision,
    counter_for,
    greedy_order,
)
from prune.quantize import quantize_modules, quantized_modules
from prune.search import (
    SEARCH_METHODS,
    Objective,
    Problem,
    RadiusCheck,
    SearchResult,
    SearchStopped,
    objective_value,
    run_search,
    search_uniform,
)
from prune.surgery import keep_indices, shrink, widths
from prune.surgery import reconstruct as reconstruct_layers

RECONSTRUCT_STATES = 4096  # enough rows for a 257-column least-squares fit, cheap per candidate


def _subsample(states, n: int, seed: int):
    """At most n rows of the states (seeded), so re-fitting stays cheap inside a search."""
    first = states[0] if isinstance(states, tuple) else states
    if len(first) <= n:
        return states
    idx = torch.randperm(len(first), generator=torch.Generator().manual_seed(int(seed)))[:n]
    return tuple(s[idx] for s in states) if isinstance(states, tuple) else states[idx]


@dataclass
class PruneResult:
    """The pruned model and everything measured about it (``to_dict`` leaves the model out)."""

    model: nn.Module = field(repr=False)
    search: SearchResult
    metric: str
    seed: int
    coefficients: dict[str, float]
    widths: dict[str, dict[str, int]]
    before: Footprint
    after: Footprint
    objective_before: float
    objective_after: float
    finetune: FinetuneReport | None = None
    reconstructed: bool = False
    constraints: dict[str, Constraint] = field(default_factory=dict)  # each constraint on the returned model
    precision: dict[str, str] | None = (
        None  # each component's precision ('float' | 'int8'); None: precision off, no flash budget
    )
    weight_bytes: int | None = (
        None  # the returned model's weight bytes at its precision (prune.quantize.bytes_footprint)
    )
    precision_report: PrecisionReport | None = None  # how the precision was chosen (prune.precision)

    @property
    def feasible(self) -> bool:
        """Whether the returned model (fine-tuned or not) meets every constraint."""
        return self.search.feasible if not self.constraints else not failed(self.constraints)

    @property
    def finetune_kept(self) -> bool | None:
        """Whether the fine-tuned weights were kept (None: no fine-tuning asked)."""
        return None if self.finetune is None else self.finetune.kept

    @property
    def why_infeasible(self) -> str:
        """Empty when feasible; else each failed constraint with its numbers (and, from the search, how often each failed)."""
        if self.feasible:
            return ""
        return self.search.why_infeasible or why(self.constraints)

    def require_feasible(self) -> PruneResult:
        """This result, or a PruneError that names each failed constraint with its numbers."""
        if not self.feasible:
            raise PruneError(self.why_infeasible)
        return self

    def to_dict(self) -> dict:
        """The JSON summary (the model left out; non-finite numbers as None); precision keys only when precision was asked."""
        out = jsonable(
            {
                "method": self.search.method,
                "metric": self.metric,
                "seed": self.seed,
                "reconstructed": self.reconstructed,
                "keep": self.search.keep,
                "tolerance": self.search.tolerance,
                "keep_fraction": self.search.keep_fraction,
                "feasible": self.feasible,
                "params_before": self.before.params,
                "params_after": self.after.params,
                "prunable_params_before": self.before.prunable_params,
                "prunable_params_after": self.after.prunable_params,
                "bytes_before": self.before.bytes,
                "bytes_after": self.after.bytes,
                "macs_before": self.before.macs,
                "macs_after": self.after.macs,
                "objective_before": self.objective_before,
                "objective_after": self.objective_after,
                "objective_searched": self.search.objective,
                "objective_best_seen": self.search.best_seen,
                "metric_trials": self.search.metric_trials,
                "evaluations": self.search.evaluations,
                "seconds": self.search.seconds,
                "coefficients": self.coefficients,
                "component_coefficients": self.search.component_coefficients,
                "kept": self.search.kept,
                "widths": self.widths,
                "finetune": self.finetune.to_dict() if self.finetune else None,
                "finetune_kept": self.finetune_kept,
                "stability_mode": self.search.stability,
                "radius_before": self.search.radius_before,
                "radius_after": c.value if (c := self.constraints.get("stability")) is not None else self.search.radius,
                "constraints": {
                    name: {k: v for k, v in con.to_dict().items() if k != "name"}
                    for name, con in self.constraints.items()
                },
                "why_infeasible": self.why_infeasible,
                "constraint_failures": self.search.failures,
                "starts": [{"from": s.origin, "coefficients": s.coefficients} for s in self.search.starts],
                "stopped": self.search.stopped,
            }
        )
        if self.precision_report is not None:
            out.update(
                jsonable(
                    {
                        "precision": self.precision,
                        "weight_bytes": self.weight_bytes,
                        "flash_budget": self.precision_report.flash_budget,
                        "precision_search": self.precision_report.to_dict(),
                    }
                )
            )
        return out


AUTO = "auto"


def auto_metrics(states) -> tuple[str, ...]:
    """The built-in metrics ``metric='auto'`` tries (data-aware ones only when states are given)."""
    return ("l1", "l2", "random") + (("activation", "contribution") if states is not None else ())


def choose_metric(
    model: nn.Module, groups: Groups, metric: str, states, seed: int, make: Callable[[dict], Problem]
) -> tuple[str, dict, Problem, dict[str, float], int]:
    """The metric to search with, its scores, a fresh problem, each tried metric's objective, evaluations spent.

    A named metric is used as is. ``auto`` judges the uniform point (the same coefficient for every
    component) under each of :func:`auto_metrics` on the caller's objective and keeps the best, so
    a search that starts there (gd, and the grid, whose snapped origin it is) can never end below
    any uniform baseline; those evaluations are counted as the search's own. A uniform point that
    stops the search (ceiling or noise margin, see :meth:`Problem.stop_reason`) ends the trials:
    no other metric can beat it by more than the caller's margin.
    """
    if metric != AUTO:
        scores = score(model, groups, metric, states=states, seed=seed)
        return metric, scores, make(scores), {}, 0
    best, best_value, trials, spent = None, -math.inf, {}, 0
    for name in auto_metrics(states):
        scores = score(model, groups, name, states=states, seed=seed)
        problem = make(scores)
        try:
            search_uniform(problem)
        except SearchStopped:
            pass  # problem.stopped says why; the point is judged and cached
        first = next(iter(problem.cache.values()))
        value = problem.penalised(first)  # the objective, penalised if the point breaks a constraint
        trials[name] = first.objective
        if best is None or value > best_value:
            if best is not None:
                spent += best[2].evaluations
            best, best_value = (name, scores, problem), value
        else:
            spent += problem.evaluations
        if problem.stopped is not None and best[2] is problem:
            break
    assert best is not None  # auto_metrics() is never empty
    return best[0], best[1], best[2], trials, spent


def prune(
    model: nn.Module,
    groups: Groups,
    keep: float | None,
    objective: Objective,
    method: str = "gd",
    metric: str = "l1",
    states: torch.Tensor | None = None,
    seed: int = 0,
    tolerance: float = 0.01,
    floor: float | None = None,
    radius_check: RadiusCheck | None = None,
    resolution: float = 0.1,
    max_evaluations: int = 60,
    gradient: str = "spsa",
    reconstruct: bool = False,
    finetune: Visit | None = None,
    progress: bool = False,
    stability: str = "strict",
    stability_tolerance: float = STABILITY_TOLERANCE,
    starts: Sequence[Mapping[str, float]] = (),
    population: int | None = None,
    radius_before: float | None = None,
    ceiling: float | None = None,
    stop_within: float | None = None,
    precision: str = "off",
    flash_budget: int | None = None,
) -> PruneResult:
    """Search coefficients for ``keep`` (fraction of prunable parameters kept) and shrink ``model``.

    ``method`` is one of :data:`SEARCH_METHODS` (gd, grid, uniform, global, cmaes, tpe); ``metric`` ranks units inside a group (l1, l2, random,
    activation, contribution; data-aware ones need ``states``; ``auto`` picks the one whose uniform
    point scores best, see :func:`choose_metric`). ``reconstruct`` re-fits every
    layer that lost inputs by least squares on ``states`` (for every candidate, closed form).
    ``finetune``, if given, is a ``visit(model) -> states`` callable and turns on distillation
    toward the unpruned model; the distilled weights are kept only if the objective does not drop
    and no constraint the searched model met breaks (``result.finetune.why_not_kept`` says which).
    ``stability`` (strict, relative, off) and ``stability_tolerance`` judge ``radius_check`` (see
    :mod:`prune.constraints`; ``radius_before``, the unpruned radius, is measured when not given).
    ``starts`` are extra starting points (coefficients per component, e.g. a larger budget's
    ``result.search.best_points``) for gd, cmaes and tpe; ``population`` sizes a CMA-ES generation / TPE batch.
    The search ends early when a feasible candidate reaches ``ceiling`` (the best objective there
    is, e.g. an env's maximum return) or comes within ``stop_within`` of the unpruned model's
    objective (e.g. its standard error); ``result.search.stopped`` (and ``to_dict()['stopped']``)
    says why the search ended: ceiling, within_noise, max_evaluations or converged. None (the
    default) for both: no early stop.
    ``precision`` (off | int8 | auto, :data:`prune.precision.PRECISIONS`) and ``flash_budget``
    (weight bytes) make the weights' precision part of the result, see :mod:`prune.precision`:
    int8 quantizes every component after the search and measures and judges the quantized model
    again; auto chooses float or int8 per component under ``flash_budget``; ``keep=None`` means a
    budget in bytes only. ``result.precision`` / ``to_dict()['precision']`` gives each component's
    precision, ``weight_bytes`` the returned model's weight bytes. The default (off, no flash
    budget) is exactly the float search.
    """
    check_precision(precision, keep, flash_budget)
    keep = check_keep(keep) if keep is not None else None
    if method not in SEARCH_METHODS:
        raise PruneError(f"unknown method {method!r}; known: {', '.join(SEARCH_METHODS)}")
    set_mode(model, False)
    fit_states = None
    if reconstruct:
        if states is None:
            raise PruneError("reconstruct=True needs states (observations the controller visits)")
        fit_states = _subsample(states, RECONSTRUCT_STATES, seed)
    with torch.no_grad():
        objective_before = objective_value(objective(model))[0]
    if radius_check is not None and radius_before is None:
        radius_before = float(radius_check(model))  # once, not once per metric 'auto' tries
    asked_metric = metric

    def search(
        budget: float, quantized: Sequence[str] = (), counter: ByteCounter | None = None
    ) -> tuple[str, dict, Problem, SearchResult]:
        """One coefficient search at ``budget`` (parameters, or bytes when keep is None), candidates int8 in ``quantized``."""
        # a log file (stderr not a terminal) gets a line every 10 s, not a carriage-return redraw per evaluation
        bar = tqdm(
            total=max_evaluations if method in ("gd", "cmaes", "tpe") else None,
            desc=f"{method} keep={budget}",
            disable=not progress,
            leave=False,
            mininterval=0.1 if sys.stderr.isatty() else 10.0,
        )
        try:
            start = time.perf_counter()
            make = lambda s: Problem(
                model,
                groups,
                s,
                objective,
                budget,
                tolerance,
                floor,
                radius_check,
                bar,
                fit_states,  # noqa: E731
                stability,
                stability_tolerance,
                radius_before,
                ceiling=ceiling,
                stop_within=stop_within,
                reference=objective_before,
                quantized=quantized,
                bytes_counter=counter,
                flash_budget=flash_budget,
                budget_in_bytes=keep is None,
            )
            chosen_metric, scores, problem, trials, spent = choose_metric(
                model, groups, asked_metric, states, seed, make
            )
            result = run_search(
                problem,
                method,
                resolution,
                max(1, max_evaluations - spent),
                gradient,
                seed,
                starts=starts,
                population=population,
            )
            result.evaluations += spent
            result.seconds = time.perf_counter() - start
            result.metric_trials = trials
        finally:
            bar.close()
        return chosen_metric, scores, problem, result

    report = None
    if precision == "off" and flash_budget is None:
        metric, scores, problem, result = search(keep if keep is not None else 1.0)
        plan, counter = None, None
    else:
        metric, scores, problem, result, plan, counter, report = _search_precision(
            model, groups, objective, keep, precision, flash_budget, objective_before, search
        )
    keep_idx = keep_indices(scores, result.kept)
    small = shrink(model, groups, keep_idx)
    if fit_states is not None:
        reconstruct_layers(model, small, groups, keep_idx, fit_states)
    set_mode(small, False)
    int8 = sorted(quantized_modules(plan, groups)) if plan is not None else []
    weight_bytes = counter.weight_bytes(result.kept) if counter is not None else None

    def judged(candidate: nn.Module) -> tuple[float, dict[str, Constraint]]:
        """The objective of ``candidate`` at the chosen precision and every constraint judged on it."""
        deployed = set_mode(quantize_modules(candidate, int8, groups), False) if int8 else candidate
        with torch.no_grad():
            value = objective_value(objective(deployed))[0]
        radius = float(radius_check(deployed)) if radius_check is not None else None
        return value, problem.rules.judge(result.keep_fraction, value, radius, weight_bytes)

    tuning = None
    objective_after = result.objective
    constraints = dict(result.constraints)
    if precision == "int8":  # searched in float: what is deployed is measured and judged again
        objective_after, constraints = judged(small)
    if finetune is not None:
        searched = copy.deepcopy(small.state_dict())
        tuning = distill(small, model, finetune, seed=seed)
        set_mode(small, False)
        # fine-tuned weights face every constraint again: distillation matches the teacher's actions, not the return
        tuned, rechecked = judged(small)
        broken = [c for c in failed(rechecked) if c.name not in {f.name for f in failed(constraints)}]
        reasons = (
            [f"objective {tuned:.4g} below the searched model's {objective_after:.4g}"]
            if not tuned >= objective_after
            else []
        )
        reasons += [f"{c.name}: {c.detail}" for c in broken]
        tuning.objective_before, tuning.objective_after, tuning.kept = objective_after, tuned, not reasons
        tuning.constraints = {name: c.to_dict() for name, c in rechecked.items()}
        tuning.why_not_kept = "; ".join(reasons)
        if tuning.kept:
            objective_after, constraints = tuned, rechecked
        else:
            small.load_state_dict(searched)
    shape = widths(small, groups)  # read from the float layers, before their weights become codes
    if int8:
        small = set_mode(quantize_modules(small, int8, groups, inplace=True), False)
    return PruneResult(
        small,
        result,
        metric,
        seed,
        result.coefficients(groups),
        shape,
        footprint(groups),
        footprint(groups, result.kept),
        objective_before,
        objective_after,
        tuning,
        fit_states is not None,
        constraints,
        dict(plan) if plan is not None else None,
        weight_bytes,
        report,
    )


Search = Callable[..., tuple[str, dict, Problem, SearchResult]]


def _search_precision(
    model: nn.Module,
    groups: Groups,
    objective: Objective,
    keep: float | None,
    precision: str,
    flash_budget: int | None,
    objective_before: float,
    search: Search,
) -> tuple[str, dict, Problem, SearchResult, dict[str, str], ByteCounter, PrecisionReport]:
    """The coefficient search at each precision assignment :mod:`prune.precision` tries, and the one chosen.

    Returns the chosen search (metric, scores, problem, result; its ``evaluations`` and ``seconds``
    cover every assignment tried and the ranking), the assignment, its byte counter and the report.
    """
    start = time.perf_counter()
    ranking: list[Ranked] = []
    if precision == "auto":

        def measure(m: nn.Module) -> float:
            with torch.no_grad():
                return objective_value(objective(set_mode(m, False)))[0]

        ranking = greedy_order(model, groups, objective_before, measure)
        plans = [assignment(groups, [r.component for r in ranking[:k]]) for k in range(len(ranking) + 1)]
    else:
        plans = [assignment(groups, list(groups.components) if precision == "int8" else [])]
    counters = [counter_for(groups, plan) for plan in plans]
    if flash_budget is not None:
        smallest = min(c.smallest() for c in counters)
        if flash_budget < smallest:
            raise PruneError(
                f"flash_budget={flash_budget} bytes is below the smallest reachable size, {smallest} bytes "
                f"(one unit per group, precision {precision}: "
                f"{'int8 where it saves bytes' if precision == 'auto' else precision if precision == 'int8' else 'float'})"
            )
    trials: list[PrecisionTrial] = []
    runs = []
    for plan, counter in zip(plans, counters):
        budget = keep
        if budget is None:
            assert flash_budget is not None  # check_precision: keep=None needs a flash budget
            budget = bytes_keep(counter, flash_budget)
            if budget is None:
                trials.append(
                    PrecisionTrial(
                        dict(plan),
                        None,
                        None,
                        False,
                        None,
                        0,
                        f"smallest model at this precision takes {counter.smallest()} bytes > flash_budget {flash_budget}",
                    )
                )
                continue
        quantized = sorted(quantized_modules(plan, groups)) if precision == "auto" else []
        found = search(budget, quantized, counter)
        result = found[3]
        trials.append(
            PrecisionTrial(
                dict(plan),
                budget,
                result.objective,
                result.feasible,
                counter.weight_bytes(result.kept),
                result.evaluations,
            )
        )
        runs.append((found, plan, counter))
        if flash_budget is not None and counter.weight_bytes() <= flash_budget:
            break  # the unpruned model fits at this precision: more int8 would only add quantization error (by the ranking)
    best = max(range(len(runs)), key=lambda i: (runs[i][0][3].feasible, runs[i][0][3].objective, -i))
    (metric, scores, problem, result), plan, counter = runs[best]
    result.evaluations = sum(r[0][3].evaluations for r in runs) + len(ranking)
    result.seconds = time.perf_counter() - start
    report = PrecisionReport(
        precision, flash_budget, dict(plan), counter.weight_bytes(result.kept), ranking, trials, len(ranking)
    )
    return metric, scores, problem, result, dict(plan), counter, report
