"""Budgets as one continuation: solve the largest budget first and start each smaller one from its best points.

Each budget's search starts from the uniform point (so its result is never below it: the uniform
point is judged first and a winner must beat it) and from the previous, larger budget's best
feasible points (``result.search.best_points``) moved onto the new budget by the same projection
the searches use: gd ascends from each of them (best first), cmaes centres its first generation
on the best of them and the uniform point, tpe enqueues them as its first trials; grid, uniform
and global ignore them. A good shape found at
50% kept (widen the first layer, starve the second) is then tried at 25% too, instead of every
budget starting from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from prune.api import PruneResult, prune
from prune.budget import check_keep
from prune.constraints import STABILITY_TOLERANCE
from prune.errors import PruneError
from prune.finetune import Visit
from prune.groups import Groups
from prune.problem import Objective, RadiusCheck


def prune_budgets(
    model: nn.Module,
    groups: Groups,
    keeps: Sequence[float],
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
    population: int | None = None,
    starts: Sequence[Mapping[str, float]] = (),
    ceiling: float | None = None,
    stop_within: float | None = None,
    precision: str = "off",
    flash_budget: int | None = None,
) -> list[PruneResult]:
    """One :func:`prune` per budget in ``keeps``, solved largest first, each started from the previous best points.

    Returns the results in the order of ``keeps``. Every option means what it means for
    :func:`prune` and applies to every budget (``max_evaluations`` is per budget); ``starts`` are
    extra starting points for the first (largest) budget only. The unpruned radius is measured once.
    ``ceiling`` and ``stop_within`` end each budget's search early (see :func:`prune`); ``precision``
    and ``flash_budget`` apply to every budget (see :mod:`prune.precision`).
    """
    budgets = [check_keep(k) for k in keeps]
    if not budgets:
        raise PruneError("keeps is empty: give at least one budget")
    if len(set(budgets)) != len(budgets):
        raise PruneError(f"keeps has repeated budgets: {list(keeps)}")
    radius_before = float(radius_check(model)) if radius_check is not None else None
    solved: dict[float, PruneResult] = {}
    previous: Sequence[Mapping[str, float]] = starts
    for keep in sorted(budgets, reverse=True):
        result = prune(
            model,
            groups,
            keep,
            objective,
            method=method,
            metric=metric,
            states=states,
            seed=seed,
            tolerance=tolerance,
            floor=floor,
            radius_check=radius_check,
            resolution=resolution,
            max_evaluations=max_evaluations,
            gradient=gradient,
            reconstruct=reconstruct,
            finetune=finetune,
            progress=progress,
            stability=stability,
            stability_tolerance=stability_tolerance,
            starts=previous,
            population=population,
            radius_before=radius_before,
            ceiling=ceiling,
            stop_within=stop_within,
            precision=precision,
            flash_budget=flash_budget,
        )
        solved[keep] = result
        # an infeasible budget still hands on where it ended: the shape may fit the next band
        previous = result.search.best_points or [result.search.component_coefficients]
    return [solved[k] for k in budgets]
