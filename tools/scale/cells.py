"""Bench cells across an executor: one cell is one method x budget x seed x target of a sweep.

A cell carries everything its result depends on (its seed included), so a sweep's table is the
same whether the cells ran one after the other here or side by side on a cluster; results come
back in the order of the cells.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Any, TypeVar

from tools.scale.executor import Executor, LocalExecutor

R = TypeVar("R")


@dataclass(frozen=True)
class Cell:
    """One cell of a sweep: method, budget (fraction kept), seed, target, and any further options of the run."""

    method: str
    keep: float
    seed: int = 0
    target: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {**asdict(self), "options": dict(self.options)}


def sweep(
    methods: Iterable[str],
    keeps: Iterable[float],
    seeds: Iterable[int] = (0,),
    targets: Iterable[str] = ("",),
    **options: Any,
) -> list[Cell]:
    """Every method x budget x seed x target, in that nesting order (the order a table lists them)."""
    return [Cell(m, k, s, t, dict(options)) for m, k, s, t in product(methods, keeps, seeds, targets)]


def run_cells(run_cell: Callable[[Cell], R], cells: Sequence[Cell], executor: Executor | None = None) -> list[R]:
    """``run_cell`` on every cell through ``executor`` (default: here, one after the other); results in cell order."""
    return (executor or LocalExecutor()).map(run_cell, list(cells))
