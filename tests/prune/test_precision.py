"""Precision as a searched choice (prune(..., precision=, flash_budget=)): int8 re-judged, auto under a flash budget."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from prune import Int8Linear, PruneError, bytes_footprint, find_groups, prune, prune_budgets, quantize
from prune.budget import ByteCounter
from prune.quantize import quantized_modules


def quantized(model: nn.Module) -> list[str]:
    """Names of the Int8Linear modules of ``model``."""
    return [n for n, m in model.named_modules() if isinstance(m, Int8Linear)]


@pytest.fixture
def wide(tanh_mlp) -> nn.Sequential:
    """A seeded 3-64-64-1 tanh MLP: components '0' (first layer) and '2' (second and output layers)."""
    return tanh_mlp(64, 64)


def test_int8_quantizes_every_component_and_reports_the_quantized_objective(wide, states, fidelity):
    groups = find_groups(wide, states[:2])
    objective = fidelity(wide)
    r = prune(wide, groups, 0.5, objective, method="gd", seed=0, max_evaluations=12, tolerance=0.03, precision="int8")
    assert quantized(r.model) == ["0", "2", "4"]
    assert r.precision == {"0": "int8", "2": "int8"}
    assert r.objective_after == objective(r.model)  # measured again on what is deployed
    assert r.objective_after != r.search.objective  # the search judged float candidates
    assert r.weight_bytes == bytes_footprint(r.model) < r.after.bytes
    d = r.to_dict()
    assert d["precision"] == {"0": "int8", "2": "int8"} and d["weight_bytes"] == r.weight_bytes
    assert d["objective_after"] == r.objective_after and d["objective_searched"] == r.search.objective


def test_int8_judges_every_constraint_again_on_the_quantized_model(wide, states, fidelity):
    groups = find_groups(wide, states[:2])
    radius = lambda m: 1.5 if quantized(m) else 0.5  # noqa: E731 - stable in float, not once quantized
    r = prune(
        wide, groups, 0.5, fidelity(wide), method="uniform", radius_check=radius, tolerance=0.03, precision="int8"
    )
    assert r.search.feasible
    assert not r.feasible
    assert r.constraints["stability"].value == 1.5
    assert "stability" in r.why_infeasible
    with pytest.raises(PruneError, match="stability"):
        r.require_feasible()


def test_auto_quantizes_where_it_costs_least_and_meets_the_flash_budget(wide, states, fidelity):
    groups = find_groups(wide, states[:2])
    base = fidelity(wide)

    def objective(m: nn.Module) -> float:  # int8 in the first layer costs a lot, elsewhere almost nothing
        return base(m) - (1.0 if isinstance(m.get_submodule("0"), Int8Linear) else 0.0)

    r = prune(
        wide,
        groups,
        None,
        objective,
        method="gd",
        seed=0,
        max_evaluations=12,
        tolerance=0.03,
        precision="auto",
        flash_budget=6000,
    )
    assert r.precision == {"0": "float", "2": "int8"}
    assert quantized(r.model) == ["2", "4"]
    assert r.feasible and r.constraints["flash"].ok
    assert r.weight_bytes == bytes_footprint(r.model) <= 6000
    ranking = r.to_dict()["precision_search"]["ranking"]
    assert [x["component"] for x in ranking] == ["2", "0"]
    assert ranking[1]["loss"] > 0.9 and ranking[0]["loss"] < 1e-3
    assert r.objective_after == objective(r.model) > -1e-3  # the searched objective is the quantized model's
    # float alone reaches 6000 bytes only by pruning (worse); 2 in int8 fits unpruned, so no further assignment is tried
    trials = r.to_dict()["precision_search"]["trials"]
    assert [t["precision"] for t in trials] == [{"0": "float", "2": "float"}, {"0": "float", "2": "int8"}]
    assert trials[0]["weight_bytes"] <= 6000 and trials[0]["objective"] < trials[1]["objective"]


def test_auto_with_a_keep_budget_judges_flash_as_a_constraint(wide, states, fidelity):
    groups = find_groups(wide, states[:2])
    r = prune(wide, groups, 0.5, fidelity(wide), method="uniform", tolerance=0.03, precision="auto", flash_budget=4000)
    trials = r.to_dict()["precision_search"]["trials"]
    assert (
        trials[0]["precision"] == {"0": "float", "2": "float"} and not trials[0]["feasible"]
    )  # 0.5 of 17924 bytes > 4000
    assert r.feasible and r.weight_bytes == bytes_footprint(r.model) <= 4000
    assert r.precision["2"] == "int8"
    assert r.constraints["flash"].bound == 4000


def test_an_impossible_flash_budget_is_refused_naming_it_and_the_smallest_size(wide, states, fidelity):
    groups = find_groups(wide, states[:2])
    # one unit per group, all int8: 3*1 + 4 + 4, then 1 + 4 + 4 twice
    assert ByteCounter(groups, quantized_modules({"0": "int8", "2": "int8"}, groups)).smallest() == 29
    with pytest.raises(PruneError, match=r"flash_budget=28 bytes .* smallest reachable size, 29 bytes"):
        prune(wide, groups, None, fidelity(wide), precision="auto", flash_budget=28)
    with pytest.raises(
        PruneError, match=r"flash_budget=31 bytes .* smallest reachable size, 32 bytes"
    ):  # float: 4 * (3+1 + 1+1 + 1+1)
        prune(wide, groups, None, fidelity(wide), precision="off", flash_budget=31)


def test_bytes_only_budget_in_float_fits_the_flash_budget(wide, states, fidelity):
    groups = find_groups(wide, states[:2])
    r = prune(
        wide, groups, None, fidelity(wide), method="gd", seed=1, max_evaluations=10, tolerance=0.05, flash_budget=9000
    )
    assert r.precision == {"0": "float", "2": "float"} and not quantized(r.model)
    assert r.feasible and r.weight_bytes == bytes_footprint(r.model) <= 9000
    assert "prunable weight bytes" in r.constraints["budget"].detail


def test_options_are_checked_at_the_door(wide, states, fidelity):
    groups = find_groups(wide, states[:2])
    objective = fidelity(wide)
    with pytest.raises(PruneError, match="precision must be one of off, int8, auto"):
        prune(wide, groups, 0.5, objective, precision="fp16")
    with pytest.raises(PruneError, match="precision='auto' .* give flash_budget"):
        prune(wide, groups, 0.5, objective, precision="auto")
    with pytest.raises(PruneError, match="keep=None .* give flash_budget"):
        prune(wide, groups, None, objective)
    with pytest.raises(PruneError, match="flash_budget must be a positive number of bytes"):
        prune(wide, groups, 0.5, objective, flash_budget=-3)


def test_same_seed_gives_the_same_auto_result(wide, states, fidelity):
    groups = find_groups(wide, states[:2])
    runs = [
        prune(
            wide,
            groups,
            None,
            fidelity(wide),
            method="cmaes",
            seed=4,
            max_evaluations=10,
            tolerance=0.05,
            precision="auto",
            flash_budget=3000,
        ).to_dict()
        for _ in range(2)
    ]
    for d in runs:
        d.pop("seconds")
    assert runs[0] == runs[1]
    assert runs[0]["weight_bytes"] <= 3000


def test_precision_off_leaves_the_result_as_it_was(tanh_mlp, states, fidelity):
    model = tanh_mlp()
    groups = find_groups(model, states[:2])
    plain = prune(model, groups, 0.4, fidelity(model), seed=2, max_evaluations=10).to_dict()
    off = prune(model, groups, 0.4, fidelity(model), seed=2, max_evaluations=10, precision="off").to_dict()
    for d in (plain, off):
        d.pop("seconds")
    assert plain == off
    assert not {"precision", "weight_bytes", "flash_budget", "precision_search"} & set(off)


def test_budgets_pass_precision_on(wide, states, fidelity):
    groups = find_groups(wide, states[:2])
    rs = prune_budgets(wide, groups, [0.5, 0.3], fidelity(wide), method="uniform", tolerance=0.03, precision="int8")
    assert all(quantized(r.model) == ["0", "2", "4"] for r in rs)
    assert rs[1].weight_bytes < rs[0].weight_bytes


def test_a_quantized_result_is_a_quantize_of_the_float_shape(wide, states, fidelity):
    groups = find_groups(wide, states[:2])
    r = prune(wide, groups, 0.5, fidelity(wide), method="uniform", tolerance=0.03, precision="int8")
    float_twin = prune(wide, groups, 0.5, fidelity(wide), method="uniform", tolerance=0.03)
    with torch.no_grad():
        assert torch.equal(r.model(states), quantize(float_twin.model)(states))
    assert r.widths == float_twin.widths


def test_auto_gives_the_same_result_through_a_batch_objective_of_pickled_candidates(wide, states, fidelity):
    groups = find_groups(wide, states[:2])
    one = fidelity(wide)

    class Batched:
        def __call__(self, m: nn.Module) -> float:
            return one(m)

        def batch(self, models: list[nn.Module]) -> list[float]:
            return [one(pickle.loads(pickle.dumps(m))) for m in models]  # as a worker in another process would get them

    runs = [
        prune(
            wide,
            groups,
            None,
            f,
            method="gd",
            seed=3,
            max_evaluations=8,
            tolerance=0.05,
            precision="auto",
            flash_budget=3000,
        ).to_dict()
        for f in (one, Batched())
    ]
    for d in runs:
        d.pop("seconds")
    assert runs[0] == runs[1]


def test_an_exported_module_prunes_and_quantizes_like_the_module_it_came_from(wide, states, fidelity):
    exported = torch.export.export(wide, (states,)).module()  # exported for the batch the objective runs
    groups = find_groups(exported, states)
    one = fidelity(wide)

    class Batched:
        def __call__(self, m: nn.Module) -> float:
            return one(m)

        def batch(self, models: list[nn.Module]) -> list[float]:
            return [
                one(pickle.loads(pickle.dumps(m))) for m in models
            ]  # candidates handed over as portable() makes them

    graph = prune(
        exported,
        groups,
        None,
        Batched(),
        method="gd",
        seed=3,
        max_evaluations=8,
        tolerance=0.05,
        precision="auto",
        flash_budget=3000,
    ).to_dict()
    plain = prune(
        wide,
        find_groups(wide, states[:2]),
        None,
        one,
        method="gd",
        seed=3,
        max_evaluations=8,
        tolerance=0.05,
        precision="auto",
        flash_budget=3000,
    ).to_dict()
    for d in (graph, plain):
        d.pop("seconds")
    assert graph == plain
