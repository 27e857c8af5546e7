"""prune/finetune.py: distilling a pruned student toward its teacher on the states the closed loop visits."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from prune import PruneError, distill, find_groups, keep_indices, score, shrink


@pytest.fixture
def visit(states):
    """visit(model): 64 starts rolled three steps through a toy closed loop driven by ``model`` (256 states)."""
    starts = states[:64]

    def roll(model: nn.Module) -> torch.Tensor:
        x, seen = starts, [starts]
        for _ in range(3):
            x = torch.tanh(x + 0.5 * model(x))
            seen.append(x)
        return torch.cat(seen)

    return roll


@pytest.fixture
def teacher_and_student(tanh_mlp, states):
    teacher = tanh_mlp(16, 16)
    g = find_groups(teacher, states[:2])
    return teacher, shrink(teacher, g, keep_indices(score(teacher, g, "l1"), {"0": 4, "2": 4}))


def gap(student: nn.Module, teacher: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(nn.functional.mse_loss(student(x), teacher(x)))


def test_distill_brings_the_student_closer_to_the_teacher_on_the_teachers_states(teacher_and_student, visit):
    teacher, student = teacher_and_student
    teacher_weights = {k: v.clone() for k, v in teacher.state_dict().items()}
    with torch.no_grad():
        on_teacher = visit(teacher)
    before = gap(student, teacher, on_teacher)
    report = distill(student, teacher, visit, rounds=2, steps=150, seed=0)
    assert gap(student, teacher, on_teacher) < 0.5 * before
    assert report.loss_after < report.loss_before
    assert all(torch.equal(v, teacher_weights[k]) for k, v in teacher.state_dict().items())  # only the student learns
    assert not student.training


def test_the_report_counts_rounds_steps_and_states_and_serialises(teacher_and_student, visit):
    teacher, student = teacher_and_student
    report = distill(student, teacher, visit, rounds=3, steps=20, seed=5)
    assert (report.rounds, report.steps, report.seed) == (3, 60, 5)
    assert report.states == 256 * (1 + 3)  # the teacher's rollout once, the student's every round
    assert report.seconds > 0 and report.kept and report.objective_before is None
    d = json.loads(json.dumps(report.to_dict()))
    assert d["loss_before"] == report.loss_before and set(d) >= {"rounds", "steps", "loss_after", "states", "seconds"}


def test_distill_is_seeded(teacher_and_student, visit):
    teacher, student = teacher_and_student
    copies = [copy.deepcopy(student) for _ in range(3)]
    for model, seed in zip(copies, (1, 1, 2)):
        distill(model, teacher, visit, rounds=1, steps=30, batch=64, seed=seed)
    a, b, c = (torch.cat([p.flatten() for p in m.parameters()]) for m in copies)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("kwargs", [{"rounds": 0}, {"steps": 0}, {"batch": 0}])
def test_distill_refuses_empty_training(teacher_and_student, visit, kwargs):
    teacher, student = teacher_and_student
    with pytest.raises(PruneError, match="finetune needs rounds, steps and batch >= 1"):
        distill(student, teacher, visit, **kwargs)
