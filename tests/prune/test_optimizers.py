"""prune/optimizers.py: CMA-ES and TPE on the shared budgeted problem (cache, counter, projection, constraints, guard)."""

from __future__ import annotations

import numpy as np
import pytest

from prune import find_groups, prune, score
from prune.search import Problem, run_search

LIBRARY_METHODS = ("cmaes", "tpe")


@pytest.mark.parametrize("method", LIBRARY_METHODS)
def test_library_methods_return_a_feasible_point_in_the_band_no_worse_than_uniform(
    four_layer, fidelity, states, method
):
    g = find_groups(four_layer, states[:2])
    uniform = prune(four_layer, g, 0.3, fidelity(four_layer), method="uniform", tolerance=0.02)
    r = prune(four_layer, g, 0.3, fidelity(four_layer), method=method, tolerance=0.02, max_evaluations=30)
    assert r.feasible and 0.28 <= r.search.keep_fraction <= 0.3
    assert r.search.objective >= uniform.search.objective
    assert r.search.evaluations <= 30 and len(r.search.history) == r.search.evaluations
    assert r.search.starts[0].origin == "uniform" and r.search.starts[0].kept == uniform.search.kept


@pytest.mark.parametrize("method", LIBRARY_METHODS)
def test_library_methods_are_seed_deterministic(four_layer, fidelity, states, method):
    g = find_groups(four_layer, states[:2])

    def run(seed):
        log = []
        r = prune(
            four_layer, g, 0.3, fidelity(four_layer, log), method=method, tolerance=0.02, max_evaluations=25, seed=seed
        )
        return r.search.kept, r.search.objective, r.search.history, log

    a, b, c = run(0), run(0), run(1)
    assert a == b
    assert a[3] != c[3]  # another seed proposes other candidates


@pytest.mark.parametrize("method", LIBRARY_METHODS)
def test_library_methods_share_the_constraints_and_explain_failures(four_layer, fidelity, states, method):
    g = find_groups(four_layer, states[:2])
    r = prune(
        four_layer,
        g,
        0.3,
        fidelity(four_layer),
        method=method,
        tolerance=0.02,
        max_evaluations=12,
        radius_check=lambda model: 1.5,
    )
    assert not r.feasible and r.search.evaluations > 1
    assert r.search.failures["stability"] == r.search.evaluations and "stability" in r.why_infeasible


def test_cmaes_hands_a_generation_to_the_objectives_batch_form_with_the_same_scores(four_layer, fidelity, states):
    g = find_groups(four_layer, states[:2])
    one_by_one = fidelity(four_layer)
    sizes = []

    def batched(model):
        return one_by_one(model)

    def batch(models):
        sizes.append(len(models))
        return [one_by_one(m) for m in models]

    batched.batch = batch
    plain = prune(four_layer, g, 0.3, one_by_one, method="cmaes", tolerance=0.02, max_evaluations=30, population=8)
    fast = prune(four_layer, g, 0.3, batched, method="cmaes", tolerance=0.02, max_evaluations=30, population=8)
    assert max(sizes) > 1 and sum(sizes) == fast.search.evaluations
    assert (fast.search.kept, fast.search.objective, fast.search.history) == (
        plain.search.kept,
        plain.search.objective,
        plain.search.history,
    )


@pytest.mark.parametrize("method", LIBRARY_METHODS)
def test_noise_alone_never_displaces_the_uniform_start(four_layer, states, hidden_widths, method):
    g = find_groups(four_layer, states[:2])

    def per_episode(model):  # 64 episodes whose scores depend on the widths only through noise
        rng = np.random.default_rng(abs(hash(hidden_widths(model))) % 2**32)
        return rng.normal(0.0, 1.0, 64)

    p = Problem(four_layer, g, score(four_layer, g, "l2"), per_episode, keep=0.3, tolerance=0.03)
    r = run_search(p, method, max_evaluations=30)
    assert r.kept == next(iter(p.cache.values())).kept and r.best_seen >= r.objective


def test_one_component_leaves_nothing_to_search(tanh_mlp, fidelity, states):
    m = tanh_mlp(16)
    g = find_groups(m, states[:2])
    for method in LIBRARY_METHODS:
        r = prune(m, g, 0.3, fidelity(m), method=method, tolerance=0.05)
        assert r.search.evaluations == 1 and r.feasible


def test_a_population_is_cut_at_max_evaluations(four_layer, fidelity, states):
    g = find_groups(four_layer, states[:2])
    r = prune(
        four_layer, g, 0.3, fidelity(four_layer), method="cmaes", tolerance=0.02, max_evaluations=10, population=12
    )
    assert r.search.evaluations == 10
