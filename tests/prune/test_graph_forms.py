"""Controllers as the importer hands them over: the nn.Module, its torch.fx trace and its torch.export program.

Every zoo model is pruned in each of the three forms: the same groups are found, a uniform l1
prune at keep 0.5 gives outputs equal to the masked original (removed units cut off from their
consumers, LayerNorms normalising over the kept units only), the parameter count drops exactly as
the footprint says, and the shrunk module still exports (torch.export and ONNX, run by onnxruntime).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from prune import Groups, PruneError, find_groups, keep_indices, masked_copy, prune, score, shrink

torch.set_num_threads(1)
OBS = 5


class Block(nn.Module):
    """SimBa residual block: x + Linear(ReLU(Linear(LayerNorm(x))))."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.ln, self.up, self.down = nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x):
        return x + self.down(F.relu(self.up(self.ln(x))))


class SimBa(nn.Module):
    """SimBa-style actor: running observation normaliser, Linear in, two residual blocks, final LayerNorm, tanh head."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("obs_mean", torch.randn(OBS))
        self.register_buffer("obs_var", torch.rand(OBS) + 0.5)
        self.inp = nn.Linear(OBS, 16)
        self.blocks = nn.ModuleList([Block(16), Block(16)])
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        x = torch.clamp((x - self.obs_mean) / torch.sqrt(self.obs_var + 1e-8), -10.0, 10.0)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h)
        return torch.tanh(self.head(self.norm(h)))


def tdmpc2() -> nn.Sequential:
    """TD-MPC2-style MLP: Linear -> LayerNorm -> Mish, twice, then a Linear head."""
    return nn.Sequential(
        nn.Linear(OBS, 24),
        nn.LayerNorm(24),
        nn.Mish(),
        nn.Linear(24, 24),
        nn.LayerNorm(24),
        nn.Mish(),
        nn.Linear(24, 2),
    )


class SACActor(nn.Module):
    """SB3-style SAC actor: ReLU trunk, mean head squashed and scaled by ``2 * tanh``."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_pi = nn.Sequential(nn.Linear(OBS, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
        self.mu = nn.Linear(32, 2)

    def forward(self, x):
        return 2 * torch.tanh(self.mu(self.latent_pi(x)))


class CleanRLActor(nn.Module):
    """CleanRL-style actor mean over two input branches concatenated, with action scale and bias buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.pos, self.vel = nn.Linear(OBS, 12), nn.Linear(OBS, 8)
        self.fc = nn.Linear(20, 16)
        self.fc_mean = nn.Linear(16, 2)
        self.register_buffer("action_scale", torch.tensor([2.0, 0.5]))
        self.register_buffer("action_bias", torch.tensor([0.0, 0.1]))

    def forward(self, x):
        h = torch.cat([torch.tanh(self.pos(x)), F.elu(self.vel(x))], dim=-1)
        return torch.tanh(self.fc_mean(F.leaky_relu(self.fc(h)))) * self.action_scale + self.action_bias


class Affine(nn.Module):
    """Hidden features scaled and shifted by per-feature constants and clamped between per-feature bounds."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(OBS, 16), nn.Linear(16, 12), nn.Linear(12, 2)
        self.gain = nn.Parameter(torch.rand(16) + 0.5)
        self.register_buffer("shift", torch.randn(16) * 0.1)
        self.register_buffer("low", -torch.rand(12) - 0.5)
        self.register_buffer("high", torch.rand(12) + 0.5)

    def forward(self, x):
        h = F.softplus(self.a(x)) * self.gain + self.shift
        g = torch.clamp(torch.sigmoid(self.b(h)) - 0.5, min=self.low, max=self.high)
        return self.out(F.dropout(g, 0.1, self.training).flatten(1))


class Functional(nn.Module):
    """An MLP written with functional activations and tensor methods (GELU, SiLU, Softplus, Sigmoid)."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2, self.l3, self.l4 = nn.Linear(OBS, 16), nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 2)

    def forward(self, x):
        h = F.gelu(self.l1(x))
        h = F.silu(self.l2(h)).sigmoid()
        return self.l4(F.softplus(self.l3(h)) / 3.0 - 1.0)


class PPOClipped(nn.Module):
    """SB3-style PPO actor: tanh MLP, a hidden cap by torch.minimum, the action clipped to the box by torch.maximum/minimum."""

    def __init__(self) -> None:
        super().__init__()
        self.policy_net = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh())
        self.action_net = nn.Linear(16, 2)
        self.register_buffer("cap", torch.rand(16) * 0.5 + 0.5)
        self.register_buffer("low", torch.tensor([-2.0, -1.0]))
        self.register_buffer("high", torch.tensor([2.0, 1.0]))

    def forward(self, x):
        h = torch.minimum(self.policy_net(x), self.cap)
        return torch.minimum(torch.maximum(self.action_net(h), self.low), self.high)


def mlp(act: type[nn.Module]) -> Callable[[], nn.Module]:
    return lambda: nn.Sequential(nn.Linear(OBS, 16), act(), nn.Linear(16, 12), act(), nn.Linear(12, 2))


ZOO: dict[str, Callable[[], nn.Module]] = {
    "simba": SimBa,
    "tdmpc2": tdmpc2,
    "sac": SACActor,
    "cleanrl": CleanRLActor,
    "affine": Affine,
    "functional": Functional,
    "ppo_clipped": PPOClipped,
    "gelu": mlp(nn.GELU),
    "silu": mlp(nn.SiLU),
    "softplus": mlp(nn.Softplus),
    "sigmoid": mlp(nn.Sigmoid),
}
FORMS = ("module", "fx", "export", "core")


def states(n: int = 256) -> torch.Tensor:
    return torch.randn(n, OBS, generator=torch.Generator().manual_seed(0)) * 2


def make(name: str, form: str) -> nn.Module:
    """Zoo model ``name`` (seeded, eval mode) as an nn.Module, its symbolic trace, its torch.export program or that in core ATen."""
    torch.manual_seed(3)
    model = ZOO[name]().eval()
    if form == "fx":
        return fx.symbolic_trace(model)
    if form in ("export", "core"):
        program = torch.export.export(model, (states(4),), dynamic_shapes=({0: torch.export.Dim.AUTO},))
        return (
            program.run_decompositions() if form == "core" else program
        ).module()  # core: addmm, permute, native_layer_norm
    return model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def masked_reference(
    model: nn.Module, groups: Groups, keep: dict[str, torch.Tensor]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The masked original, with every LayerNorm normalising over its kept units only (what the shrunk model computes)."""
    masked = masked_copy(model, groups, keep)
    gm = masked if isinstance(masked, fx.GraphModule) else fx.symbolic_trace(masked)
    kept: dict[str, torch.Tensor] = {}  # LayerNorm node name -> units kept
    for name, info in groups.modules.items():
        if info.kind == "layernorm":
            kept[info.node or name] = torch.ones(info.norm_size, dtype=torch.bool)
    for g in groups.groups:
        gone = torch.ones(g.size, dtype=torch.bool)
        gone[keep[g.name]] = False
        for s in g.slices:
            if s.kind == "layernorm":
                kept[groups.modules[s.module].node or s.module][s.offset : s.offset + g.size] &= ~gone
    by_node = {n.name: str(n.target) for n in gm.graph.nodes if n.op == "call_module"}  # node name -> module name

    def norm(x, mask, weight, bias, eps):
        out = torch.zeros_like(x)
        out[..., mask] = F.layer_norm(
            x[..., mask],
            (int(mask.sum()),),
            None if weight is None else weight[mask],
            None if bias is None else bias[mask],
            eps,
        )
        return out

    class Reference(fx.Interpreter):
        def run_node(self, n):
            mod = self.module.get_submodule(by_node[n.name]) if n.name in by_node else None
            mask = (
                kept.get(n.name, kept.get(by_node.get(n.name, "")))
                if n.op in ("call_function", "call_module")
                else None
            )
            if mask is None:
                return super().run_node(n)
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            if isinstance(mod, nn.LayerNorm):
                return norm(args[0], mask, mod.weight, mod.bias, mod.eps)
            if mod is not None:  # onnx2torch's OnnxLayerNorm(x, scale, bias)
                return norm(args[0], mask, args[1], args[2], mod.epsilon)
            w, b, eps = (
                args[i] if len(args) > i else kwargs.get(k, d)
                for i, k, d in ((2, "weight", None), (3, "bias", None), (4, "eps", 1e-5))
            )
            out = norm(args[0], mask, w, b, eps)
            return (out, None, None) if "native" in str(n.target) else out  # native_layer_norm: (out, mean, rstd)

    return lambda x: Reference(gm).run(x)


def fidelity(model: nn.Module) -> Callable[[nn.Module], float]:
    x = states()
    with torch.no_grad():
        target = model(x)
    return lambda m: -float((m(x) - target).pow(2).mean())


@pytest.mark.parametrize("name", list(ZOO))
def test_every_form_finds_the_same_groups(name):
    found = [find_groups(make(name, form), states(2), strict=True) for form in FORMS]
    assert all(f.names == found[0].names for f in found) and found[0].names
    for f in found[1:]:
        assert [[(s.module, s.kind, s.offset) for s in g.slices] for g in f.groups] == [
            [(s.module, s.kind, s.offset) for s in g.slices] for g in found[0].groups
        ]
        assert f.total_params == found[0].total_params


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", list(ZOO))
def test_uniform_l1_prune_equals_the_masked_model_and_still_exports(name, form):
    model, x = make(name, form), states()
    groups = find_groups(model, x[:2])
    result = prune(model, groups, keep=0.5, objective=fidelity(model), method="uniform", metric="l1")
    keep = keep_indices(score(model, groups, "l1"), result.search.kept)
    small = result.model
    with torch.no_grad():
        assert torch.allclose(small(x), masked_reference(model, groups, keep)(x), atol=1e-5)
    assert n_params(small) == result.after.params < n_params(model) == result.before.params
    assert result.search.keep_fraction <= 0.5 + 0.05
    assert isinstance(small, fx.GraphModule) == (form != "module")

    program = torch.export.export(small, (x[:3],), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    buf = io.BytesIO()
    # a torch.export module refuses .train(), which the TorchScript-based exporter calls: re-wrap its graph as a plain GraphModule
    onnx_ready = fx.GraphModule(small, small.graph) if form in ("export", "core") else small
    torch.onnx.export(
        onnx_ready,
        (x[:1],),
        buf,
        input_names=["obs"],
        output_names=["action"],
        opset_version=17,
        dynamic_axes={"obs": {0: "batch"}},
        dynamo=False,
    )
    got = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"obs": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, small(x).numpy(), atol=1e-5)
        np.testing.assert_allclose(program.module()(x).numpy(), small(x).numpy(), atol=1e-6)


@pytest.mark.parametrize("form", FORMS)
def test_simba_residual_stream_is_one_coupled_group(form):
    g = find_groups(make("simba", form), states(2))
    stream = g["inp+blocks.0.down+blocks.1.down"]
    assert stream.producers == ["inp", "blocks.0.down", "blocks.1.down"]
    assert len(stream.couplings) == 2  # the two residual sums
    assert {(s.module, s.kind) for s in stream.slices} == {
        ("inp", "linear.out"),
        ("blocks.0.ln", "layernorm"),
        ("blocks.0.up", "linear.in"),
        ("blocks.0.down", "linear.out"),
        ("blocks.1.ln", "layernorm"),
        ("blocks.1.up", "linear.in"),
        ("blocks.1.down", "linear.out"),
        ("norm", "layernorm"),
        ("head", "linear.in"),
    }
    assert g.names == ["inp+blocks.0.down+blocks.1.down", "blocks.0.up", "blocks.1.up"]
    assert g.protected.keys() == {"input:x", "head"}  # the normaliser sits on the (protected) input


@pytest.mark.parametrize("form", FORMS)
def test_simba_shrinks_the_stream_and_every_layer_on_it(form):
    model, x = make("simba", form), states()
    g = find_groups(model, x[:2])
    keep = {n: torch.arange(0, size, 2) for n, size in ((grp.name, grp.size) for grp in g.groups)}
    small = shrink(model, g, keep)
    with torch.no_grad():
        assert torch.allclose(small(x), masked_reference(model, g, keep)(x), atol=1e-5)
    weights = dict(small.named_parameters())
    assert weights["inp.weight"].shape == (8, OBS) and weights["blocks.1.down.weight"].shape == (8, 32)
    assert (
        weights["blocks.0.ln.weight"].shape == (8,)
        and weights["norm.bias"].shape == (8,)
        and weights["head.weight"].shape == (2, 8)
    )


@pytest.mark.parametrize("form", FORMS)
def test_per_feature_constants_are_sliced_with_their_group(form):
    model = make("affine", form)
    g = find_groups(model, states(2))
    assert g.names == ["a", "b"]
    assert {(s.module, s.kind) for s in g["a"].slices} >= {("gain", "const"), ("shift", "const")}
    assert {("low", "const"), ("high", "const")} <= {(s.module, s.kind) for s in g["b"].slices}
    assert (
        g.modules["gain"].affine_params == 1 and g.modules["shift"].affine_params == 0
    )  # a parameter counts, a buffer not
    small = shrink(model, g, {"a": torch.tensor([0, 5, 9]), "b": torch.tensor([1, 2])})
    assert dict(small.named_parameters())["gain"].shape == (3,)
    assert dict(small.named_buffers())["shift"].shape == (3,) and dict(small.named_buffers())["high"].shape == (2,)


@pytest.mark.parametrize("form", FORMS)
def test_the_concatenation_maps_consumer_columns_to_each_branch(form):
    g = find_groups(make("cleanrl", form), states(2))
    assert ("fc", "linear.in", 0) in {(s.module, s.kind, s.offset) for s in g["pos"].slices}
    assert ("fc", "linear.in", 12) in {(s.module, s.kind, s.offset) for s in g["vel"].slices}
    assert "fc_mean" in g.protected  # the output, with its action scale and bias


class Sorting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(OBS, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.b(torch.sort(self.a(x), dim=-1).values)


class DataMatmul(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.k, self.b = nn.Linear(OBS, 8), nn.Linear(OBS, 64), nn.Linear(8, 2)

    def forward(self, x):
        mix = self.k(x).reshape(-1, 8, 8)  # a weight computed from the input
        return self.b(torch.tanh(torch.matmul(self.a(x).unsqueeze(1), mix).squeeze(1)))


@pytest.mark.parametrize("form", FORMS[:3])  # core ATen spells matmul as expand + bmm
@pytest.mark.parametrize("cls, node, op", [(Sorting, "sort", "sort"), (DataMatmul, "matmul", "matmul")])
def test_an_unsupported_op_is_refused_naming_the_node_its_op_and_the_supported_set(cls, node, op, form):
    torch.manual_seed(0)
    model = cls().eval()
    if form == "fx":
        model = fx.symbolic_trace(model)
    elif form in ("export", "core"):
        program = torch.export.export(model, (states(4),), dynamic_shapes=({0: torch.export.Dim.AUTO},))
        model = (program.run_decompositions() if form == "core" else program).module()
    g = find_groups(model, states(2))
    assert "a" in g.excluded and f"'{node}" in g.excluded["a"] and op in g.excluded["a"]
    with pytest.raises(
        PruneError, match=rf"cannot prune .*'a': node '{node}\w*' \(call_\w+ [\w.]*{op}[\w.]*\).*supported: Linear"
    ):
        find_groups(model, states(2), strict=True)


def test_aten_addmm_and_mm_forms_are_linears():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    ep = torch.export.export(model, (states(4),), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    decomposed = ep.run_decompositions().module()
    targets = {str(n.target) for n in decomposed.graph.nodes if n.op == "call_function"}
    assert "aten.addmm.default" in targets and "aten.permute.default" in targets
    g = find_groups(decomposed, states(2), strict=True)
    assert g.names == ["0", "2"]
    keep = {"0": torch.tensor([1, 3, 5, 7, 9]), "2": torch.tensor([0, 4])}
    small = shrink(decomposed, g, keep)
    with torch.no_grad():
        assert torch.allclose(
            small(states()), masked_copy(model, find_groups(model, states(2)), keep)(states()), atol=1e-6
        )


class AtW(nn.Module):
    """x @ W + b with W stored (in, out): the matmul spelling of a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.w1, self.b1 = nn.Parameter(torch.randn(OBS, 16)), nn.Parameter(torch.randn(16))
        self.w2 = nn.Parameter(torch.randn(2, 16))

    def forward(self, x):
        return F.linear(torch.relu(x @ self.w1 + self.b1), self.w2)


@pytest.mark.parametrize("form", FORMS)
def test_matmul_with_a_constant_weight_is_a_linear_and_its_bias_add_a_sliced_constant(form):
    torch.manual_seed(0)
    model: nn.Module = AtW().eval()
    if form == "fx":
        model = fx.symbolic_trace(model)
    elif form in ("export", "core"):
        program = torch.export.export(model, (states(4),), dynamic_shapes=({0: torch.export.Dim.AUTO},))
        model = (program.run_decompositions() if form == "core" else program).module()
    g = find_groups(model, states(2), strict=True)
    assert g.names == ["w1"] and g.modules["w1"].transposed and g.modules["b1"].kind == "const"
    keep = {"w1": torch.tensor([0, 3, 4, 10])}
    small = shrink(model, g, keep)
    assert dict(small.named_parameters())["w1"].shape == (OBS, 4) and dict(small.named_parameters())["w2"].shape == (
        2,
        4,
    )
    with torch.no_grad():
        assert torch.allclose(small(states()), masked_copy(model, g, keep)(states()), atol=1e-5)


def test_shared_graph_weights_leave_their_dimensions_whole():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(8, OBS))
            self.v = nn.Parameter(torch.randn(2, 8))

        def forward(self, x):
            return F.linear(torch.tanh(F.linear(x, self.w)), self.v) + F.linear(x, self.w).sum(-1, keepdim=True)

    g = find_groups(fx.symbolic_trace(Tied()), states(2))
    assert g.names == [] and "parameter 'w'" in g.excluded["w"] and "shared" in g.excluded["w"]
    with pytest.raises(PruneError, match="parameter 'w'.*shared"):
        find_groups(fx.symbolic_trace(Tied()), states(2), strict=True)


def test_data_aware_metrics_and_refit_read_graph_form_inputs():
    model, x = make("sac", "export"), states()
    g = find_groups(model, x[:2])
    ref = find_groups(make("sac", "module"), x[:2])
    for metric in ("activation", "contribution", "l2"):
        a, b = score(model, g, metric, states=x), score(make("sac", "module"), ref, metric, states=x)
        assert all(torch.allclose(a[k], b[k]) for k in a)
    result = prune(
        model, g, keep=0.3, objective=fidelity(model), method="uniform", metric="activation", states=x, reconstruct=True
    )
    plain = prune(model, g, keep=0.3, objective=fidelity(model), method="uniform", metric="activation", states=x)
    assert result.objective_after > plain.objective_after


# Stand-ins for onnx2torch's own modules (same class names and semantics; onnx2torch itself imports torchvision, which
# is not installed; the same zoo converted by the real onnx2torch was checked to prune the same way).
class OnnxBinaryMathOperation(nn.Module):
    def __init__(self, fn: Callable) -> None:
        super().__init__()
        self.broadcast, self.axis, self.math_op_function = None, None, fn

    def forward(self, first, second):
        return self.math_op_function(first, second)


class OnnxConstant(nn.Module):
    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("value", value)

    def forward(self):
        return self.value


class OnnxClip(nn.Module):
    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.min_val, self.max_val = low, high

    def forward(self, x):
        return torch.clamp(x, self.min_val, self.max_val)


class OnnxMatMul(nn.Module):
    def forward(self, x, y):
        return torch.matmul(x, y)


class OnnxErf(nn.Module):
    def forward(self, x):
        return torch.erf(x)


class OnnxFunction(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.function = torch.tanh

    def forward(self, x):
        return self.function(x)


class OnnxLayerNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.axis, self.epsilon = -1, 1e-5

    def forward(self, x, scale, bias):
        return F.layer_norm(x, x.shape[self.axis :], scale, bias, self.epsilon)


class OnnxCopyIdentity(nn.Module):
    def forward(self, x):
        return x.clone()


class OnnxMinMax(nn.Module):
    def __init__(self, op: Callable) -> None:
        super().__init__()
        self._operator = op

    def forward(self, *xs):
        shape = torch.broadcast_shapes(*(t.shape for t in xs))
        return self._operator(torch.stack([t.broadcast_to(shape) for t in xs]), dim=0)


class OnnxReshape(nn.Module):
    def forward(self, x, shape):
        return torch.reshape(x, torch.Size(shape))


class OnnxConcat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.axis = 1

    def forward(self, *xs):
        return torch.cat(xs, self.axis)


def onnx2torch_like() -> fx.GraphModule:
    """A GraphModule shaped as onnx2torch converts an exported actor: call_module per ONNX node, initializers as buffers.

    Normaliser (Sub, Div, Clip), a MatMul + Add Linear and a Gemm Linear concatenated, a Gemm clipped
    by per-feature bounds (Max, Min), an erf-GELU of a LayerNorm (its scale behind an Identity) summed
    back onto its input (a residual), a Reshape that keeps the shape, and a Gemm head scaled by ``2 * tanh``.
    """
    torch.manual_seed(5)
    root = nn.Module()
    init = nn.Module()
    values = {
        "mean": torch.randn(OBS),
        "std": torch.rand(OBS) + 0.5,
        "w_mm": torch.randn(OBS, 12) * 0.5,
        "b_mm": torch.randn(12) * 0.1,
        "ln_w": torch.rand(16) + 0.5,
        "ln_b": torch.randn(16) * 0.1,
        "shape": torch.tensor([-1, 16]),
        "lo": -torch.rand(16) - 0.5,
        "hi": torch.rand(16) + 0.5,
    }
    for k, v in values.items():
        init.register_buffer(k, v)
    root.add_module("initializers", init)
    mods: dict[str, nn.Module] = {
        "Sub": OnnxBinaryMathOperation(torch.sub),
        "Div": OnnxBinaryMathOperation(torch.div),
        "Clip": OnnxClip(-5.0, 5.0),
        "MatMul": OnnxMatMul(),
        "Add": OnnxBinaryMathOperation(torch.add),
        "Relu": nn.ReLU(),
        "side/Gemm": nn.Linear(OBS, 4),
        "side/Elu": nn.ELU(),
        "Concat": OnnxConcat(),
        "net/net/2/Gemm": nn.Linear(16, 16),
        "Max": OnnxMinMax(torch.amax),
        "Min": OnnxMinMax(torch.amin),
        "Identity_0": OnnxCopyIdentity(),
        "ln/LayerNormalization": OnnxLayerNorm(),
        "Constant_2": OnnxConstant(torch.tensor(1.4142135)),
        "Div_1": OnnxBinaryMathOperation(torch.div),
        "Erf": OnnxErf(),
        "Constant_3": OnnxConstant(torch.tensor(1.0)),
        "Add_1": OnnxBinaryMathOperation(torch.add),
        "Mul": OnnxBinaryMathOperation(torch.mul),
        "Constant_4": OnnxConstant(torch.tensor(0.5)),
        "Mul_1": OnnxBinaryMathOperation(torch.mul),
        "Add_2": OnnxBinaryMathOperation(torch.add),
        "Reshape": OnnxReshape(),
        "mu/Gemm": nn.Linear(16, 2),
        "Tanh": OnnxFunction(),
        "Constant_5": OnnxConstant(torch.tensor(2.0)),
        "Mul_2": OnnxBinaryMathOperation(torch.mul),
    }
    for k, m in mods.items():
        root.add_module(k, m)
    g = fx.Graph()
    x = g.placeholder("input_1")
    ini = {k: g.get_attr(f"initializers.{k}") for k in values}

    def call(name: str, *args: fx.Node) -> fx.Node:
        return g.call_module(name, args)

    h = call("Clip", call("Div", call("Sub", x, ini["mean"]), ini["std"]))
    a = call("Relu", call("Add", call("MatMul", h, ini["w_mm"]), ini["b_mm"]))
    h = call("Concat", a, call("side/Elu", call("side/Gemm", h)))
    z = call("Min", call("Max", call("net/net/2/Gemm", h), ini["lo"]), ini["hi"])  # Clip with per-feature bounds
    n = call("ln/LayerNormalization", z, call("Identity_0", ini["ln_w"]), ini["ln_b"])
    gelu = call(
        "Mul_1",
        call("Mul", n, call("Add_1", call("Erf", call("Div_1", n, call("Constant_2"))), call("Constant_3"))),
        call("Constant_4"),
    )
    r = call("Reshape", call("Add_2", z, gelu), ini["shape"])
    g.output(call("Mul_2", call("Tanh", call("mu/Gemm", r)), call("Constant_5")))
    return fx.GraphModule(root, g)


def test_an_onnx2torch_graph_is_pruned_through_its_own_modules():
    model, x = onnx2torch_like().eval(), states()
    g = find_groups(model, x[:2], strict=True)
    assert g.names == ["initializers.w_mm", "side/Gemm", "net/net/2/Gemm"]
    assert g.components == {name: [name] for name in g.names}  # one component per layer, not one for all initializers
    assert g.modules["initializers.w_mm"].transposed and g.modules["initializers.b_mm"].kind == "const"
    assert {(s.module, s.kind) for s in g["net/net/2/Gemm"].slices} == {
        ("net/net/2/Gemm", "linear.out"),
        ("initializers.ln_w", "layernorm"),
        ("mu/Gemm", "linear.in"),
        ("reshape", "reshape"),
        ("initializers.lo", "const"),
        ("initializers.hi", "const"),
    }
    assert ("net/net/2/Gemm", "linear.in", 12) in {(s.module, s.kind, s.offset) for s in g["side/Gemm"].slices}
    result = prune(model, g, keep=0.5, objective=fidelity(model), method="uniform", metric="l1")
    keep = keep_indices(score(model, g, "l1"), result.search.kept)
    with torch.no_grad():
        assert torch.allclose(result.model(x), masked_reference(model, g, keep)(x), atol=1e-5)
    held = sum(
        b.numel() for k, b in result.model.named_buffers() if k.split(".")[-1] in ("w_mm", "ln_w", "ln_b")
    )  # weights as buffers
    assert n_params(result.model) + held == result.after.params < result.before.params
    assert "Reshape" not in {n.target for n in result.model.graph.nodes}  # its literal shape was taken out with it
    torch.export.export(result.model, (x[:3],))


class Spelled(nn.Module):
    """A functional LayerNorm and a view that spell the width out in Python code, behind an identity and method activations."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(OBS, 16), nn.Linear(16, 2)
        self.w, self.bias = nn.Parameter(torch.rand(16) + 0.5), nn.Parameter(torch.randn(16) * 0.1)
        self.keep = nn.Identity()

    def forward(self, x):
        h = F.layer_norm(self.keep(self.a(x)).relu(), (16,), self.w, self.bias).view(-1, 16)
        return self.b(h.tanh())


def test_widths_spelled_in_python_need_the_trace_which_rewrites_them():
    torch.manual_seed(0)
    model, x = Spelled().eval(), states()
    plain = find_groups(model, x[:2])
    assert plain.names == [] and "pass torch.fx.symbolic_trace(model)" in plain.excluded["a"]
    traced = fx.symbolic_trace(model)
    g = find_groups(traced, x[:2], strict=True)
    assert g.names == ["a"] and {(s.module, s.kind) for s in g["a"].slices} == {
        ("a", "linear.out"),
        ("w", "layernorm"),
        ("view", "reshape"),
        ("b", "linear.in"),
    }
    keep = {"a": torch.tensor([0, 2, 3, 8, 15])}
    small = shrink(traced, g, keep)
    norm = next(n for n in small.graph.nodes if n.target is F.layer_norm)
    assert norm.args[1] == [5] or norm.kwargs.get("normalized_shape") == [5]
    assert not any(n.target == "view" for n in small.graph.nodes)
    with torch.no_grad():
        assert torch.allclose(small(x), masked_reference(traced, g, keep)(x), atol=1e-5)
    assert dict(small.named_parameters())["w"].shape == (5,)


@pytest.mark.parametrize("form", ("fx", "export"))
def test_a_graph_form_is_fine_tuned_in_place_of_its_tensors(form):
    model, x = make("sac", form), states()
    groups = find_groups(model, x[:2])
    result = prune(model, groups, keep=0.3, objective=fidelity(model), method="uniform", finetune=lambda m: x)
    assert result.finetune is not None and result.finetune.loss_after < result.finetune.loss_before
    assert result.finetune_kept == (result.objective_after >= result.search.objective)


class PeekNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.ln, self.c = nn.Linear(OBS, 8), nn.LayerNorm(8), nn.Linear(8, 2)

    def forward(self, x):
        return self.c(self.ln(self.a(x)) * self.ln.weight)  # the LayerNorm's weight, read again as a constant


class PeekLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(OBS, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        h = torch.tanh(self.a(x))
        return self.c(torch.tanh(self.b(h)) + F.linear(h, self.b.weight))  # b's weight, read by a functional Linear too


@pytest.mark.parametrize("trace", (False, True))
def test_a_module_weight_read_outside_its_module_leaves_its_dimensions_whole(trace):
    norm, linear = (fx.symbolic_trace(m) if trace else m for m in (PeekNorm(), PeekLinear()))
    g = find_groups(norm, states(2))
    assert g.names == [] and "reads 'ln.weight' outside its module" in g.excluded["a"]
    g = find_groups(linear, states(2))
    assert g.names == [] and "'b.weight' is used by 'b@linear' and by its module 'b'" in g.excluded["a"]
