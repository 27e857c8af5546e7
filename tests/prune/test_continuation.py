"""prune/continuation.py: budgets solved largest first, each search started from the previous budget's best points."""

from __future__ import annotations

import pytest

from prune import PruneError, find_groups, prune, prune_budgets, score
from prune.search import Problem

KEEPS = [0.5, 0.25, 0.1]


def projected(model, groups, objective, keep, point) -> dict[str, int]:
    """Units kept when ``point`` (coefficients per component) is projected onto budget ``keep``."""
    p = Problem(model, groups, score(model, groups, "l1"), objective, keep=keep, tolerance=0.02)
    return p.kept_of(p.point_of(point))


@pytest.mark.parametrize("method", ["gd", "cmaes", "tpe"])
def test_every_budget_is_no_worse_than_its_uniform_point_and_starts_from_the_previous_best(
    four_layer, fidelity, states, hidden_widths, method
):
    g = find_groups(four_layer, states[:2])
    log = []
    results = prune_budgets(
        four_layer, g, KEEPS, fidelity(four_layer, log), method=method, tolerance=0.02, max_evaluations=20
    )
    assert [r.search.keep for r in results] == KEEPS
    for keep, r in zip(KEEPS, results):
        uniform = prune(four_layer, g, keep, fidelity(four_layer), method="uniform", tolerance=0.02)
        assert r.feasible and keep - 0.02 <= r.search.keep_fraction <= keep
        assert r.search.objective >= uniform.search.objective
    for before, after in zip(results, results[1:]):
        previous = [s for s in after.search.starts if s.origin == "previous"]
        assert len(previous) == len(before.search.best_points) >= 1
        start = projected(four_layer, g, fidelity(four_layer), after.search.keep, before.search.best_points[0])
        assert previous[0].kept == start
        assert after.search.starts[0].origin == "uniform"
    # the evaluation log (prune() first judges the unpruned model, then the search's candidates): right after
    # the second budget's uniform point comes the first budget's best point, projected
    assert log[0] == log[1 + results[0].search.evaluations] == (16, 16, 16, 16)
    second = log[2 + results[0].search.evaluations :]
    first_start = [s for s in results[1].search.starts if s.origin == "previous"][0]
    uniform_widths = second[0]
    assert uniform_widths == tuple(results[1].search.starts[0].kept.values())
    assert tuple(first_start.kept.values()) in second[: 1 + len(results[0].search.best_points)]


def test_budgets_come_back_in_the_callers_order_but_are_solved_largest_first(four_layer, fidelity, states):
    g = find_groups(four_layer, states[:2])
    log = []
    small, large = prune_budgets(
        four_layer, g, [0.1, 0.5], fidelity(four_layer, log), tolerance=0.02, max_evaluations=10
    )
    assert (small.search.keep, large.search.keep) == (0.1, 0.5)
    assert any(s.origin == "previous" for s in small.search.starts) and not any(
        s.origin == "previous" for s in large.search.starts
    )
    assert (
        tuple(large.search.starts[0].kept.values()) == log[1]
    )  # after the unpruned model, the 0.5 budget was judged first


def test_the_grid_ignores_starting_points(four_layer, fidelity, states):
    g = find_groups(four_layer, states[:2])
    chain = prune_budgets(
        four_layer, g, [0.5, 0.25], fidelity(four_layer), method="grid", tolerance=0.03, resolution=0.5
    )
    alone = prune(four_layer, g, 0.25, fidelity(four_layer), method="grid", tolerance=0.03, resolution=0.5)
    assert chain[1].search.kept == alone.search.kept and chain[1].search.evaluations == alone.search.evaluations


def test_repeated_or_missing_budgets_are_errors(four_layer, fidelity, states):
    g = find_groups(four_layer, states[:2])
    with pytest.raises(PruneError, match="repeated budgets"):
        prune_budgets(four_layer, g, [0.5, 0.5], fidelity(four_layer))
    with pytest.raises(PruneError, match="keeps is empty"):
        prune_budgets(four_layer, g, [], fidelity(four_layer))
    with pytest.raises(PruneError, match="keep must be a fraction"):
        prune_budgets(four_layer, g, [0.5, 2.0], fidelity(four_layer))


def test_a_starting_point_must_name_every_component(four_layer, fidelity, states):
    g = find_groups(four_layer, states[:2])
    with pytest.raises(PruneError, match="no coefficient for component"):
        prune(four_layer, g, 0.3, fidelity(four_layer), method="gd", starts=[{"0": 0.5}])
