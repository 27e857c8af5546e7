"""A search objective whose batches fan out over an executor: what prune's ``objective.batch(models)`` calls.

prune hands every batch of candidates (grid chunks, gd's probe pairs and restarts, a CMA-ES or TPE
population) to ``objective.batch(models)`` when the objective offers it (see :mod:`prune.problem`);
:func:`batched` gives any objective that form, each model evaluated by the executor. A single call
``objective(model)`` stays in this process: one candidate is not worth a round trip. The scores are
the objective's own (its seeds travel inside it, the torch thread count with it), so a search takes
the same path and returns the same model whichever executor ran it. Other process-wide numeric
settings (``torch.set_flush_denormal``, the default dtype) do not travel: an objective that depends
on them sets them itself when it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tools.scale.executor import Executor

Objective = Callable[[nn.Module], Any]  # a number or one score per episode, as prune takes it


@dataclass
class Evaluation:
    """One candidate's score, computed wherever the executor runs it: no grad, the caller's torch thread count."""

    objective: Objective
    threads: int

    def __call__(self, model: nn.Module) -> Any:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # float sums in the same order as in the caller
        with torch.no_grad():
            return self.objective(model)


@dataclass
class BatchedObjective:
    """``objective`` with a ``batch(models)`` that maps over ``executor``; ``models_sent`` counts what went to it."""

    objective: Objective
    executor: Executor
    models_sent: int = field(default=0)

    def __call__(self, model: nn.Module) -> Any:
        return self.objective(model)

    def batch(self, models: Sequence[nn.Module]) -> list[Any]:
        """Scores of ``models`` in order, each computed by the executor."""
        models = list(models)
        self.models_sent += len(models)
        return self.executor.map(Evaluation(self.objective, torch.get_num_threads()), models)


def batched(objective: Objective, executor: Executor) -> BatchedObjective:
    """``objective`` with a batch form that evaluates each batch of candidates on ``executor``."""
    return BatchedObjective(objective, executor)
