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

from prune.budget import Footprint, check_keep, footprint
from prune.constraints import STABILITY_TOLERANCE, Constraint, failed, why
from prune.errors import PruneError
from prune.finetune import FinetuneReport, Visit, distill
from prune.groups import Groups
from prune.importance import score
from prune.jsonable import jsonable
from prune.modes import set_mode
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
        """The JSON summary (the model left out; non-finite numbers as None)."""
        return jsonable({
            "method": self.search.method, "metric": self.metric, "seed": self.seed, "reconstructed": self.reconstructed, "keep": self.search.keep,
            "tolerance": self.search.tolerance, "keep_fraction": self.search.keep_fraction,
            "feasible": self.feasible, "params_before": self.before.params, "params_after": self.after.params,
            "prunable_params_before": self.before.prunable_params, "prunable_params_after": self.after.prunable_params,
            "bytes_before": self.before.bytes, "bytes_after": self.after.bytes,
            "macs_before": self.before.macs, "macs_after": self.after.macs,
            "objective_before": self.objective_before, "objective_after": self.objective_after,
            "objective_searched": self.search.objective, "objective_best_seen": self.search.best_seen, "metric_trials": self.search.metric_trials,
            "evaluations": self.search.evaluations,
            "seconds": self.search.seconds, "coefficients": self.coefficients,
            "component_coefficients": self.search.component_coefficients, "kept": self.search.kept,
            "widths": self.widths, "finetune": self.finetune.to_dict() if self.finetune else None,
            "finetune_kept": self.finetune_kept, "stability_mode": self.search.stability,
            "radius_before": self.search.radius_before,
            "radius_after": c.value if (c := self.constraints.get("stability")) is not None else self.search.radius,
            "constraints": {name: {k: v for k, v in con.to_dict().items() if k != "name"} for name, con in self.constraints.items()},
            "why_infeasible": self.why_infeasible, "constraint_failures": self.search.failures,
            "starts": [{"from": s.origin, "coefficients": s.coefficients} for s in self.search.starts],
            "stopped": self.search.stopped,
        })


AUTO = "auto"


def auto_metrics(states) -> tuple[str, ...]:
    """The built-in metrics ``metric='auto'`` tries (data-aware ones only when states are given)."""
    return ("l1", "l2", "random") + (("activation", "contribution") if states is not None else ())


def choose_metric(model: nn.Module, groups: Groups, metric: str, states, seed: int,
                  make: Callable[[dict], Problem]) -> tuple[str, dict, Problem, dict[str, float], int]:
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


def prune(model: nn.Module, groups: Groups, keep: float, objective: Objective, method: str = "gd",
          metric: str = "l1", states: torch.Tensor | None = None, seed: int = 0, tolerance: float = 0.01,
          floor: float | None = None, radius_check: RadiusCheck | None = None, resolution: float = 0.1,
          max_evaluations: int = 60, gradient: str = "spsa", reconstruct: bool = False,
          finetune: Visit | None = None, progress: bool = False, stability: str = "strict",
          stability_tolerance: float = STABILITY_TOLERANCE, starts: Sequence[Mapping[str, float]] = (),
          population: int | None = None, radius_before: float | None = None, ceiling: float | None = None,
          stop_within: float | None = None) -> PruneResult:
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
    """
    keep = check_keep(keep)
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
    # a log file (stderr not a terminal) gets a line every 10 s, not a carriage-return redraw per evaluation
    bar = tqdm(total=max_evaluations if method in ("gd", "cmaes", "tpe") else None, desc=f"{method} keep={keep}", disable=not progress, leave=False,
               mininterval=0.1 if sys.stderr.isatty() else 10.0)
    try:
        start = time.perf_counter()
        make = lambda s: Problem(model, groups, s, objective, keep, tolerance, floor, radius_check, bar, fit_states,  # noqa: E731
                                 stability, stability_tolerance, radius_before, ceiling=ceiling, stop_within=stop_within,
                                 reference=objective_before)
        metric, scores, problem, trials, spent = choose_metric(model, groups, metric, states, seed, make)
        result = run_search(problem, method, resolution, max(1, max_evaluations - spent), gradient, seed,
                            starts=starts, population=population)
        result.evaluations += spent
        result.seconds = time.perf_counter() - start
        result.metric_trials = trials
    finally:
        bar.close()
    keep_idx = keep_indices(scores, result.kept)
    small = shrink(model, groups, keep_idx)
    if fit_states is not None:
        reconstruct_layers(model, small, groups, keep_idx, fit_states)
    set_mode(small, False)
    report = None
    objective_after = result.objective
    constraints = dict(result.constraints)
    if finetune is not None:
        searched = copy.deepcopy(small.state_dict())
        report = distill(small, model, finetune, seed=seed)
        set_mode(small, False)
        with torch.no_grad():
            tuned = objective_value(objective(small))[0]
        radius = float(radius_check(small)) if radius_check is not None else None
        # fine-tuned weights face every constraint again: distillation matches the teacher's actions, not the return
        rechecked = problem.rules.judge(result.keep_fraction, tuned, radius)
        broken = [c for c in failed(rechecked) if c.name not in {f.name for f in failed(constraints)}]
        reasons = ([f"objective {tuned:.4g} below the searched model's {result.objective:.4g}"] if not tuned >= result.objective else [])
        reasons += [f"{c.name}: {c.detail}" for c in broken]
        report.objective_before, report.objective_after, report.kept = result.objective, tuned, not reasons
        report.constraints = {name: c.to_dict() for name, c in rechecked.items()}
        report.why_not_kept = "; ".join(reasons)
        if report.kept:
            objective_after, constraints = tuned, rechecked
        else:
            small.load_state_dict(searched)
    return PruneResult(small, result, metric, seed, result.coefficients(groups), widths(small, groups),
                       footprint(groups), footprint(groups, result.kept), objective_before, objective_after, report,
                       fit_states is not None, constraints)
