"""Maintained black-box optimizers on the budgeted coefficient problem: CMA-ES (``cma``) and TPE (``optuna``).

Both search the coefficients c in [0, 1]^K (one per component) like ``gd``: every proposal is moved
onto the budget by :meth:`Problem.project` before it is judged, so they share gd's candidate cache,
evaluation counter (``max_evaluations``), constraints (a failed constraint is penalised the same
way, :meth:`Problem.penalised`) and winner's-curse guard (the uniform point is judged first and is
the start a winner must beat). Proposals that land on units already judged cost no evaluation;
a search stops when ``max_evaluations`` is spent or when ``STALE`` rounds in a row found nothing new.

- ``cmaes``: CMA-ES with box bounds [0, 1]; its normal draws come from a generator seeded with
  ``seed`` (not numpy's global one). The initial mean is the best of the given starts and the
  uniform point (a given start on ties); the others are injected into the first generation. When CMA-ES stops (flat
  fitness, small step) it restarts from a seeded random point of the budget surface. A generation
  is judged as one population (:meth:`Problem.evaluate_many`, batched when the objective can).
- ``tpe``: Optuna's TPESampler(seed=seed); the uniform point and the starts are enqueued as the
  first trials. ``population`` > 1 asks that many trials at once (constant liar) and judges them as
  one batch; the default, 1, is sequential (TPE learns from every trial). Optuna's own logging is
  set to WARNING (a line per trial would bury the progress bar).

With one component the budget fixes c (the projection leaves no freedom): both judge the uniform point.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from prune.problem import Problem

STALE = 20  # rounds (CMA-ES generations, TPE batches) in a row that judged nothing new: the search has converged
SIGMA = 0.25  # CMA-ES initial step in coefficient units (the box is [0, 1])


def _first_points(problem: Problem, starts: Sequence[Mapping[str, float]]) -> list[np.ndarray]:
    """The uniform point and the given starts projected onto the budget, recorded, judged as one batch."""
    points = [problem.note_start("uniform", problem.uniform_point())]
    points += [problem.note_start("previous", problem.point_of(s)) for s in starts]
    problem.evaluate_many([problem.kept_of(p) for p in points])  # the uniform point first: the guard's start
    return points


def search_cmaes(
    problem: Problem,
    max_evaluations: int = 60,
    seed: int = 0,
    starts: Sequence[Mapping[str, float]] = (),
    population: int | None = None,
    sigma: float = SIGMA,
) -> None:
    """CMA-ES on the projected coefficients until ``max_evaluations`` are spent (see module doc)."""
    import cma  # deferred: only this method needs it, and importing it costs a noticeable fraction of a second

    k = len(problem.components)
    points = _first_points(problem, starts)
    if k < 2:
        return
    rng = np.random.default_rng(seed)
    # the mean goes to the best start (a given one on ties: the point of continuing); CMA-ES also tries the others
    ranked = sorted(points[1:] + points[:1], key=lambda p: -problem.value(p))  # all judged already: cached
    mean, inject = ranked[0], ranked[1:]
    stale = 0
    while problem.evaluations < max_evaluations and stale < STALE:
        opts = {
            "bounds": [0.0, 1.0],
            "seed": math.nan,
            "randn": lambda *shape: rng.standard_normal(shape),
            "verbose": -9,
            "tolflatfitness": 3,
        }
        if population is not None:
            opts["popsize"] = int(population)
        es = cma.CMAEvolutionStrategy(list(mean), sigma, opts)
        if inject:
            es.inject([list(p) for p in inject], force=True)
            inject = []
        while not es.stop() and problem.evaluations < max_evaluations and stale < STALE:
            xs = es.ask()
            kepts = [problem.kept_of(problem.project(np.clip(np.asarray(x, dtype=float), 0.0, 1.0))) for x in xs]
            spent = problem.evaluations
            cands = problem.evaluate_many(kepts, max_evaluations)
            if any(c is None for c in cands):  # the evaluation budget ran out inside this generation
                return
            es.tell(xs, [-problem.penalised(c) for c in cands if c is not None])
            stale = stale + 1 if problem.evaluations == spent else 0
        mean = problem.note_start("random", problem.project(rng.uniform(0.0, 1.0, k)))


def search_tpe(
    problem: Problem,
    max_evaluations: int = 60,
    seed: int = 0,
    starts: Sequence[Mapping[str, float]] = (),
    population: int | None = None,
) -> None:
    """Optuna's TPE on the projected coefficients until ``max_evaluations`` are spent (see module doc)."""
    import optuna  # deferred: a heavy import (SQLAlchemy, alembic) only this method needs

    k = len(problem.components)
    points = _first_points(problem, starts)
    if k < 2:
        return
    batch = max(1, int(population or 1))
    names = [f"c{i}" for i in range(k)]  # component names may be any string; optuna's need not clash
    space: dict[str, optuna.distributions.BaseDistribution] = {
        n: optuna.distributions.FloatDistribution(0.0, 1.0) for n in names
    }
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # constant_liar is 'experimental'
        sampler = optuna.samplers.TPESampler(seed=int(seed), constant_liar=batch > 1)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for p in points:
        study.enqueue_trial({n: float(v) for n, v in zip(names, p)})
    stale = 0
    while problem.evaluations < max_evaluations and stale < STALE:
        trials = [study.ask(space) for _ in range(batch)]
        kepts = [problem.kept_of(problem.project(np.array([t.params[n] for n in names]))) for t in trials]
        spent = problem.evaluations
        cands = problem.evaluate_many(kepts, max_evaluations)
        for trial, cand in zip(trials, cands):
            if cand is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, problem.penalised(cand))
        stale = stale + 1 if problem.evaluations == spent else 0
