"""prune/surgery.py: ranking units, the physical shrink against its masked reference, and the least-squares re-fit."""

from __future__ import annotations

import pytest
import torch

from prune import PruneError, find_groups, keep_indices, masked_copy, reconstruct, score, shrink, widths


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_keep_indices_takes_the_highest_scores_sorted_with_ties_broken_by_index():
    scores = {"a": torch.tensor([0.1, 5.0, 3.0, 5.0, -1.0]), "b": torch.ones(4)}
    keep = keep_indices(scores, {"a": 3, "b": 2})
    assert keep["a"].tolist() == [1, 2, 3] and keep["b"].tolist() == [0, 1]
    assert keep_indices(scores, {"a": 1})["a"].tolist() == [1]  # of two equal best, the lower index
    assert keep_indices(scores, {"a": 5})["a"].tolist() == [0, 1, 2, 3, 4]
    for k in (0, 6):
        with pytest.raises(PruneError, match=rf"group 'a': cannot keep {k} of 5 units"):
            keep_indices(scores, {"a": k})


def test_shrink_gives_smaller_layers_whose_output_equals_the_masked_model(tanh_mlp, states):
    m = tanh_mlp(16, 12)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    g = find_groups(m, states[:2])
    keep = keep_indices(score(m, g, "l2"), {"0": 5, "2": 4})
    small, masked = shrink(m, g, keep), masked_copy(m, g, keep)
    assert [tuple(small[i].weight.shape) for i in (0, 2, 4)] == [(5, 3), (4, 5), (1, 4)]
    assert n_params(small) == (3 * 5 + 5) + (5 * 4 + 4) + (4 + 1) < n_params(m) == n_params(masked)
    assert type(small) is type(m) and not small.training
    with torch.no_grad():
        assert torch.allclose(small(states), masked(states), atol=1e-6)
        assert not torch.allclose(masked(states), m(states), atol=1e-3)  # the units removed did matter
        assert torch.equal(small[0].weight, m[0].weight[keep["0"]])  # the kept rows, in their order
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())  # the original is untouched


def test_shrink_keeps_the_training_mode_and_frozen_parameters(tanh_mlp, states):
    m = tanh_mlp().train()
    m[0].weight.requires_grad_(False)
    g = find_groups(m, states[:2])
    small = shrink(m, g, {"0": torch.tensor([0, 3]), "2": torch.tensor([1])})
    assert small.training and small[0].training and small[2].training
    assert not small[0].weight.requires_grad and small[0].bias.requires_grad and small[2].weight.requires_grad


def test_shrink_shrinks_layernorm_with_its_group_and_widths_reports_every_layer(layernorm_mlp, states):
    g = find_groups(layernorm_mlp, states[:2])
    small = shrink(layernorm_mlp, g, {"0": torch.tensor([1, 4, 9, 15, 2]), "3": torch.tensor([0, 7, 5])})
    assert widths(small, g) == {
        "0": {"in": 3, "out": 5},
        "1": {"norm": 5},
        "3": {"in": 5, "out": 3},
        "5": {"in": 3, "out": 1},
    }
    assert torch.equal(small[1].weight, layernorm_mlp[1].weight[[1, 2, 4, 9, 15]])
    assert widths(layernorm_mlp, g)["1"] == {"norm": 16}


@pytest.mark.parametrize(
    "bad", [torch.tensor([0, 0, 3]), torch.tensor([2, 16]), torch.tensor([-1, 2]), torch.tensor([], dtype=torch.long)]
)
def test_shrink_refuses_indices_that_are_repeated_out_of_range_or_empty(tanh_mlp, states, bad):
    m = tanh_mlp()
    g = find_groups(m, states[:2])
    with pytest.raises(PruneError, match=r"group '0': kept indices must be distinct, in \[0, 16\) and at least one"):
        shrink(m, g, {"0": bad})


def test_reconstruct_lowers_the_error_on_the_visited_states_and_refits_only_layers_that_lost_inputs(tanh_mlp, states):
    m = tanh_mlp(16, 16)
    g = find_groups(m, states[:2])
    keep = keep_indices(score(m, g, "l2"), {"0": 6, "2": 6})
    plain, fitted = shrink(m, g, keep), shrink(m, g, keep)
    reconstruct(m, fitted, g, keep, states)

    def error(model):
        with torch.no_grad():
            return float((model(states) - m(states)).pow(2).mean())

    assert error(fitted) < 0.5 * error(plain)
    assert torch.equal(fitted[0].weight, plain[0].weight)  # lost outputs only: nothing to re-fit
    assert not torch.equal(fitted[2].weight, plain[2].weight) and not torch.equal(fitted[4].weight, plain[4].weight)


def test_reconstruct_with_nothing_removed_changes_nothing(tanh_mlp, states):
    m = tanh_mlp()
    g = find_groups(m, states[:2])
    keep = {grp.name: torch.arange(grp.size) for grp in g.groups}
    small = shrink(m, g, keep)
    reconstruct(m, small, g, keep, states)
    assert all(torch.equal(a, b) for a, b in zip(small.state_dict().values(), m.state_dict().values()))
