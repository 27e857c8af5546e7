"""Precision as a searched choice: which components keep float weights and which go to int8, under a flash budget.

``prune(..., precision=...)`` (:func:`prune.api.prune`):

- ``off`` (the default): float weights, nothing here runs; results are what they always were.
- ``int8``: the coefficient search runs on float candidates as usual, then every component's
  Linears are quantized (:mod:`prune.quantize`); the returned model's objective is measured again on
  the quantized model and every constraint judged again on it (as for a fine-tune), so
  ``objective_after`` is the objective of what is deployed and ``objective_searched`` the float one.
- ``auto``: each component float or int8, chosen by the same objective and constraints as the
  coefficients, under ``flash_budget`` (bytes). Trying all 2^G assignments, each with its own
  coefficient search, is too much; instead the components are ranked once, greedily: each
  component alone is quantized in the unpruned model and its objective loss is divided by the
  bytes it saves (:func:`greedy_order`: G evaluations). The assignments tried are the prefixes of
  that ranking: all float, the cheapest component in int8, the two cheapest, ..., all in int8
  (components whose int8 form saves nothing stay float). Each assignment runs the full coefficient
  search (same method, seed and ``max_evaluations``) on candidates built at that precision, so the
  objective a candidate is judged by is the quantized model's; an assignment that cannot reach
  the budget even at one unit per group is skipped, and none after the first whose unpruned model
  already fits (more int8 would only add quantization error, by the ranking). The winner is the
  feasible result with the highest objective, fewer int8 components on ties;
  :class:`PrecisionReport` lists the ranking (loss, bytes saved) and every assignment tried.

Budgets. ``flash_budget`` caps the model's weight bytes (:func:`prune.quantize.bytes_footprint`;
:class:`prune.budget.ByteCounter` counts them exactly for every candidate). With ``keep=None``
the budget is in bytes only: the coefficient search's band is [b - tolerance, b] of the prunable
bytes, b the share of them the flash budget leaves at that precision (1.0 when the unpruned
model fits). With a ``keep`` as well, the search runs on the parameter fraction ``keep`` as
without quantization and the flash budget is one more constraint (``flash``) every candidate is
judged by. A flash budget below the smallest model any tried precision reaches (one unit per
group, int8 where allowed) is refused, naming ``flash_budget`` and that size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from torch import nn

from prune.budget import ByteCounter
from prune.errors import PruneError
from prune.groups import Groups
from prune.jsonable import jsonable
from prune.quantize import component_linears, quantize_modules, quantized_modules

PRECISIONS = ("off", "int8", "auto")
FLOAT, INT8 = "float", "int8"


@dataclass
class Ranked:
    """One component in the greedy ranking: objective lost when it alone is int8 (unpruned model), bytes saved."""

    component: str
    loss: float
    bytes_saved: int

    @property
    def cost(self) -> float:
        """Objective lost per byte saved (what the ranking sorts by)."""
        return self.loss / self.bytes_saved


@dataclass
class PrecisionTrial:
    """One precision assignment tried: its budget, the searched objective, feasibility, bytes, cost (or why skipped)."""

    precision: dict[str, str]
    keep: float | None
    objective: float | None
    feasible: bool
    weight_bytes: int | None
    evaluations: int
    skipped: str = ""  # why no search ran for it (budget out of reach)


@dataclass
class PrecisionReport:
    """How the precision was chosen: mode, budget, the chosen assignment, the ranking, every assignment tried."""

    mode: str
    flash_budget: int | None
    chosen: dict[str, str]
    weight_bytes: int
    ranking: list[Ranked] = field(default_factory=list)
    trials: list[PrecisionTrial] = field(default_factory=list)
    evaluations: int = 0  # objective calls spent on the ranking

    def to_dict(self) -> dict:
        """JSON-ready (non-finite numbers as None)."""
        return jsonable(asdict(self))


def check_precision(precision: str, keep: float | None, flash_budget: int | None) -> None:
    """Refuse an unknown precision, a bad flash budget, or options that leave no budget."""
    if precision not in PRECISIONS:
        raise PruneError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if flash_budget is not None and (
        isinstance(flash_budget, bool) or not isinstance(flash_budget, int) or flash_budget <= 0
    ):
        raise PruneError(f"flash_budget must be a positive number of bytes, got {flash_budget!r}")
    if keep is None and flash_budget is None:
        raise PruneError("keep=None means a budget in bytes only: give flash_budget (bytes), or a keep fraction")
    if precision == "auto" and flash_budget is None:
        raise PruneError(
            "precision='auto' chooses float or int8 per component under a memory budget: give flash_budget (bytes)"
        )


def assignment(groups: Groups, int8: Sequence[str] = ()) -> dict[str, str]:
    """Every component's precision: 'int8' for those in ``int8``, else 'float'."""
    return {c: INT8 if c in int8 else FLOAT for c in groups.components}


def counter_for(groups: Groups, precision: Mapping[str, str]) -> ByteCounter:
    """The byte counter of candidates at ``precision``."""
    return ByteCounter(groups, quantized_modules(precision, groups))


def bytes_keep(counter: ByteCounter, flash_budget: int) -> float | None:
    """The share of the prunable bytes ``flash_budget`` leaves (at most 1), or None when even the smallest model is too big."""
    if flash_budget < counter.smallest():
        return None
    return min(1.0, (flash_budget - counter.fixed) / counter.before)


def greedy_order(model: nn.Module, groups: Groups, objective_before: float, measure) -> list[Ranked]:
    """Components ranked by objective lost per byte saved when each alone is int8 in the unpruned model.

    ``measure(model) -> float`` is the objective's mean. Components whose int8 form saves no bytes
    (tiny layers: a scale per output costs as much as the weights save) are left out.
    """
    floats = counter_for(groups, assignment(groups)).weight_bytes()
    ranked = []
    for comp, names in component_linears(groups).items():
        if not names:
            continue
        saved = floats - counter_for(groups, assignment(groups, [comp])).weight_bytes()
        if saved <= 0:
            continue
        loss = objective_before - measure(quantize_modules(model, names, groups))
        ranked.append(Ranked(comp, float(loss) if math.isfinite(loss) else math.inf, int(saved)))
    order = {c: i for i, c in enumerate(groups.components)}
    ranked.sort(key=lambda r: (r.cost, order[r.component]))  # stable, ties in component order: same seed, same ranking
    return ranked
