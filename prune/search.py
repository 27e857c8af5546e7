"""Searching the soft coefficients: one c per component, maximising ``objective(model)`` under a budget.

Candidates are built, judged against the constraints, cached and counted by the shared
:class:`prune.problem.Problem` (every method below climbs the same penalised objective, spends the
same evaluation counter and returns through the same winner's-curse guard), and every method hands
them over in batches through its one seam, :meth:`prune.problem.Problem.evaluate_many` (grid
chunks, gd's starts and probes, CMA-ES generations, TPE batches), which an objective's ``batch``
may fan out; the results are the same with or without it.

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
    SearchStopped,
    Start,
    objective_value,
)

__all__ = [
    "SEARCH_METHODS",
    "SIGNIFICANCE",
    "Candidate",
    "Objective",
    "Problem",
    "RadiusCheck",
    "SearchResult",
    "Start",
    "grid_points",
    "objective_value",
    "run_search",
    "search_gd",
    "search_global",
    "search_grid",
    "search_uniform",
]
SEARCH_METHODS = ("gd", "grid", "uniform", "global", "cmaes", "tpe")
BUDGETED = ("gd", "cmaes", "tpe")  # the methods max_evaluations bounds (grid, uniform and global run to their end)
GRID_CHUNK = 64  # grid points judged per batch (Problem.evaluate_many)


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
    """Every grid point snapped onto the budget (see :func:`grid_points`), judged once each, ``GRID_CHUNK`` points per batch."""
    points = grid_points(problem, resolution)
    if not points:
        raise PruneError(
            f"grid at resolution {resolution} has no point within the budget [{problem.keep - problem.tolerance:.4f}, {problem.keep}]; "
            "raise the tolerance or refine the resolution"
        )
    if problem.progress is not None:
        problem.progress.reset(total=len(points))
    for i in range(0, len(points), GRID_CHUNK):  # chunks: a batch objective gets many points, memory holds few models
        problem.evaluate_many(points[i : i + GRID_CHUNK])


def search_gd(
    problem: Problem,
    step: float = 0.3,
    probe: float = 0.15,
    max_evaluations: int = 60,
    gradient: str = "spsa",
    seed: int = 0,
    min_step: float | None = None,
    restarts: int | None = None,
    starts: Sequence[Mapping[str, float]] = (),
) -> np.ndarray:
    """Projected gradient ascent on the coefficients with a numerical gradient (see module doc).

    Judges the uniform point and each of ``starts`` (coefficients per component, projected onto this
    budget) first, then ascends from each of them, best first; after that, each further run starts from a seeded random
    point of the budget surface while evaluations remain (at most ``restarts`` of them; None: until
    ``max_evaluations`` is spent; the given starts count as restarts too). The objective of a pruned controller is rugged in c (a unit more or
    less changes the closed loop), so one local ascent stalls early; restarts spend the rest of the
    budget on other basins.

    Fan-out (:meth:`Problem.evaluate_many`): the starting points are judged as one batch, each
    gradient's probes (SPSA's + and - pair, or fd's 2K points) as one batch, and a run's starting
    point together with its first gradient's probes; the points, their order and the evaluations
    spent are the ones judging them in turn gives (the probes never depend on the start's score).
    """
    if gradient not in ("fd", "spsa"):
        raise PruneError(f"gradient must be 'fd' or 'spsa', got {gradient!r}")
    k = len(problem.components)
    unit = np.array(
        [1.0 / min(problem.groups[n].size for n in problem.groups.components[c]) for c in problem.components]
    )
    min_step = float(unit.max()) if min_step is None else min_step
    rng = np.random.default_rng(seed)

    def probes(x: np.ndarray, h: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None]:
        """The points one gradient at x judges, in order (fd: +e0, -e0, +e1, ..; spsa: +, - along a seeded direction)."""
        if gradient == "fd":
            points = []
            for i in range(k):
                e = np.zeros(k)
                e[i] = h[i]
                points += [problem.project(x + e), problem.project(x - e)]
            return points, None
        delta = rng.choice([-1.0, 1.0], size=k)
        return [problem.project(x + h * delta), problem.project(x - h * delta)], delta

    def new_evaluations(points: Sequence[np.ndarray]) -> int:
        """Evaluations judging these points in turn would spend (distinct, uncached units kept)."""
        return len({problem.key(kept) for kept in map(problem.kept_of, points)} - problem.cache.keys())

    # the uniform point first (the guard's start), then the given starts, judged up front; runs go from the best of them down
    ordered = [problem.note_start("uniform", problem.uniform_point())]
    if starts:
        for s in starts:
            if problem.evaluations + new_evaluations(ordered) >= max_evaluations:
                break
            ordered.append(problem.note_start("previous", problem.point_of(s)))
        problem.evaluate_many([problem.kept_of(p) for p in ordered])
    if len(ordered) > 1:
        ordered.sort(key=lambda x: -problem.value(x))  # stable: ties keep the uniform point first; all cached
    best_x, best_f = None, -math.inf
    run, stale = -1, 0
    need = (2 * k if gradient == "fd" else 2) + 1  # one gradient and one step: never spend past the cap
    while (restarts is None or run < restarts) and stale < 20:  # stale: runs that met only cached points
        run += 1
        if problem.evaluations >= max_evaluations:
            break
        spent = problem.evaluations
        if run < len(ordered):
            x = ordered[run]
        else:  # the random draw only here: without starts, the same seed gives the same runs as before
            x = problem.note_start("random", problem.project(rng.uniform(0.0, 1.0, k)))
        h = np.maximum(probe, unit)  # a probe must move at least one unit, or it sees a flat objective
        lr = step
        ahead = None  # the first gradient's probes, judged with x when the budget affords both
        if problem.evaluations + new_evaluations([x]) + need <= max_evaluations and lr >= min_step:
            ahead = probes(x, h)
            problem.evaluate_many([problem.kept_of(p) for p in [x, *ahead[0]]])
        fx = problem.value(x)
        while ahead is not None or (problem.evaluations + need <= max_evaluations and lr >= min_step):
            points, delta = ahead if ahead is not None else probes(x, h)
            ahead = None
            cands = problem.evaluate_many([problem.kept_of(p) for p in points])
            values = np.array([problem.penalised(c) for c in cands if c is not None])
            if delta is None:
                g = (values[0::2] - values[1::2]) / (2 * h)
            else:
                g = (values[0] - values[1]) / (2 * h) * delta
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


def run_search(
    problem: Problem,
    method: str,
    resolution: float = 0.1,
    max_evaluations: int = 60,
    gradient: str = "spsa",
    seed: int = 0,
    starts: Sequence[Mapping[str, float]] = (),
    population: int | None = None,
    **gd_options,
) -> SearchResult:
    """Run one method on ``problem`` and return its best feasible candidate with the cost and why it stopped.

    ``starts`` (gd, cmaes, tpe; ignored by the others) are extra starting points, coefficients per
    component; ``population`` is the CMA-ES population / TPE batch size (None: the method's default).
    A problem already stopped (a candidate judged before reached its ceiling or the noise margin)
    runs no method. ``SearchResult.stopped``: the stop reason, else ``max_evaluations`` when a
    budgeted method spent them all, else ``converged`` (the method ended on its own).
    """
    if method not in SEARCH_METHODS:
        raise PruneError(f"unknown search method {method!r}; known: {', '.join(SEARCH_METHODS)}")
    start = time.perf_counter()
    try:
        if problem.stopped is not None:
            pass
        elif method == "grid":
            search_grid(problem, resolution)
        elif method == "gd":
            search_gd(
                problem, max_evaluations=max_evaluations, gradient=gradient, seed=seed, starts=starts, **gd_options
            )
        elif method == "cmaes":
            search_cmaes(problem, max_evaluations=max_evaluations, seed=seed, starts=starts, population=population)
        elif method == "tpe":
            search_tpe(problem, max_evaluations=max_evaluations, seed=seed, starts=starts, population=population)
        elif method == "uniform":
            search_uniform(problem)
        else:
            search_global(problem)
    except SearchStopped:
        pass  # problem.stopped says why
    result = problem.result(method, time.perf_counter() - start)
    result.stopped = problem.stopped or (
        "max_evaluations" if method in BUDGETED and problem.evaluations >= max_evaluations else "converged"
    )
    return result
