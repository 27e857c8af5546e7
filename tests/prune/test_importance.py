"""prune/importance.py: what each metric scores on a weight matrix written out by hand, and the metric registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prune import METRICS, PruneError, find_groups, keep_indices, register_metric, score


@pytest.fixture
def known() -> nn.Sequential:
    """2-4-1 ReLU net whose four hidden units have hand-set weights (one group, '0')."""
    first, last = nn.Linear(2, 4), nn.Linear(4, 1)
    m = nn.Sequential(first, nn.ReLU(), last)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[3.0, 0.0], [1.5, 1.5], [1.0, 0.0], [0.0, 0.0]]))
        first.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.5]))
        last.weight.copy_(torch.tensor([[0.5, 1.0, 1.0, 0.0]]))  # the consumer column of each unit
        last.bias.zero_()
    return m


def test_l1_and_l2_sum_over_the_producer_row_bias_and_consumer_column(known):
    g = find_groups(known, torch.randn(2, 2))
    assert g.names == ["0"]
    l1, l2 = score(known, g, "l1")["0"], score(known, g, "l2")["0"]
    assert l1.dtype == torch.float64 and l1.tolist() == pytest.approx([3.5, 4.0, 2.0, 0.5])
    assert l2.tolist() == pytest.approx([math.sqrt(9.25), math.sqrt(5.5), math.sqrt(2.0), 0.5])
    # the two norms disagree on the best unit: l1 favours the spread-out unit 1, l2 the concentrated unit 0
    assert keep_indices({"0": l1}, {"0": 1})["0"].tolist() == [1]
    assert keep_indices({"0": l2}, {"0": 1})["0"].tolist() == [0]
    assert torch.argsort(l1, descending=True).tolist() == [1, 0, 2, 3]
    assert torch.argsort(l2, descending=True).tolist() == [0, 1, 2, 3]


def test_activation_and_contribution_measure_what_the_consumer_receives(known):
    g = find_groups(known, torch.randn(2, 2))
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.0], [2.0, -2.0]])
    act = score(known, g, "activation", states=x)["0"]
    hidden = torch.relu(known[0](x)).detach().double()
    assert torch.allclose(act, hidden.abs().mean(0))
    assert act[3] == pytest.approx(0.5)  # bias-only unit: relu(0.5) on every state
    contribution = score(known, g, "contribution", states=x)["0"]
    assert torch.allclose(contribution, act * torch.tensor([0.5, 1.0, 1.0, 0.0], dtype=torch.float64))
    with pytest.raises(PruneError, match="a data-aware metric needs states"):
        score(known, g, "activation")


def test_random_is_seeded_and_ignores_the_weights(known):
    g = find_groups(known, torch.randn(2, 2))
    a, b, c = (score(known, g, "random", seed=s)["0"] for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ((a >= 0) & (a < 1)).all()
    with torch.no_grad():
        known[0].weight.mul_(-10)
    assert torch.equal(score(known, g, "random", seed=7)["0"], a)


def test_a_registered_metric_is_used_by_score_and_unknown_or_malformed_ones_are_refused(known):
    g = find_groups(known, torch.randn(2, 2))

    @register_metric("last_first")
    def last_first(model, groups, ctx):
        return {grp.name: torch.arange(grp.size, dtype=torch.float32) for grp in groups.groups}

    @register_metric("too_short")
    def too_short(model, groups, ctx):
        return {grp.name: torch.ones(1) for grp in groups.groups}

    try:
        s = score(known, g, "last_first")
        assert s["0"].dtype == torch.float64 and keep_indices(s, {"0": 2})["0"].tolist() == [2, 3]
        with pytest.raises(PruneError, match=r"metric 'too_short' gave no score of shape \(4,\) for group '0'"):
            score(known, g, "too_short")
    finally:
        METRICS.pop("last_first")
        METRICS.pop("too_short")
    with pytest.raises(PruneError, match=r"unknown importance metric 'last_first'; known: .*l1, l2, random"):
        score(known, g, "last_first")
