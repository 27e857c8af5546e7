"""Optional fine-tuning: distil the pruned controller toward the unpruned one on visited states.

States come from a caller's ``visit(model) -> states`` (the closed loop run with that model), so
prune/ stays free of any plant. Each round collects the states both the teacher and the current
student visit (the student's own mistakes are where it needs the teacher's answer, as in DAgger),
then regresses the student's actions on the teacher's with Adam. Seeded; a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from prune.errors import PruneError
from prune.jsonable import jsonable
from prune.modes import set_mode

Visit = Callable[[nn.Module], torch.Tensor]


@dataclass
class FinetuneReport:
    """What the distillation did: rounds, steps, loss before and after, states seen, time, seed."""

    rounds: int
    steps: int
    loss_before: float
    loss_after: float
    states: int
    seconds: float
    seed: int
    objective_before: float | None = None  # set by prune(): the search objective before and after distilling
    objective_after: float | None = None
    kept: bool = True  # False when distilling lowered the objective or broke a constraint and prune() restored the searched weights
    constraints: dict[str, dict] | None = None  # set by prune(): every constraint re-judged on the distilled weights
    why_not_kept: str = ""  # set by prune(): what the distilled weights failed (empty when kept)

    def to_dict(self) -> dict:
        """All fields as JSON-ready values (non-finite numbers as None)."""
        return jsonable(asdict(self))


def distill(
    student: nn.Module,
    teacher: nn.Module,
    visit: Visit,
    rounds: int = 3,
    steps: int = 300,
    lr: float = 2e-3,
    batch: int = 1024,
    seed: int = 0,
) -> FinetuneReport:
    """Train ``student`` in place to output what ``teacher`` outputs on closed-loop states."""
    if rounds < 1 or steps < 1 or batch < 1:
        raise PruneError(f"finetune needs rounds, steps and batch >= 1, got {rounds}, {steps}, {batch}")
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(int(seed))
    set_mode(teacher, False)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    pool: list[torch.Tensor] = []
    loss_before = loss_after = float("nan")
    for r in range(rounds):
        set_mode(student, False)
        with torch.no_grad():
            if r == 0:
                pool.append(visit(teacher).detach().float())
            pool.append(visit(student).detach().float())
        states = torch.cat(pool)
        with torch.no_grad():
            target = teacher(states)
            if r == 0:
                loss_before = float(nn.functional.mse_loss(student(states), target))
        set_mode(student, True)
        for _ in range(steps):
            idx = torch.randint(len(states), (min(batch, len(states)),), generator=gen)
            loss = nn.functional.mse_loss(student(states[idx]), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        set_mode(student, False)
        with torch.no_grad():
            loss_after = float(nn.functional.mse_loss(student(states), target))
    return FinetuneReport(
        rounds,
        rounds * steps,
        loss_before,
        loss_after,
        int(sum(len(p) for p in pool)),
        time.perf_counter() - start,
        int(seed),
    )
