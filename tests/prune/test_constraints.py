"""prune/constraints.py and its use in prune(): each failed constraint named with its numbers, stability modes, fine-tune re-check."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from prune import PruneError, Rules, find_groups, prune


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture
def edgy_radius(four_layer):
    """radius_check: 0.99 for the unpruned model (margin 0.01), 1.003 for any pruned one: only stability can fail."""
    full = params(four_layer)
    return lambda model: 0.99 if params(model) == full else 1.003


def test_rules_bound_the_radius_by_mode():
    strict = Rules(0.3, stability="strict", radius_before=0.99)
    relative = Rules(0.3, stability="relative", stability_tolerance=0.02, radius_before=0.99)
    off = Rules(0.3, stability="off", radius_before=0.99)
    assert strict.stability_bound() == 1.0 and not strict.stable_enough(1.0) and strict.stable_enough(0.999)
    assert (
        relative.stability_bound() == pytest.approx(1.01)
        and relative.stable_enough(1.005)
        and not relative.stable_enough(1.02)
    )
    assert relative.stable_enough(0.5)  # a stable candidate always passes, however far below the unpruned radius
    assert off.stability_bound() is None and off.stable_enough(7.0) and off.stable_enough(math.nan)
    assert not strict.stable_enough(math.nan) and not relative.stable_enough(math.nan)
    with pytest.raises(PruneError, match="stability mode must be one of strict, relative, off"):
        Rules(0.3, stability="loose")


def test_stability_failure_is_named_with_both_margins_not_blamed_on_the_budget(
    four_layer, fidelity, states, edgy_radius
):
    g = find_groups(four_layer, states[:2])
    r = prune(four_layer, g, 0.3, fidelity(four_layer), method="uniform", tolerance=0.03, radius_check=edgy_radius)
    assert not r.feasible and not r.search.feasible
    assert r.constraints["stability"].ok is False and r.constraints["budget"].ok and r.constraints["finite"].ok
    why = r.why_infeasible
    assert "stability" in why and "budget:" not in why and "floor" not in why
    assert "spectral radius 1.0030 (margin -0.0030" in why and "unpruned radius 0.9900 (margin 0.0100)" in why
    assert r.search.failures == {"budget": 0, "finite": 0, "floor": 0, "stability": 1}
    with pytest.raises(PruneError, match="stability: closed loop spectral radius 1.0030"):
        r.require_feasible()
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))  # the infeasible best_seen (NaN) is null
    assert json.loads(json.dumps(r.search.to_dict(), allow_nan=False))["constraints"]["stability"]["ok"] is False
    assert d["feasible"] is False and d["objective_best_seen"] is None and d["stability_mode"] == "strict"
    assert d["constraints"]["stability"] == {
        "ok": False,
        "value": 1.003,
        "bound": 1.0,
        "detail": r.constraints["stability"].detail,
    }
    assert d["radius_before"] == 0.99 and d["radius_after"] == 1.003 and d["why_infeasible"] == why


@pytest.mark.parametrize(
    ("mode", "tolerance", "feasible"), [("relative", 0.02, True), ("relative", 0.005, False), ("off", 0.01, True)]
)
def test_relative_and_off_modes_admit_what_strict_refuses(
    four_layer, fidelity, states, edgy_radius, mode, tolerance, feasible
):
    g = find_groups(four_layer, states[:2])
    r = prune(
        four_layer,
        g,
        0.3,
        fidelity(four_layer),
        method="uniform",
        tolerance=0.03,
        radius_check=edgy_radius,
        stability=mode,
        stability_tolerance=tolerance,
    )
    assert r.feasible is feasible and r.search.stability == mode
    assert r.constraints["stability"].value == pytest.approx(1.003)  # measured and reported in every mode
    if not feasible:
        assert "relative: must be < 1 or <= unpruned + 0.005" in r.why_infeasible


def test_floor_failure_is_named_with_the_objective_and_the_floor(four_layer, fidelity, states):
    g = find_groups(four_layer, states[:2])
    r = prune(four_layer, g, 0.3, fidelity(four_layer), method="gd", tolerance=0.03, floor=0.0, max_evaluations=8)
    assert not r.feasible
    assert "floor: objective" in r.why_infeasible and "below the floor 0.0" in r.why_infeasible
    assert "stability" not in r.why_infeasible and "budget:" not in r.why_infeasible.split("candidates failing")[0]
    assert r.search.failures["floor"] == r.search.evaluations and r.constraints["floor"].bound == 0.0


def test_budget_failure_is_named_with_the_fraction_and_the_band(four_layer, fidelity, states):
    g = find_groups(four_layer, states[:2])
    r = prune(
        four_layer, g, 0.3, fidelity(four_layer), method="uniform", tolerance=0.0
    )  # no unit count hits 0.3 exactly
    assert not r.feasible and r.constraints["budget"].bound == [0.3, 0.3]
    assert (
        f"budget: keeps {r.search.keep_fraction:.4f} of prunable parameters, budget [0.3000, 0.3]" in r.why_infeasible
    )
    assert "floor" not in r.why_infeasible and "stability" not in r.why_infeasible


def first_linear(model: nn.Module) -> nn.Linear:
    return next(m for m in model.modules() if isinstance(m, nn.Linear))


def copies_teacher_rows(teacher: nn.Sequential):
    """radius_check: 0.5 while the first layer's rows are rows of the teacher (as surgery copies them), 1.5 once distillation moved them."""

    reference = first_linear(teacher).weight

    def radius(model: nn.Module) -> float:
        rows = first_linear(model).weight
        return 0.5 if all(any(torch.equal(r, t) for t in reference) for r in rows) else 1.5

    return radius


def test_a_finetune_that_breaks_stability_is_not_kept_and_the_result_says_so(four_layer, fidelity, states):
    g = find_groups(four_layer, states[:2])
    kw = dict(method="uniform", metric="l2", tolerance=0.03, seed=1)
    r = prune(
        four_layer,
        g,
        0.3,
        fidelity(four_layer),
        radius_check=copies_teacher_rows(four_layer),
        finetune=lambda m: states,
        **kw,
    )
    plain = prune(four_layer, g, 0.3, fidelity(four_layer), **kw)
    assert r.finetune is not None and r.finetune_kept is False and not r.finetune.kept
    assert r.finetune.objective_after > r.finetune.objective_before  # distilling did help the objective ...
    assert r.finetune.constraints["stability"]["ok"] is False  # ... but left the closed loop unstable
    assert (
        "stability: closed loop spectral radius 1.5000" in r.finetune.why_not_kept
        and "objective" not in r.finetune.why_not_kept
    )
    assert r.feasible and r.constraints["stability"].value == 0.5 and r.objective_after == r.search.objective
    assert all(torch.equal(a, b) for a, b in zip(r.model.state_dict().values(), plain.model.state_dict().values()))
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["finetune_kept"] is False and d["feasible"] is True and d["radius_after"] == 0.5
    assert d["finetune"]["constraints"]["stability"]["value"] == 1.5


def test_a_finetune_that_meets_every_constraint_is_kept_and_rejudged(four_layer, fidelity, states):
    g = find_groups(four_layer, states[:2])
    r = prune(
        four_layer,
        g,
        0.3,
        fidelity(four_layer),
        method="uniform",
        metric="l2",
        tolerance=0.03,
        seed=1,
        radius_check=lambda model: 0.5,
        floor=-1.0,
        finetune=lambda m: states,
    )
    assert r.finetune_kept is True and r.finetune is not None and r.finetune.why_not_kept == ""
    assert r.objective_after > r.search.objective and r.constraints["floor"].value == r.objective_after
    assert r.feasible and set(r.constraints) == {"budget", "finite", "floor", "stability"}
