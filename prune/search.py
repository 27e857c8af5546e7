"""Searching the soft coefficients: one c per component, maximising ``objective(model)`` under a budget.

Candidates are built, judged against the constraints, cached and counted by the shared
:class:`prune.problem.Problem` (every method below climbs the same penalised objective, spends the
same evaluation counter and returns through the same winner's-curse guard).

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
  lowest first until the budget holds;
- ``cmaes`` / ``tpe``: CMA-ES (the ``cma`` package) and Optuna's TPE sampler on the same projected
  coefficients (see :mod:`prune.optimizers`).

``gd``, ``cmaes`` and ``tpe`` also take ``starts``: coefficient points per component (another
budget's best, see :func:`prune.continuation.prune_budgets`) projected onto this budget and tried
after the uniform point (gd: extra runs, best first; cmaes: the initial mean if best; tpe: enqueued trials).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from prune.errors import PruneError
from prune.optimizers import search_cmaes, search_tpe
from prune.problem import (
    SIGNIFICANCE,
    Candidate,
    Objective,
    Problem,
    RadiusCheck,
    SearchResult,
    Start,
    objective_value,
)

__all__ = [
    "SEARCH_METHODS", "SIGNIFICANCE", "Candidate", "Objective", "Problem", "RadiusCheck", "SearchResult", "Start",
    "grid_points", "objective_value", "run_search", "search_gd", "search_global", "search_grid", "search_uniform",
]
SEARCH_METHODS = ("gd", "grid", "uniform", "global", "cmaes", "tpe")


def search_uniform(problem: Problem) -> np.ndarray:
    """The same coefficient for every component, as large a model as the budget allows."""
    c = problem.note_start("uniform", problem.uniform_point())
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
              gradient: str = "spsa", seed: int = 0, min_step: float | None = None, restarts: int | None = None,
              starts: Sequence[Mapping[str, float]] = ()) -> np.ndarray:
    """Projected gradient ascent on the coefficients with a numerical gradient (see module doc).

    Judges the uniform point and each of ``starts`` (coefficients per component, projected onto this
    budget) first, then ascends from each of them, best first; after that, each further run starts from a seeded random
    point of the budget surface while evaluations remain (at most ``restarts`` of them; None: until
    ``max_evaluations`` is spent; the given starts count as restarts too). The objective of a pruned controller is rugged in c (a unit more or
    less changes the closed loop), so one local ascent stalls early; restarts spend the rest of the
    budget on other basins.
    """
    if gradient not in ("fd", "spsa"):
        raise PruneError(f"gradient must be 'fd' or 'spsa', got {gradient!r}")
    k = len(problem.components)
    unit = np.array([1.0 / min(problem.groups[n].size for n in problem.groups.components[c]) for c in problem.components])
    min_step = float(unit.max()) if min_step is None else min_step
    rng = np.random.default_rng(seed)
    # the uniform point first (the guard's start), then the given starts, judged up front; runs go from the best of them down
    ordered = [problem.note_start("uniform", problem.uniform_point())]
    if starts:
        problem.value(ordered[0])
    for s in starts:
        if problem.evaluations >= max_evaluations:
            break
        ordered.append(problem.note_start("previous", problem.point_of(s)))
        problem.value(ordered[-1])
    if len(ordered) > 1:
        ordered.sort(key=lambda x: -problem.value(x))  # stable: ties keep the uniform point first; all cached
    best_x, best_f = None, -math.inf
    run, stale = -1, 0
    while (restarts is None or run < restarts) and stale < 20:  # stale: runs that met only cached points
        run += 1
        if problem.evaluations >= max_evaluations:
            break
        spent = problem.evaluations
        if run < len(ordered):
            x = ordered[run]
        else:  # the random draw only here: without starts, the same seed gives the same runs as before
            x = problem.note_start("random", problem.project(rng.uniform(0.0, 1.0, k)))
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
    return best_x if best_x is not None else problem.uniform_point()


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
               gradient: str = "spsa", seed: int = 0, starts: Sequence[Mapping[str, float]] = (),
               population: int | None = None, **gd_options) -> SearchResult:
    """Run one method on ``problem`` and return its best feasible candidate with the cost.

    ``starts`` (gd, cmaes, tpe; ignored by the others) are extra starting points, coefficients per
    component; ``population`` is the CMA-ES population / TPE batch size (None: the method's default).
    """
    start = time.perf_counter()
    if method == "grid":
        search_grid(problem, resolution)
    elif method == "gd":
        search_gd(problem, max_evaluations=max_evaluations, gradient=gradient, seed=seed, starts=starts, **gd_options)
    elif method == "cmaes":
        search_cmaes(problem, max_evaluations=max_evaluations, seed=seed, starts=starts, population=population)
    elif method == "tpe":
        search_tpe(problem, max_evaluations=max_evaluations, seed=seed, starts=starts, population=population)
    elif method == "uniform":
        search_uniform(problem)
    elif method == "global":
        search_global(problem)
    else:
        raise PruneError(f"unknown search method {method!r}; known: {', '.join(SEARCH_METHODS)}")
    return problem.result(method, time.perf_counter() - start)
