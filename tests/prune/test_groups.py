"""Group tracing: which slices go together, on the model shapes controllers come in, and what is refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prune import PruneError, find_groups, keep_indices, masked_copy, score, shrink
from prune.groups import Slice

torch.set_num_threads(1)


class Actor(nn.Module):
    """A trunk feeding two heads (mean and log-std), as in SAC/PPO actors."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 12), nn.Tanh())
        self.mu = nn.Linear(12, 2)
        self.log_std = nn.Linear(12, 2)

    def forward(self, x):
        h = self.trunk(x)
        return self.mu(h), self.log_std(h).clamp(-5, 2)


class QNet(nn.Module):
    """Q(s, a): state and action encoded separately, concatenated into a joint layer."""

    def __init__(self) -> None:
        super().__init__()
        self.obs_enc = nn.Linear(3, 10)
        self.act_enc = nn.Linear(2, 6)
        self.joint = nn.Linear(16, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, obs, act):
        h = torch.cat([torch.relu(self.obs_enc(obs)), nn.functional.silu(self.act_enc(act))], dim=-1)
        return self.out(nn.functional.mish(self.joint(h)))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(3, 8)
        self.block = nn.Linear(8, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = h + torch.relu(self.block(h))
        return self.out(h)


def ln_mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(3, 16), nn.LayerNorm(16), nn.ELU(), nn.Dropout(0.1), nn.Linear(16, 8), nn.LeakyReLU(), nn.Linear(8, 1)
    )


def half(groups, seed=0):
    """Keep a seeded random half of every group."""
    gen = torch.Generator().manual_seed(seed)
    return {
        g.name: torch.sort(torch.randperm(g.size, generator=gen)[: max(1, g.size // 2)]).values for g in groups.groups
    }


def test_plain_mlp_has_one_group_per_hidden_linear_and_protects_input_and_output():
    m = nn.Sequential(nn.Linear(3, 16), nn.ELU(), nn.Linear(16, 16), nn.ELU(), nn.Linear(16, 1))
    with torch.no_grad():  # tracing must not need autograd
        g = find_groups(m, torch.randn(2, 3))
    assert g.names == ["0", "2"]
    assert g.components == {"0": ["0"], "2": ["2"]}
    assert g["0"].slices == [Slice("0", "linear.out", 0), Slice("2", "linear.in", 0)]
    assert set(g.protected) == {"input:input", "4"}
    assert g.excluded == {}


def test_two_headed_actor_couples_both_heads_and_protects_both_outputs():
    g = find_groups(Actor(), torch.randn(2, 3))
    trunk_out = g["trunk.2"]
    assert {(s.module, s.kind) for s in trunk_out.slices} == {
        ("trunk.2", "linear.out"),
        ("mu", "linear.in"),
        ("log_std", "linear.in"),
    }
    assert trunk_out.component == "trunk"
    assert set(g.protected) >= {"mu", "log_std"}
    assert g.components == {"trunk": ["trunk.0", "trunk.2"]}


def test_layernorm_elu_mlp_includes_layernorm_slices():
    g = find_groups(ln_mlp(), torch.randn(2, 3))
    assert {(s.module, s.kind) for s in g["0"].slices} == {("0", "linear.out"), ("1", "layernorm"), ("4", "linear.in")}
    small = shrink(ln_mlp(), g, half(g))
    assert small[1].normalized_shape == (8,) and small[1].weight.shape == (8,)


def test_layernorm_shrink_normalises_over_the_kept_units_only():
    torch.manual_seed(0)
    m = ln_mlp().eval()
    g = find_groups(m, torch.randn(2, 3))
    keep = half(g)
    small = shrink(m, g, keep).eval()
    x = torch.randn(5, 3)
    idx = keep["0"]
    h = m[0](x)[:, idx]
    ref = nn.functional.layer_norm(h, (len(idx),), m[1].weight[idx], m[1].bias[idx], m[1].eps)
    assert torch.allclose(small[1](small[0](x)), ref, atol=1e-6)


def test_concatenating_q_network_offsets_consumer_columns():
    g = find_groups(QNet(), (torch.randn(2, 3), torch.randn(2, 2)))
    assert Slice("joint", "linear.in", 0) in g["obs_enc"].slices
    assert Slice("joint", "linear.in", 10) in g["act_enc"].slices
    assert set(g.names) == {"obs_enc", "act_enc", "joint"}
    assert {"input:obs", "input:act", "out"} <= set(g.protected)


@pytest.mark.parametrize(
    "make, inputs",
    [
        (
            lambda: nn.Sequential(nn.Linear(3, 32), nn.ELU(), nn.Linear(32, 24), nn.Tanh(), nn.Linear(24, 1)),
            (torch.randn(64, 3),),
        ),
        (Actor, (torch.randn(64, 3),)),
        (QNet, (torch.randn(64, 3), torch.randn(64, 2))),
        (Residual, (torch.randn(64, 3),)),
    ],
)
def test_shrink_equals_masked_original(make, inputs):
    torch.manual_seed(1)
    m = make().eval()
    g = find_groups(m, inputs)
    keep = keep_indices(score(m, g, "l2"), {n.name: max(1, n.size // 3) for n in g.groups})
    small, masked = shrink(m, g, keep).eval(), masked_copy(m, g, keep).eval()
    with torch.no_grad():
        a, b = small(*inputs), masked(*inputs)
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert torch.allclose(x, y, atol=1e-6)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in m.parameters())
    assert type(small) is type(m)


def test_residual_sum_merges_both_sides_into_one_group():
    g = find_groups(Residual(), torch.randn(2, 3))
    assert g.names == ["inp+block"]
    kinds = {(s.module, s.kind) for s in g.groups[0].slices}
    assert kinds == {("inp", "linear.out"), ("block", "linear.in"), ("block", "linear.out"), ("out", "linear.in")}


def test_component_patterns_group_layers_and_unknown_pattern_is_an_error():
    g = find_groups(Actor(), torch.randn(2, 3), components={"first": "trunk.0", "second": ["trunk.2"]})
    assert g.components == {"first": ["trunk.0"], "second": ["trunk.2"]}
    with pytest.raises(PruneError, match="pattern 'encoder' matches no module"):
        find_groups(Actor(), torch.randn(2, 3), components={"enc": "encoder"})


class Reshaper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 8), nn.Linear(3, 8), nn.Linear(8, 1)

    def forward(self, x):
        h = self.a(x).view(-1, 2, 4).flatten(1)  # a fixed-size reshape of a's features
        return self.c(torch.relu(h) + 0 * torch.relu(self.b(x)))


def test_fixed_reshape_is_excluded_with_its_node_named_or_refused_when_strict():
    g = find_groups(Reshaper(), torch.randn(2, 3))
    assert "a" in g.excluded and "view" in g.excluded["a"]
    assert "a" not in g.names and "b" not in g.names  # b is summed with a's reshaped features
    with pytest.raises(PruneError, match="view"):
        find_groups(Reshaper(), torch.randn(2, 3), strict=True)


def test_tied_weights_and_shared_modules_are_refused():
    tied = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 1))
    tied[2].weight = tied[0].weight
    with pytest.raises(PruneError, match="same tensor"):
        find_groups(tied, torch.randn(2, 4))

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp, self.mid, self.out = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 1)

        def forward(self, x):
            return self.out(self.mid(torch.relu(self.mid(self.inp(x)))))

    with pytest.raises(PruneError, match="module 'mid' is called 2 times"):
        find_groups(Twice(), torch.randn(2, 4))


def test_unknown_module_blocks_its_input_features():
    m = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    g = find_groups(m.eval(), torch.randn(4, 3))
    assert "BatchNorm1d" in g.excluded["0"]
    assert g.names == ["3"]


def test_opt_in_prunes_the_input_features():
    m = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))
    g = find_groups(m, torch.randn(2, 5), protect_input=False)
    assert "input:input" in g.names
    small = shrink(m, g, {"input:input": torch.tensor([0, 2, 4])})
    assert small[0].in_features == 3


def test_untraceable_model_names_the_model():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l = nn.Linear(3, 3)

        def forward(self, x):
            return self.l(x) if x.sum() > 0 else x  # data-dependent control flow

    with pytest.raises(PruneError, match="cannot trace Branchy"):
        find_groups(Branchy(), torch.randn(2, 3))
