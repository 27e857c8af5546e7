"""Budget accounting: coefficients -> units kept -> exact parameters and multiply-adds of the shrunk model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prune import PruneError, find_groups, footprint, keep_fraction, keep_indices, kept_from_coefficients, score, shrink
from prune.budget import units_kept

torch.set_num_threads(1)


def mlp():
    return nn.Sequential(nn.Linear(3, 20), nn.ELU(), nn.Linear(20, 10), nn.LayerNorm(10), nn.Tanh(), nn.Linear(10, 2))


def test_units_kept_rounds_and_keeps_at_least_one():
    assert units_kept(20, 0.0) == 20
    assert units_kept(20, 0.25) == 15
    assert units_kept(20, 1.0) == 1
    with pytest.raises(PruneError, match="coefficient must be in"):
        units_kept(20, 1.5)


def test_footprint_counts_match_the_shrunk_model_exactly():
    m = mlp()
    g = find_groups(m, torch.randn(2, 3))
    kept = kept_from_coefficients(g, {"0": 0.5, "2": 0.3})
    assert kept == {"0": 10, "2": 7}
    small = shrink(m, g, keep_indices(score(m, g, "l1"), kept))
    fp = footprint(g, kept)
    assert fp.params == sum(p.numel() for p in small.parameters())
    assert fp.params == (3 * 10 + 10) + (10 * 7 + 7) + 2 * 7 + (7 * 2 + 2)
    assert fp.bytes == 4 * fp.params
    assert fp.macs == 3 * 10 + 10 * 7 + 7 * 2
    before = footprint(g)
    assert before.params == sum(p.numel() for p in m.parameters()) == before.prunable_params
    assert keep_fraction(g, kept) == pytest.approx(fp.prunable_params / before.prunable_params)


def test_unprunable_parameters_count_in_total_but_not_in_the_budget():
    class WithFrozenBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 8), nn.Linear(8, 1)
            self.scale = nn.Parameter(torch.ones(5))

        def forward(self, x):
            return self.b(torch.relu(self.a(x))) * self.scale.sum()

    m = WithFrozenBranch()
    g = find_groups(m, torch.randn(2, 3))
    fp = footprint(g, {"a": 4})
    assert fp.prunable_params == 3 * 4 + 4 + 4 + 1
    assert fp.params == fp.prunable_params + 5


def test_macs_count_every_sequence_position():
    m = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    g = find_groups(m, torch.randn(2, 5, 3))  # 5 positions per sample
    assert footprint(g).macs == 5 * (3 * 8 + 8 * 1)


def test_missing_coefficient_is_named():
    g = find_groups(mlp(), torch.randn(2, 3))
    with pytest.raises(PruneError, match="no coefficient for group '2'"):
        kept_from_coefficients(g, {"0": 0.5})
