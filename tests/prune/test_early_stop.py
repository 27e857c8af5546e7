"""Early stop: a search ends when no candidate can do better (at the objective's ceiling, or within noise of the unpruned score).

And every result says why its search ended (``stopped``: ceiling, within_noise, max_evaluations, converged).
"""

from __future__ import annotations

import pytest

from prune import STOP_REASONS, PruneError, find_groups, prune, prune_budgets

BUDGETED = ("gd", "cmaes", "tpe")
METHODS = (*BUDGETED, "grid")


def saturated(model) -> float:
    """An objective at its maximum for every model (an env's reward ceiling reached from the first evaluation)."""
    return 1000.0


@pytest.mark.parametrize("method", METHODS)
def test_a_saturated_objective_stops_at_the_ceiling_after_one_evaluation(four_layer, states, method):
    g = find_groups(four_layer, states[:2])
    free = prune(four_layer, g, 0.3, saturated, method=method, tolerance=0.03, max_evaluations=30, resolution=0.25)
    stopped = prune(
        four_layer,
        g,
        0.3,
        saturated,
        method=method,
        tolerance=0.03,
        max_evaluations=30,
        resolution=0.25,
        ceiling=1000.0,
    )
    assert free.search.evaluations > 1 and free.search.stopped in ("max_evaluations", "converged")
    assert (
        stopped.search.evaluations == 1
        and stopped.search.stopped == "ceiling"
        and stopped.to_dict()["stopped"] == "ceiling"
    )
    assert (
        stopped.feasible
        and stopped.search.kept == prune(four_layer, g, 0.3, saturated, method="uniform", tolerance=0.03).search.kept
    )


def test_a_candidate_just_short_of_the_ceiling_stops_and_one_further_off_does_not(four_layer, states):
    g = find_groups(four_layer, states[:2])
    near = prune(four_layer, g, 0.3, lambda m: 1000.0 - 1e-4, tolerance=0.03, max_evaluations=12, ceiling=1000.0)
    far = prune(four_layer, g, 0.3, lambda m: 999.0, tolerance=0.03, max_evaluations=12, ceiling=1000.0)
    assert near.search.stopped == "ceiling" and near.search.evaluations == 1
    assert far.search.stopped != "ceiling" and far.search.evaluations > 1


@pytest.mark.parametrize("method", METHODS)
def test_a_candidate_within_the_noise_margin_of_the_unpruned_objective_stops_the_search(
    four_layer, fidelity, states, method
):
    g = find_groups(four_layer, states[:2])
    opts = dict(method=method, tolerance=0.03, max_evaluations=30, resolution=0.25, seed=1)
    full = prune(four_layer, g, 0.3, fidelity(four_layer), **opts)
    margin = -sorted(set(full.search.history))[
        -2
    ]  # the unpruned objective is 0: the second-best value met is within this margin
    stopped = prune(four_layer, g, 0.3, fidelity(four_layer), stop_within=margin, **opts)
    assert stopped.search.stopped == "within_noise" and stopped.search.evaluations < full.search.evaluations
    assert stopped.search.objective >= stopped.objective_before - margin - 1e-12
    assert stopped.search.history == full.search.history[: stopped.search.evaluations]  # the same search, cut short


@pytest.mark.parametrize("method", (*METHODS, "uniform", "global"))
def test_defaults_and_margins_never_met_leave_the_result_as_it_was(four_layer, fidelity, states, method):
    g = find_groups(four_layer, states[:2])
    opts = dict(method=method, tolerance=0.03, max_evaluations=20, resolution=0.25, seed=2)
    base = prune(four_layer, g, 0.3, fidelity(four_layer), **opts).to_dict()
    unmet = prune(four_layer, g, 0.3, fidelity(four_layer), ceiling=1.0, stop_within=0.0, **opts).to_dict()
    for d in (base, unmet):
        d.pop("seconds")
    assert unmet == base
    assert base["stopped"] == ("max_evaluations" if method in BUDGETED else "converged")


def test_metric_auto_stops_at_the_first_metric_whose_uniform_point_reaches_the_ceiling(four_layer, states):
    g = find_groups(four_layer, states[:2])
    r = prune(
        four_layer, g, 0.3, saturated, metric="auto", states=states, tolerance=0.03, max_evaluations=20, ceiling=1000.0
    )
    assert r.metric == "l1" and list(r.search.metric_trials) == ["l1"]
    assert r.search.evaluations == 1 and r.search.stopped == "ceiling"


def test_per_episode_objectives_stop_on_their_mean(four_layer, states):
    g = find_groups(four_layer, states[:2])
    r = prune(four_layer, g, 0.3, lambda m: [1000.0, 999.0, 1001.0], tolerance=0.03, max_evaluations=20, ceiling=1000.0)
    assert r.search.stopped == "ceiling" and r.search.evaluations == 1


def test_budgets_each_stop_and_say_so(four_layer, states):
    g = find_groups(four_layer, states[:2])
    rs = prune_budgets(four_layer, g, [0.5, 0.25, 0.1], saturated, tolerance=0.03, max_evaluations=20, ceiling=1000.0)
    assert [r.search.stopped for r in rs] == ["ceiling"] * 3 and all(r.feasible for r in rs)
    assert all(
        r.search.evaluations <= 2 for r in rs
    )  # the first feasible candidate (a start may fall outside the band) ends it


def test_an_infeasible_candidate_at_the_ceiling_does_not_stop_the_search(four_layer, states):
    g = find_groups(four_layer, states[:2])
    r = prune(
        four_layer, g, 0.3, saturated, tolerance=0.03, max_evaluations=10, ceiling=1000.0, radius_check=lambda m: 1.5
    )
    assert not r.feasible and r.search.stopped == "max_evaluations" and r.search.evaluations == 10


def test_stop_reasons_are_the_documented_four():
    assert STOP_REASONS == ("ceiling", "within_noise", "max_evaluations", "converged")


@pytest.mark.parametrize(
    "options, words",
    [
        ({"stop_within": -0.1}, "stop_within"),
        ({"stop_within": float("nan")}, "stop_within"),
        ({"ceiling": float("inf")}, "ceiling"),
    ],
)
def test_bad_stop_options_are_refused_by_name(four_layer, states, options, words):
    g = find_groups(four_layer, states[:2])
    with pytest.raises(PruneError, match=words):
        prune(four_layer, g, 0.3, saturated, tolerance=0.03, **options)
