"""Searching the soft coefficients: one c per component, maximising ``objective(model)`` under a budget.

Every candidate is built for real (units kept -> :func:`prune.surgery.shrink`) and judged by the
caller's objective; it is *feasible* when its prunable-parameter fraction is at most the budget
``keep`` and at least ``keep - tolerance`` (the budget is a cap), its objective is at least ``floor`` (if given) and the closed loop stays stable (if a
stability check is given). Candidates are cached by units kept, since the objective is piecewise
constant in c; ``evaluations`` counts objective calls. An objective may return one score per
episode (fixed episodes): then a search keeps its start (the uniform point) unless a candidate beats
it by more than two paired standard errors (:meth:`Problem.selected`), since among thousands of
candidates the best mean is partly luck of the fixed episodes.

Methods:
- ``grid``: every point of {0, r, 2r, .., 1}^K snapped onto the budget by the same projection as
  ``gd`` (distinct units kept, judged once each; points outside the tolerance band are skipped);
- ``gd``: gradient ascent with a numerical gradient (SPSA by default, or central finite differences
  per component), probe steps of at least one unit, the budget held by projection (a common shift
  of all coefficients, found by bisection, to the largest fraction <= keep); a step that does not
  improve halves the step size; it starts at the uniform point and restarts from seeded random
  points of the budget surface until ``max_evaluations`` is spent;
- ``uniform``: the same c for every component (the projection of c = 0);
- ``global``: units ranked across all groups by importance normalised per group, removed
  lowest first until the budget holds.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from prune.budget import BudgetCounter, check_keep, kept_from_coefficients
from prune.errors import PruneError
from prune.groups import Groups
from prune.surgery import keep_indices, reconstruct, shrink

Objective = Callable[[nn.Module], "float | Sequence[float]"]  # a number, or one score per episode
SIGNIFICANCE = 2.0  # standard errors a candidate must beat the search's start by (per-episode objectives only)


def objective_value(raw) -> tuple[float, np.ndarray | None]:
    """An objective's mean and, if it gave one score per episode, those scores."""
    arr = np.asarray(raw, dtype=float)
    if arr.ndim == 0:
        return float(arr), None
    if arr.ndim != 1 or arr.size == 0:
        raise PruneError(f"objective must return a number or a 1-D sequence of per-episode scores, got shape {arr.shape}")
    return float(arr.mean()), arr
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
    samples: np.ndarray | None = field(default=None, repr=False)  # per-episode scores, when the objective gives them


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
    metric_trials: dict[str, float] = field(default_factory=dict)  # metric='auto': uniform-point objective per metric
    best_seen: float = float("nan")  # highest feasible objective met; ``objective`` is the selected one (see Problem.selected)

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
        while hi - lo > 1e-9:  # units are discrete: 1e-9 in the shift is far below one unit of any group
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
            value, samples = objective_value(self.objective(small))
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
        cand = Candidate(dict(kept), fraction, value, radius, not why, "; ".join(why), samples)
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

    def selected(self) -> Candidate | None:
        """The candidate to return: the best feasible one, guarded against the winner's curse.

        With per-episode scores, a candidate replaces the search's start (its first candidate: the
        uniform point for gd and the grid) only if its paired improvement over the start is larger
        than SIGNIFICANCE standard errors; among those the largest lower bound wins. A search over
        many candidates otherwise picks up differences the fixed search episodes alone produce,
        which do not carry over to other episodes. Without per-episode scores: the best mean.
        """
        start = next(iter(self.cache.values()), None)
        if self.best is None or start is None or not start.feasible or start.samples is None:
            return self.best
        chosen, bound = start, 0.0
        for cand in self.cache.values():
            if not cand.feasible or cand.samples is None or len(cand.samples) != len(start.samples) or len(start.samples) < 2:
                continue
            d = cand.samples - start.samples
            lower = float(d.mean() - SIGNIFICANCE * d.std(ddof=1) / math.sqrt(len(d)))
            if lower > bound:
                chosen, bound = cand, lower
        return chosen

    def result(self, method: str, seconds: float, c: np.ndarray | None = None) -> SearchResult:
        best = self.selected()
        if best is None:  # nothing feasible: report the highest objective met, honestly marked infeasible
            if not self.cache:
                raise PruneError(f"{method}: no candidate within the budget [{self.keep - self.tolerance:.4f}, {self.keep}] was evaluated")
            best = max(self.cache.values(), key=lambda cand: cand.objective if math.isfinite(cand.objective) else -math.inf)
        coeffs = {comp: 0.0 for comp in self.components}
        for comp, names in self.groups.components.items():
            sizes = [self.groups[n].size for n in names]
            coeffs[comp] = 1.0 - sum(best.kept[n] for n in names) / sum(sizes)
        return SearchResult(method, self.keep, self.tolerance, coeffs, best.kept, best.keep_fraction, best.objective,
                            best.radius, best.feasible, self.evaluations, seconds, list(self.history),
                            best_seen=self.best.objective if self.best is not None else float("nan"))


def search_uniform(problem: Problem) -> np.ndarray:
    """The same coefficient for every component, as large a model as the budget allows."""
    c = problem.project(np.zeros(len(problem.components)))
    problem.value(c)
    return c


def grid_points(problem: Problem, resolution: float = 0.1) -> list[dict[str, int]]:
    """Units kept for every point of {0, r, .., 1}^K snapped onto the budget, distinct and within tolerance.

    Each grid point is moved onto the budget by the projection gradient descent uses (a common shift
    of all coefficients to the largest model <= keep), so a grid point stands for a direction on the
    budget surface: with a budget that is a cap and a tolerance of 0.01, the raw points of a coarse
    grid almost never land inside the band (1 to 4 of 121 on a two-layer MLP). Points that snap to
    the same units kept are judged once; a snapped point still outside the band (clipping at c = 1)
    is skipped without an evaluation.
    """
    if not 0.0 < resolution <= 1.0:
        raise PruneError(f"grid resolution must be in (0, 1], got {resolution}")
    levels = np.round(np.arange(0.0, 1.0 + 1e-9, resolution), 10)
    seen: dict[tuple[int, ...], dict[str, int]] = {}
    for p in itertools.product(levels, repeat=len(problem.components)):
        kept = problem.kept_of(problem.project(np.array(p)))
        key = tuple(kept[g.name] for g in problem.groups.groups)
        if key not in seen and problem.within_budget(problem.counter.fraction(kept)):
            seen[key] = kept
    return list(seen.values())


def search_grid(problem: Problem, resolution: float = 0.1) -> None:
    """Every grid point snapped onto the budget (see :func:`grid_points`), judged once each."""
    points = grid_points(problem, resolution)
    if not points:
        raise PruneError(f"grid at resolution {resolution} has no point within the budget [{problem.keep - problem.tolerance:.4f}, {problem.keep}]; "
                         "raise the tolerance or refine the resolution")
    if problem.progress is not None:
        problem.progress.reset(total=len(points))
    for kept in points:
        problem.evaluate_kept(kept)


def search_gd(problem: Problem, step: float = 0.3, probe: float = 0.15, max_evaluations: int = 60,
              gradient: str = "spsa", seed: int = 0, min_step: float | None = None, restarts: int | None = None) -> np.ndarray:
    """Projected gradient ascent on the coefficients with a numerical gradient (see module doc).

    Starts at the uniform point; after convergence, each further run starts from a seeded random
    point of the budget surface while evaluations remain (at most ``restarts`` of them; None: until
    ``max_evaluations`` is spent). The objective of a pruned controller is rugged in c (a unit more or
    less changes the closed loop), so one local ascent stalls early; restarts spend the rest of the
    budget on other basins.
    """
    if gradient not in ("fd", "spsa"):
        raise PruneError(f"gradient must be 'fd' or 'spsa', got {gradient!r}")
    k = len(problem.components)
    unit = np.array([1.0 / min(problem.groups[n].size for n in problem.groups.components[c]) for c in problem.components])
    min_step = float(unit.max()) if min_step is None else min_step
    rng = np.random.default_rng(seed)
    best_x, best_f = None, -math.inf
    run, stale = -1, 0
    while (restarts is None or run < restarts) and stale < 20:  # stale: runs that met only cached points
        run += 1
        if problem.evaluations >= max_evaluations:
            break
        spent = problem.evaluations
        x = problem.project(np.zeros(k) if run == 0 else rng.uniform(0.0, 1.0, k))
        fx = problem.value(x)
        h = np.maximum(probe, unit)  # a probe must move at least one unit, or it sees a flat objective
        lr = step
        need = (2 * k if gradient == "fd" else 2) + 1  # one gradient and one step: never spend past the cap
        while problem.evaluations + need <= max_evaluations and lr >= min_step:
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
        stale = stale + 1 if problem.evaluations == spent else 0
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
               gradient: str = "spsa", seed: int = 0, **gd_options) -> SearchResult:
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
