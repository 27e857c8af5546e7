"""Searching the soft coefficients: one c per component, maximising ``objective(model)`` under a budget.

Every candidate is built for real (units kept -> :func:`prune.surgery.shrink`) and judged by the
caller's objective; it is *feasible* when its prunable-parameter fraction is at most the budget
``keep`` and at least ``keep - tolerance`` (the budget is a cap), its objective is at least ``floor`` (if given) and the closed loop stays stable (if a
stability check is given). Candidates are cached by units kept, since the objective is piecewise
constant in c; ``evaluations`` counts objective calls.

Methods:
- ``grid``: every point of {0, r, 2r, .., 1}^K within the budget (skipping the others);
- ``gd``: gradient ascent with a numerical gradient (central finite differences per component, or
  SPSA), probe steps of at least one unit, the budget held by projection (a common shift of all
  coefficients, found by bisection, to the largest fraction <= keep); a step that does not improve
  halves the step size;
- ``uniform``: the same c for every component (the projection of c = 0);
- ``global``: units ranked across all groups by importance normalised per group, removed
  lowest first until the budget holds.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from prune.budget import BudgetCounter, check_keep, kept_from_coefficients
from prune.errors import PruneError
from prune.groups import Groups
from prune.surgery import keep_indices, reconstruct, shrink

Objective = Callable[[nn.Module], float]
RadiusCheck = Callable[[nn.Module], float]  # spectral radius of the closed loop with this model
SEARCH_METHODS = ("gd", "grid", "uniform", "global")


@dataclass
class Candidate:
    """One evaluated point: units kept per group, budget reached, objective, stability, verdict."""

    kept: dict[str, int]
    keep_fraction: float
    objective: float
    radius: float | None
    feasible: bool
    why_infeasible: str = ""


@dataclass
class SearchResult:
    """The best feasible candidate a method found, and what finding it cost."""

    method: str
    keep: float
    tolerance: float
    component_coefficients: dict[str, float]
    kept: dict[str, int]
    keep_fraction: float
    objective: float
    radius: float | None
    feasible: bool
    evaluations: int
    seconds: float
    history: list[float] = field(default_factory=list)  # best feasible objective after each evaluation

    def coefficients(self, groups: Groups) -> dict[str, float]:
        """Fraction of units removed per group (what the budget really took from each)."""
        return {g.name: 1.0 - self.kept[g.name] / g.size for g in groups.groups}

    def to_dict(self) -> dict:
        return asdict(self)


class Problem:
    """A budgeted coefficient problem: builds, judges and caches candidates."""

    def __init__(self, model: nn.Module, groups: Groups, scores: Mapping[str, torch.Tensor], objective: Objective,
                 keep: float, tolerance: float = 0.01, floor: float | None = None,
                 radius_check: RadiusCheck | None = None, progress: tqdm | None = None,
                 reconstruct_states: torch.Tensor | None = None) -> None:
        if not groups.groups:
            raise PruneError("the model has no prunable groups (see Groups.excluded / Groups.protected)")
        if tolerance < 0:
            raise PruneError(f"tolerance must be >= 0, got {tolerance}")
        self.model, self.groups, self.scores, self.objective = model, groups, scores, objective
        self.keep, self.tolerance, self.floor, self.radius_check = check_keep(keep), tolerance, floor, radius_check
        self.counter = BudgetCounter(groups)
        self.components = list(groups.components)
        self.cache: dict[tuple[int, ...], Candidate] = {}
        self.evaluations = 0
        self.best: Candidate | None = None
        self.history: list[float] = []
        self.progress = progress
        self.reconstruct_states = reconstruct_states  # re-fit layers that lost inputs on these states

    # -- coefficients <-> units --
    def kept_of(self, c: np.ndarray) -> dict[str, int]:
        return kept_from_coefficients(self.groups, dict(zip(self.components, np.clip(c, 0.0, 1.0).tolist())))

    def fraction(self, c: np.ndarray) -> float:
        return self.counter.fraction(self.kept_of(c))

    def within_budget(self, fraction: float) -> bool:
        # The budget is a cap: never above keep, at most `tolerance` below it.
        return self.keep - self.tolerance - 1e-12 <= fraction <= self.keep + 1e-12

    def project(self, c: np.ndarray) -> np.ndarray:
        """Shift all coefficients by one common t (then clip) to the largest fraction <= keep."""
        c = np.asarray(c, dtype=float)
        lo, hi = -1.0, 1.0
        if self.fraction(np.clip(c + hi, 0, 1)) > self.keep:
            smallest = self.fraction(np.ones_like(c))
            raise PruneError(f"budget keep={self.keep} is below the smallest model these groups allow "
                             f"({smallest:.4f} of the prunable parameters, one unit per group)")
        if self.fraction(np.clip(c + lo, 0, 1)) <= self.keep:
            return np.clip(c + lo, 0, 1)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if self.fraction(np.clip(c + mid, 0, 1)) <= self.keep:
                hi = mid
            else:
                lo = mid
        return np.clip(c + hi, 0, 1)

    # -- judging --
    def evaluate_kept(self, kept: dict[str, int]) -> Candidate:
        key = tuple(kept[g.name] for g in self.groups.groups)
        if key in self.cache:
            return self.cache[key]
        keep = keep_indices(self.scores, kept)
        small = shrink(self.model, self.groups, keep)
        if self.reconstruct_states is not None:
            reconstruct(self.model, small, self.groups, keep, self.reconstruct_states)
        small.eval()
        with torch.no_grad():
            value = float(self.objective(small))
        self.evaluations += 1
        fraction = self.counter.fraction(kept)
        radius = float(self.radius_check(small)) if self.radius_check is not None else None
        why = []
        if not self.within_budget(fraction):
            why.append(f"keeps {fraction:.4f} of prunable parameters, budget [{self.keep - self.tolerance:.4f}, {self.keep}]")
        if not math.isfinite(value):
            why.append(f"objective is {value}")
        if self.floor is not None and value < self.floor:
            why.append(f"objective {value:.3f} below the floor {self.floor}")
        if radius is not None and not radius < 1.0:
            why.append(f"closed loop unstable (spectral radius {radius:.4f})")
        cand = Candidate(dict(kept), fraction, value, radius, not why, "; ".join(why))
        self.cache[key] = cand
        if cand.feasible and (self.best is None or cand.objective > self.best.objective):
            self.best = cand
        self.history.append(self.best.objective if self.best else float("nan"))
        if self.progress is not None:
            self.progress.update(1)
            if self.best is not None:
                self.progress.set_postfix(best=f"{self.best.objective:.2f}")
        return cand

    def value(self, c: np.ndarray) -> float:
        """Objective with constraint violations penalised (what gradient ascent climbs)."""
        cand = self.evaluate_kept(self.kept_of(c))
        v = cand.objective if math.isfinite(cand.objective) else -1e12
        penalty = 0.0
        if self.floor is not None and v < self.floor:
            penalty += 10.0 * (self.floor - v)
        if cand.radius is not None and cand.radius >= 1.0:
            penalty += 1e3 * (cand.radius - 1.0 + 0.01) + abs(v)
        return v - penalty

    def result(self, method: str, seconds: float, c: np.ndarray | None = None) -> SearchResult:
        best = self.best
        if best is None:  # nothing feasible: report the last candidate honestly as infeasible
            last = next(reversed(self.cache.values()), None)
            if last is None:
                raise PruneError(f"{method}: no candidate within the budget [{self.keep - self.tolerance:.4f}, {self.keep}] was evaluated")
            best = last
        coeffs = {comp: 0.0 for comp in self.components}
        for comp, names in self.groups.components.items():
            sizes = [self.groups[n].size for n in names]
            coeffs[comp] = 1.0 - sum(best.kept[n] for n in names) / sum(sizes)
        return SearchResult(method, self.keep, self.tolerance, coeffs, best.kept, best.keep_fraction, best.objective,
                            best.radius, best.feasible, self.evaluations, seconds, list(self.history))


def search_uniform(problem: Problem) -> np.ndarray:
    """The same coefficient for every component, as large a model as the budget allows."""
    c = problem.project(np.zeros(len(problem.components)))
    problem.value(c)
    return c


def search_grid(problem: Problem, resolution: float = 0.1) -> np.ndarray:
    """Every grid point within the budget tolerance, judged; returns the best point."""
    if not 0.0 < resolution <= 1.0:
        raise PruneError(f"grid resolution must be in (0, 1], got {resolution}")
    levels = np.round(np.arange(0.0, 1.0 + 1e-9, resolution), 10)
    points = [np.array(p) for p in itertools.product(levels, repeat=len(problem.components))]
    feasible = [p for p in points if problem.within_budget(problem.fraction(p))]
    if not feasible:
        raise PruneError(f"grid at resolution {resolution} has no point within the budget [{problem.keep - problem.tolerance:.4f}, {problem.keep}]; "
                         "raise the tolerance or refine the resolution")
    if problem.progress is not None:
        problem.progress.reset(total=len(feasible))
    best_c, best_v = feasible[0], -math.inf
    for p in feasible:
        v = problem.value(p)
        if v > best_v:
            best_c, best_v = p, v
    return best_c


def search_gd(problem: Problem, step: float = 0.15, probe: float = 0.05, max_evaluations: int = 60,
              gradient: str = "fd", seed: int = 0, min_step: float | None = None, restarts: int = 0) -> np.ndarray:
    """Projected gradient ascent on the coefficients with a numerical gradient (see module doc).

    Starts at the uniform point; after convergence, each of ``restarts`` further runs starts from a
    seeded random point of the budget surface while evaluations remain.
    """
    if gradient not in ("fd", "spsa"):
        raise PruneError(f"gradient must be 'fd' or 'spsa', got {gradient!r}")
    k = len(problem.components)
    unit = np.array([1.0 / min(problem.groups[n].size for n in problem.groups.components[c]) for c in problem.components])
    min_step = float(unit.max()) if min_step is None else min_step
    rng = np.random.default_rng(seed)
    best_x, best_f = None, -math.inf
    for run in range(restarts + 1):
        if problem.evaluations >= max_evaluations:
            break
        x = problem.project(np.zeros(k) if run == 0 else rng.uniform(0.0, 1.0, k))
        fx = problem.value(x)
        h = np.maximum(probe, unit)  # a probe must move at least one unit, or it sees a flat objective
        lr = step
        while problem.evaluations < max_evaluations and lr >= min_step:
            if gradient == "fd":
                g = np.zeros(k)
                for i in range(k):
                    e = np.zeros(k)
                    e[i] = h[i]
                    g[i] = (problem.value(problem.project(x + e)) - problem.value(problem.project(x - e))) / (2 * h[i])
            else:
                delta = rng.choice([-1.0, 1.0], size=k)
                diff = problem.value(problem.project(x + h * delta)) - problem.value(problem.project(x - h * delta))
                g = diff / (2 * h) * delta
            if not np.any(g):
                lr *= 0.5
                h = np.minimum(h * 2.0, 0.5)  # flat around x: look further out
                continue
            # the projection removes the component along the budget's normal, so only the direction matters
            x_new = problem.project(x + lr * g / np.abs(g).max())
            f_new = problem.value(x_new)
            if f_new > fx:
                x, fx = x_new, f_new
            else:
                lr *= 0.5
        if fx > best_f:
            best_x, best_f = x, fx
    return best_x if best_x is not None else problem.project(np.zeros(k))


def search_global(problem: Problem) -> None:
    """Remove units in global order of group-normalised importance until the budget holds."""
    units = []
    for g in problem.groups.groups:
        s = problem.scores[g.name]
        norm = s / s.mean().clamp_min(1e-12)
        units += [(float(v), g.name) for v in norm]
    units.sort(key=lambda u: u[0])
    kept = {g.name: g.size for g in problem.groups.groups}
    for _, name in units:
        if problem.counter.fraction(kept) <= problem.keep:
            break
        if kept[name] > 1:
            kept[name] -= 1
    problem.evaluate_kept(kept)


def run_search(problem: Problem, method: str, resolution: float = 0.1, max_evaluations: int = 60,
               gradient: str = "fd", seed: int = 0, **gd_options) -> SearchResult:
    """Run one method on ``problem`` and return its best feasible candidate with the cost."""
    start = time.perf_counter()
    if method == "grid":
        search_grid(problem, resolution)
    elif method == "gd":
        search_gd(problem, max_evaluations=max_evaluations, gradient=gradient, seed=seed, **gd_options)
    elif method == "uniform":
        search_uniform(problem)
    elif method == "global":
        search_global(problem)
    else:
        raise PruneError(f"unknown search method {method!r}; known: {', '.join(SEARCH_METHODS)}")
    return problem.result(method, time.perf_counter() - start)
