"""Coefficient search on a cheap synthetic objective, importance metrics, stability, fine-tuning and saving."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from prune import (
    PruneError,
    find_groups,
    load_program,
    load_state_dict,
    prune,
    register_metric,
    save_pruned,
    score,
    stability,
)
from prune.importance import METRICS
from prune.search import Problem, run_search

torch.set_num_threads(1)


def four_layer(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(3, 16),
        nn.Tanh(),
        nn.Linear(16, 16),
        nn.Tanh(),
        nn.Linear(16, 16),
        nn.Tanh(),
        nn.Linear(16, 16),
        nn.Tanh(),
        nn.Linear(16, 1),
    ).eval()


X = torch.randn(256, 3, generator=torch.Generator().manual_seed(0))


def fidelity(teacher):
    """Objective: minus the output error against the unpruned model (higher is better)."""
    with torch.no_grad():
        y = teacher(X)

    def objective(m):
        with torch.no_grad():
            return -float((m(X) - y).pow(2).mean())

    return objective


def test_grid_finds_the_best_feasible_point_and_gd_matches_it_with_fewer_evaluations():
    m = four_layer()
    g = find_groups(m, X[:2])
    scores = score(m, g, "l2")
    grid = run_search(Problem(m, g, scores, fidelity(m), keep=0.3, tolerance=0.02), "grid", resolution=0.25)
    uniform = run_search(Problem(m, g, scores, fidelity(m), keep=0.3, tolerance=0.02), "uniform")
    gd = run_search(Problem(m, g, scores, fidelity(m), keep=0.3, tolerance=0.02), "gd", max_evaluations=40)
    for r in (grid, uniform, gd):
        assert r.feasible and 0.28 <= r.keep_fraction <= 0.3
    assert grid.objective >= uniform.objective
    assert gd.objective >= uniform.objective
    assert gd.evaluations <= 40 and uniform.evaluations == 1
    assert len(grid.history) == grid.evaluations and grid.history[-1] == grid.objective


def test_gd_budget_is_met_by_projection_at_every_budget():
    m = four_layer()
    g = find_groups(m, X[:2])
    for keep in (0.5, 0.1, 0.05):
        r = run_search(
            Problem(m, g, score(m, g, "l1"), fidelity(m), keep=keep, tolerance=0.01),
            "gd",
            max_evaluations=12,
            gradient="spsa",
        )
        assert r.keep_fraction <= keep + 1e-12 and r.keep_fraction >= keep - 0.01


def test_infeasible_budget_and_unknown_method_are_errors():
    m = four_layer()
    g = find_groups(m, X[:2])
    p = Problem(m, g, score(m, g, "l1"), fidelity(m), keep=0.001)
    with pytest.raises(PruneError, match="below the smallest model"):
        run_search(p, "gd")
    with pytest.raises(PruneError, match="unknown search method"):
        run_search(p, "annealing")
    with pytest.raises(PruneError, match="keep must be a fraction"):
        Problem(m, g, score(m, g, "l1"), fidelity(m), keep=1.5)


def test_floor_and_stability_constraints_make_candidates_infeasible():
    m = four_layer()
    g = find_groups(m, X[:2])
    r = run_search(Problem(m, g, score(m, g, "l1"), fidelity(m), keep=0.2, floor=0.0), "uniform")
    assert not r.feasible  # fidelity is negative, the floor 0 cannot be met
    r = run_search(Problem(m, g, score(m, g, "l1"), fidelity(m), keep=0.2, radius_check=lambda model: 1.5), "uniform")
    assert not r.feasible and r.radius == 1.5


def test_global_ranking_meets_the_budget():
    m = four_layer()
    g = find_groups(m, X[:2])
    r = run_search(Problem(m, g, score(m, g, "l1"), fidelity(m), keep=0.25, tolerance=0.03), "global")
    assert 0.22 <= r.keep_fraction <= 0.25 and r.feasible


def test_metrics_rank_units_and_random_is_seeded_and_registry_is_open():
    m = four_layer()
    g = find_groups(m, X[:2])
    a, b, c = score(m, g, "random", seed=1), score(m, g, "random", seed=1), score(m, g, "random", seed=2)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["0"], c["0"])
    with torch.no_grad():
        m[0].weight[3] *= 100  # unit 3 of the first group becomes the biggest
    assert int(score(m, g, "l1")["0"].argmax()) == 3 and int(score(m, g, "l2")["0"].argmax()) == 3
    act = score(m, g, "activation", states=X)
    assert all(v.shape == (16,) and (v >= 0).all() for v in act.values())
    with pytest.raises(PruneError, match="needs states"):
        score(m, g, "contribution")
    with pytest.raises(PruneError, match="unknown importance metric"):
        score(m, g, "taylor9")

    @register_metric("first_unit")
    def first_unit(model, groups, ctx):
        return {grp.name: torch.arange(grp.size, 0, -1).double() for grp in groups.groups}

    try:
        assert int(score(m, g, "first_unit")["2"].argmax()) == 0
    finally:
        METRICS.pop("first_unit")


def test_stability_of_a_known_linear_closed_loop():
    # x' = A x + B u with u = K x: closed loop A + B K = [[0.5, 0.1], [0, 0.8]] -> radius 0.8
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, -0.2]]))
    a = torch.tensor([[0.5, 0.1], [0.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[0.0], [1.0]], dtype=torch.float64)

    def step(x, model):
        return x @ a.T + model(x.float()).double() @ b.T

    s = stability(step, lin, torch.zeros(2))
    assert s.radius == pytest.approx(0.8, abs=1e-6) and s.stable and s.margin == pytest.approx(0.2, abs=1e-6)


def test_distillation_reduces_the_gap_to_the_teacher_and_is_seeded():
    teacher = four_layer()
    g = find_groups(teacher, X[:2])

    def run():
        r = prune(teacher, g, 0.2, fidelity(teacher), method="uniform", metric="l1", finetune=lambda model: X, seed=3)
        return r

    r1, r2 = run(), run()
    assert r1.finetune.loss_after < r1.finetune.loss_before
    assert r1.objective_after > r1.search.objective
    assert r1.objective_after == r2.objective_after


def test_prune_result_reports_the_public_fields():
    m = four_layer()
    g = find_groups(m, X[:2])
    r = prune(m, g, 0.5, fidelity(m), method="gd", max_evaluations=10)
    d = r.to_dict()
    for key in (
        "params_before",
        "params_after",
        "objective_before",
        "objective_after",
        "evaluations",
        "seconds",
        "coefficients",
        "widths",
    ):
        assert key in d
    assert d["params_after"] == sum(p.numel() for p in r.model.parameters())
    assert set(d["coefficients"]) == set(g.names)
    json.dumps(d)


def test_saved_pruned_model_loads_without_its_class_and_with_weights_only(tmp_path):
    m = four_layer()
    g = find_groups(m, X[:2])
    r = prune(m, g, 0.3, fidelity(m), method="uniform")
    saved = save_pruned(r.model, X[:2], tmp_path / "small.pt", r.widths)
    program = load_program(saved.program)
    assert torch.allclose(program(X[:7]), r.model(X[:7]), atol=1e-6)  # batch size differs from the example
    state = load_state_dict(saved.state_dict)
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in r.model.state_dict().items()}
    widths = json.loads(open(saved.widths).read())["widths"]
    assert widths["2"]["in"] == r.model[2].in_features
    assert not list(tmp_path.glob(".prune-*"))  # the temp dir is gone
    with pytest.raises(PruneError, match="no such file"):
        load_program(tmp_path / "missing.pt2")


def test_reconstruction_recovers_a_removed_unit_that_duplicates_a_kept_one():
    from prune import reconstruct, shrink

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 1)).eval()
    with torch.no_grad():  # unit 5 repeats unit 2: removing it loses nothing a re-fit cannot restore
        m[0].weight[5], m[0].bias[5] = m[0].weight[2], m[0].bias[2]
    g = find_groups(m, X[:2])
    keep = {"0": torch.tensor([0, 1, 2, 3, 4]), "2": torch.arange(4)}
    plain = shrink(m, g, keep)
    fitted = shrink(m, g, keep)
    reconstruct(m, fitted, g, keep, X, ridge=1e-9)
    with torch.no_grad():
        assert (plain(X) - m(X)).abs().max() > 1e-2
        assert torch.allclose(fitted(X), m(X), atol=1e-5)


def test_reconstruct_without_states_is_an_error():
    m = four_layer()
    g = find_groups(m, X[:2])
    with pytest.raises(PruneError, match="needs states"):
        prune(m, g, 0.5, fidelity(m), method="uniform", reconstruct=True)
    r = prune(m, g, 0.3, fidelity(m), method="uniform", reconstruct=True, states=X)
    plain = prune(m, g, 0.3, fidelity(m), method="uniform", states=X)
    assert r.reconstructed and r.objective_after > plain.objective_after


def test_grid_points_are_snapped_onto_the_budget_distinct_and_include_the_uniform_point():
    from prune.search import grid_points

    m = four_layer()
    g = find_groups(m, X[:2])
    p = Problem(m, g, score(m, g, "l2"), fidelity(m), keep=0.3, tolerance=0.03)
    points = grid_points(p, resolution=0.5)
    keys = [tuple(k.values()) for k in points]
    assert len(keys) == len(set(keys)) > 1
    assert all(0.27 <= p.counter.fraction(k) <= 0.3 for k in points)
    uniform = p.kept_of(p.project(np.zeros(len(p.components))))
    assert tuple(uniform.values()) in keys
    r = run_search(p, "grid", resolution=0.5)
    assert r.evaluations == len(points) and r.feasible


def test_auto_metric_starts_gd_at_the_best_uniform_point_and_counts_those_evaluations():
    m = four_layer()
    g = find_groups(m, X[:2])
    r = prune(m, g, 0.3, fidelity(m), method="gd", metric="auto", states=X, max_evaluations=15, tolerance=0.03)
    assert set(r.search.metric_trials) == {"l1", "l2", "random", "activation", "contribution"}
    assert r.metric == max(r.search.metric_trials, key=r.search.metric_trials.get)
    assert r.search.objective >= max(r.search.metric_trials.values())
    for metric in ("l1", "l2", "random"):
        baseline = prune(m, g, 0.3, fidelity(m), method="uniform", metric=metric, states=X, tolerance=0.03)
        assert baseline.search.feasible and r.search.objective >= baseline.search.objective
    assert 5 <= r.search.evaluations <= 15
    assert r.to_dict()["metric_trials"] == r.search.metric_trials


def test_finetune_that_lowers_the_objective_is_undone():
    teacher = four_layer()
    g = find_groups(teacher, X[:2])
    calls = []

    def worse_every_call(model):  # each call scores lower: the fine-tuned model always loses
        calls.append(1)
        return -float(len(calls))

    r = prune(teacher, g, 0.3, worse_every_call, method="uniform", metric="l2", finetune=lambda model: X, seed=1)
    plain = prune(teacher, g, 0.3, fidelity(teacher), method="uniform", metric="l2")
    assert r.finetune is not None and not r.finetune.kept and r.objective_after == r.search.objective
    assert all(torch.equal(a, b) for a, b in zip(r.model.state_dict().values(), plain.model.state_dict().values()))


def test_a_candidate_must_beat_the_start_by_two_standard_errors_to_be_selected():
    m = four_layer()
    g = find_groups(m, X[:2])
    shift = {}

    def per_episode(model):  # 64 episodes; scores depend on the widths only, with per-episode noise
        widths = tuple(model[i].out_features for i in (0, 2, 4, 6))
        rng = np.random.default_rng(abs(hash(widths)) % 2**32)
        return shift.get(widths, 0.0) + rng.normal(0.0, 1.0, 64)

    p = Problem(m, g, score(m, g, "l2"), per_episode, keep=0.3, tolerance=0.03)
    r = run_search(p, "grid", resolution=0.5)
    start = next(iter(p.cache.values()))
    assert r.kept == start.kept and r.best_seen >= r.objective  # noise alone never displaces the uniform start
    far = [c for c in p.cache.values() if c.kept != start.kept][0]
    shift[tuple(far.kept.values())] = 5.0  # a real improvement of five noise standard deviations
    r = run_search(Problem(m, g, score(m, g, "l2"), per_episode, keep=0.3, tolerance=0.03), "grid", resolution=0.5)
    assert r.kept == far.kept and r.objective == r.best_seen
    with pytest.raises(PruneError, match="per-episode scores"):
        run_search(
            Problem(m, g, score(m, g, "l2"), lambda model: np.zeros((2, 2)), keep=0.3, tolerance=0.03), "uniform"
        )


def test_with_nothing_feasible_the_best_infeasible_candidate_is_reported_as_such():
    m = four_layer()
    g = find_groups(m, X[:2])
    p = Problem(m, g, score(m, g, "l2"), fidelity(m), keep=0.3, tolerance=0.03, radius_check=lambda model: 1.5)
    r = run_search(p, "gd", max_evaluations=12)
    assert not r.feasible and r.evaluations > 1
    assert r.objective == max(c.objective for c in p.cache.values())
