"""Every zoo family in every format becomes one canonical graph: the user's action, nothing else, supported ops only."""

from __future__ import annotations

import io
import operator
import sys
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from prune import PruneError, find_groups, masked_copy, shrink
from tools.controllers.graph_import import check_pt2_pickles, import_onnx2torch, to_graph
from tools.controllers.graph_ops import SUPPORTED, check_ops
from tools.controllers.obs_norm import ObsNorm
from tools.controllers.sb3_zip import read_sb3_zip
from tools.errors import ControllerError

FORMATS = ("state-dict", "torch-export", "torchscript", "onnx")
FAMILIES = ("cleanrl_agent", "rsl_rl_actor_critic", "simba", "tdmpc2", "sac_actor")


def _graph(entry, fmt: str) -> fx.GraphModule:
    """The file as a graph; only TorchScript is told the observation size (the other formats carry it)."""
    return to_graph(
        entry.files[fmt],
        fmt,
        obs_dim=3 if fmt == "torchscript" else None,
        factory=entry.factory,
        method=entry.method if fmt == "state-dict" else None,
    )


def _names(gm: fx.GraphModule) -> list[str]:
    return [str(n.target) for n in gm.graph.nodes] + [n.name for n in gm.graph.nodes] + list(gm.state_dict())


def _actor_params(entry) -> int:
    """Parameters of what reaches the action in the original (counted by hand per family)."""
    m = entry.model
    if entry.family == "cleanrl_agent":
        return sum(p.numel() for p in m.actor_mean.parameters())
    if entry.family == "rsl_rl_actor_critic":
        return sum(p.numel() for p in m.actor.parameters())
    if entry.family == "tdmpc2":
        head = m.pi[2]
        return sum(p.numel() for p in m.parameters()) - head.weight.numel() // 2 - head.bias.numel() // 2
    if entry.family == "sac_actor":
        return sum(p.numel() for p in m.parameters()) - sum(p.numel() for p in m.log_std.parameters())
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("family", FAMILIES)
def test_graph_is_the_action(zoo, zoo_obs, family: str, fmt: str) -> None:
    entry = zoo[family]
    gm = _graph(entry, fmt)
    with torch.no_grad():
        got = gm(zoo_obs)
    assert (got - entry.action(zoo_obs)).abs().max().item() <= 1e-5
    names = " ".join(_names(gm))
    for dead in entry.dead:  # the log_std head, the critic, an unused parameter: gone by the graph
        assert dead not in names, f"{dead!r} survived in {family}/{fmt}"
    assert sum(p.numel() for p in gm.parameters()) == _actor_params(entry)
    check_ops(gm)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("family", FAMILIES)
def test_prune_finds_groups(zoo, zoo_obs, family: str, fmt: str) -> None:
    gm = _graph(zoo[family], fmt)
    groups = find_groups(gm, zoo_obs[:8])
    assert groups.groups and not groups.excluded
    linears = [n for n, m in gm.named_modules() if isinstance(m, nn.Linear)]
    hidden = linears[:-1]  # every Linear but the action head produces a prunable dimension
    assert sorted(p for g in groups.groups for p in g.producers) == sorted(hidden)


@pytest.mark.parametrize("fmt", FORMATS)
def test_residual_units_form_one_group(zoo, zoo_obs, fmt: str) -> None:
    gm = _graph(zoo["simba"], fmt)
    groups = find_groups(gm, zoo_obs[:8])
    sizes = {len(g.producers): g for g in groups.groups}
    residual = sizes[3]  # embed and both blocks' fc2 write the residual stream: one group of 16 units
    assert residual.size == 16
    assert {s.kind for s in residual.slices} == {"linear.out", "linear.in", "layernorm"}
    assert len([g for g in groups.groups if len(g.producers) == 1]) == 2  # each block's 64-wide fc1


def test_state_dict_method_picks_the_action(zoo, zoo_obs) -> None:
    entry = zoo["cleanrl_agent"]
    gm = to_graph(entry.files["state-dict"], "state-dict", factory=entry.factory, method="actor_mean")
    assert torch.allclose(gm(zoo_obs), entry.model.actor_mean(zoo_obs), atol=1e-6)
    value = to_graph(entry.files["state-dict"], "state-dict", factory=entry.factory, output=1)
    assert torch.allclose(value(zoo_obs), entry.model.critic(zoo_obs), atol=1e-6)
    assert "actor_mean" not in " ".join(_names(value))


@pytest.mark.parametrize(
    ("fmt", "how"),
    [
        ("torch-export", "torch.export.load"),
        ("torchscript", "TS2EPConverter"),
        ("onnx", "onnx2torch"),
        ("state-dict", "method 'act_inference'"),
    ],
)
def test_graph_says_how_it_was_read(zoo, fmt: str, how: str) -> None:
    gm = _graph(zoo["rsl_rl_actor_critic"], fmt)
    assert how in gm.meta["import"]["traced_by"]
    assert gm.meta["import"]["obs_dim"] == 3


def test_torchscript_needs_the_observation_size(zoo) -> None:
    with pytest.raises(ControllerError, match="pass obs_dim"):
        to_graph(zoo["sac_actor"].files["torchscript"], "torchscript")


def test_tuple_output_needs_a_choice_when_asked(zoo) -> None:
    entry = zoo["cleanrl_agent"]
    with pytest.raises(ControllerError, match="returns 2 outputs"):
        to_graph(entry.files["onnx"], "onnx", output=None)


def test_sb3_sac_zip(sb3_models, pendulum_obs: np.ndarray) -> None:
    path, model = sb3_models("sac")
    gm = to_graph(path, "sb3")
    expected = model.predict(pendulum_obs, deterministic=True)[0]
    got = gm(torch.as_tensor(pendulum_obs)).detach().numpy()
    assert np.abs(got - expected).max() <= 1e-5
    assert "log_std" not in " ".join(_names(gm))
    check_ops(gm)
    groups = find_groups(gm, torch.as_tensor(pendulum_obs[:8]))
    assert [g.size for g in groups.groups] == [32, 32] and not groups.excluded


class _Sine(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.sin(self.fc(x)))


class _Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 8)
        self.b = nn.Linear(3, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.a(x) * torch.sigmoid(self.b(x)))


def _save_factory_model(tmp_path: Path, model: nn.Module, name: str, monkeypatch) -> tuple[Path, str]:
    """A state dict plus a factory module on sys.path that rebuilds ``model``'s class."""
    module = types.ModuleType(f"factory_{name}")
    module.make = lambda: type(model)()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), path)
    return path, f"{module.__name__}:make"


@pytest.mark.parametrize(
    ("model", "node", "why"),
    [
        (_Sine(), "sin", r"call_function sin\.default"),
        (_Gated(), "mul", "product of two observation-dependent tensors"),
    ],
)
def test_unsupported_op_is_refused_by_name(tmp_path, monkeypatch, model, node: str, why: str) -> None:
    path, factory = _save_factory_model(tmp_path, model, node, monkeypatch)
    with pytest.raises(ControllerError, match=why) as info:
        to_graph(path, "state-dict", obs_dim=3, factory=factory)
    assert f"unsupported node '{node}" in str(info.value)
    assert "supported: " + SUPPORTED[:40] in str(info.value)


def test_check_ops_accepts_the_affine_maps() -> None:
    graph = fx.Graph()
    x = graph.placeholder("obs")
    mean = graph.get_attr("mean")
    y = graph.call_function(operator.truediv, (graph.call_function(operator.sub, (x, mean)), 2.0))
    y = graph.call_function(torch.clamp, (y, -5.0, 5.0))
    y = graph.call_function(
        operator.add, (graph.call_function(operator.mul, (graph.call_function(torch.tanh, (y,)), 2.0)), 0.5)
    )
    graph.output(y)
    check_ops(fx.GraphModule({"mean": torch.zeros(3)}, graph))


def test_pt2_with_a_pickled_payload_is_refused_before_loading(zoo, tmp_path, payload) -> None:
    source = zoo["sac_actor"].files["torch-export"]
    target = tmp_path / "created_by_payload"
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("data/sample_inputs/model.pt"):
                data = payload(target)
            dst.writestr(item, data)
    with pytest.raises(ControllerError, match="weights-only load refuses"):
        to_graph(bad, "torch-export")
    assert not target.exists()
    check_pt2_pickles(source)  # the genuine archive passes


def test_onnx2torch_imports_without_torchvision() -> None:
    onnx2torch = import_onnx2torch()
    assert callable(onnx2torch.convert)


def test_saved_sample_inputs_are_plain_tensors(zoo) -> None:
    """What check_pt2_pickles reads with weights_only=True is what torch.export.save writes (a tensor tuple)."""
    with zipfile.ZipFile(zoo["simba"].files["torch-export"]) as z:
        member = next(n for n in z.namelist() if n.endswith("sample_inputs/model.pt"))
        sample = torch.load(io.BytesIO(z.read(member)), weights_only=True)
    assert isinstance(sample, tuple)


SB3_MODELS = (
    "sac",
    "sac_elu",
    "sac_gsde",
    "td3",
    "td3_tanh",
    "ddpg",
    "ppo",
    "ppo_pi_vf",
    "ppo_gsde",
    "ppo_gsde_squash",
    "a2c",
)
CLIPPED = ("ppo", "ppo_pi_vf", "ppo_gsde", "a2c")  # Gaussian mean clipped to the box by torch.minimum/maximum


@pytest.mark.parametrize("name", SB3_MODELS)
def test_sb3_zips_become_graphs_prune_reads(sb3_models, pendulum_obs: np.ndarray, name: str) -> None:
    path, model = sb3_models(name)
    gm = to_graph(path, "sb3")
    expected = model.predict(pendulum_obs, deterministic=True)[0]
    assert np.abs(gm(torch.as_tensor(pendulum_obs)).detach().numpy() - expected).max() <= 1e-5
    groups = find_groups(gm, torch.as_tensor(pendulum_obs[:8]))
    linears = [n for n, m in gm.named_modules() if isinstance(m, nn.Linear)]
    assert sorted(p for g in groups.groups for p in g.producers) == sorted(linears[:-1])
    assert set(groups.excluded) <= {linears[-1]}  # at most the action head (see the strict test below)


@pytest.mark.parametrize("name", CLIPPED)
def test_prune_strict_accepts_the_clip_to_the_action_box(sb3_models, pendulum_obs: np.ndarray, name: str) -> None:
    path, _ = sb3_models(name)
    gm = to_graph(path, "sb3")
    groups = find_groups(gm, torch.as_tensor(pendulum_obs[:8]), strict=True)
    assert not groups.excluded


def test_sb3_with_vecnormalize_statistics(sb3_models, pendulum_obs: np.ndarray) -> None:
    path, model = sb3_models("ppo")
    norm = ObsNorm(mean=np.array([0.1, -0.2, 0.5]), var=np.array([0.5, 0.4, 4.0]), clip_obs=5.0)
    gm = to_graph(path, "sb3", obs_norm=norm)
    expected = model.predict(norm.normalize(pendulum_obs), deterministic=True)[0]
    assert np.abs(gm(torch.as_tensor(pendulum_obs)).detach().numpy() - expected).max() <= 1e-5
    groups = find_groups(gm, torch.as_tensor(pendulum_obs[:8]))
    assert [g.size for g in groups.groups] == [64, 64]


@pytest.mark.parametrize("family", FAMILIES)
def test_prune_shrinks_the_graph(zoo, zoo_obs, family: str) -> None:
    gm = _graph(zoo[family], "state-dict")
    groups = find_groups(gm, zoo_obs[:8])
    keep = {g.name: torch.arange(0, g.size, 4) for g in groups.groups}
    small = shrink(gm, groups, keep)
    assert isinstance(small, fx.GraphModule)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in gm.parameters()) / 4
    with torch.no_grad():
        got, masked = small(zoo_obs), masked_copy(gm, groups, keep)(zoo_obs)
    if not any(isinstance(m, nn.LayerNorm) for m in gm.modules()):  # LayerNorm renormalises over the kept units
        assert (got - masked).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ("sac", "td3", "ppo", "ppo_pi_vf", "a2c"))
@pytest.mark.parametrize("opset", (17, 18))
def test_sb3_actors_as_onnx(sb3_models, pendulum_obs: np.ndarray, tmp_path: Path, name: str, opset: int) -> None:
    """What SB3 users export (the actor to ONNX) converts through onnx2torch: MatMul + Add, Min/Max lowered back."""
    path, model = sb3_models(name)
    onnx_path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            read_sb3_zip(path).actor,
            (torch.zeros(2, 3),),
            str(onnx_path),
            dynamo=False,
            input_names=["obs"],
            dynamic_axes={"obs": {0: "batch"}},
            opset_version=opset,
        )
    gm = to_graph(onnx_path, "onnx")
    expected = model.predict(pendulum_obs, deterministic=True)[0]
    assert np.abs(gm(torch.as_tensor(pendulum_obs)).detach().numpy() - expected).max() <= 1e-5
    linears = [n for n, m in gm.named_modules() if isinstance(m, nn.Linear)]
    groups = find_groups(gm, torch.as_tensor(pendulum_obs[:8]))
    assert sorted(p for g in groups.groups for p in g.producers) == sorted(linears[:-1])


@pytest.mark.parametrize("family", ("cleanrl_agent", "simba", "tdmpc2", "sac_actor"))
def test_layers_have_the_same_names_from_every_format(zoo, family: str) -> None:
    """onnx2torch's node-derived names (``actor_mean/actor_mean.0/Gemm``) come out as the torch module path."""
    names = {
        fmt: sorted(n for n, m in _graph(zoo[family], fmt).named_modules() if isinstance(m, (nn.Linear, nn.LayerNorm)))
        for fmt in FORMATS
    }
    assert all(v == names["state-dict"] for v in names.values()), names


class _DictPolicy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.value = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
        self.pi = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"value": self.value(x), "action": torch.tanh(self.pi(x))}


def test_dict_output_by_key(tmp_path, monkeypatch, zoo_obs) -> None:
    model = _DictPolicy().eval()
    path, factory = _save_factory_model(tmp_path, model, "dict_policy", monkeypatch)
    gm = to_graph(path, "state-dict", factory=factory, output="action")
    assert torch.allclose(gm(zoo_obs), model(zoo_obs)["action"], atol=1e-6)
    assert "value" not in " ".join(_names(gm))
    program = tmp_path / "dict_policy.pt2"
    torch.export.save(torch.export.export(model, (zoo_obs[:4],)), program)
    assert torch.allclose(
        to_graph(program, "torch-export", output="action")(zoo_obs[:4]), model(zoo_obs[:4])["action"], atol=1e-6
    )
    with pytest.raises(ControllerError, match="outputs are 'value', 'action'"):
        to_graph(path, "state-dict", factory=factory, output="mean")


def test_onnx_output_by_name(zoo, tmp_path, zoo_obs) -> None:
    entry = zoo["cleanrl_agent"]
    path = tmp_path / "named.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            entry.model,
            (zoo_obs[:4],),
            str(path),
            dynamo=False,
            input_names=["obs"],
            output_names=["action", "value"],
            dynamic_axes={"obs": {0: "batch"}},
        )
    value = to_graph(path, "onnx", output="value")
    assert torch.allclose(value(zoo_obs), entry.model.critic(zoo_obs), atol=1e-5)
    assert "actor_mean" not in " ".join(_names(value))


class _TwoTowers(nn.Module):
    """Two feature towers concatenated, then a head: prune must follow each tower's units through the cat."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(3, 8)
        self.b = nn.Linear(3, 5)
        self.head = nn.Linear(13, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([F.silu(self.a(x)), F.gelu(self.b(x))], dim=-1))


def test_concatenation_is_followed(tmp_path, monkeypatch, zoo_obs) -> None:
    model = _TwoTowers().eval()
    path, factory = _save_factory_model(tmp_path, model, "towers", monkeypatch)
    gm = to_graph(path, "state-dict", factory=factory)
    assert torch.allclose(gm(zoo_obs), model(zoo_obs), atol=1e-6)
    groups = find_groups(gm, zoo_obs[:8])
    assert {(g.name, g.size) for g in groups.groups} == {("a", 8), ("b", 5)}
    head = [s for g in groups.groups for s in g.slices if s.module == "head"]
    assert sorted(s.offset for s in head) == [0, 8]  # each tower's columns of the head, where the cat put them


class _Shared(nn.Module):
    """One Linear applied twice (tied weights)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Linear(3, 8)
        self.fc = nn.Linear(8, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(torch.relu(self.fc(self.inp(x))))))


def test_shared_weights_stay_shared(tmp_path, monkeypatch, zoo_obs) -> None:
    model = _Shared().eval()
    path, factory = _save_factory_model(tmp_path, model, "shared", monkeypatch)
    gm = to_graph(path, "state-dict", factory=factory)
    assert torch.allclose(gm(zoo_obs), model(zoo_obs), atol=1e-6)
    assert [n.target for n in gm.graph.nodes if n.op == "call_module"].count("fc") == 2
    with pytest.raises(PruneError, match="called 2 times"):
        find_groups(gm, zoo_obs[:8])


def test_prune_reads_a_torch_export_program_directly(zoo, zoo_obs) -> None:
    program = torch.export.load(str(zoo["sac_actor"].files["torch-export"]))
    groups = find_groups(program.module(), zoo_obs[:8])
    assert groups.names, "no groups and no word why"


class _Sampling(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mu = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mu(x)
        return mean + torch.randn_like(mean)


def test_stochastic_output_is_refused(tmp_path, monkeypatch) -> None:
    path, factory = _save_factory_model(tmp_path, _Sampling(), "sampling", monkeypatch)
    with pytest.raises(ControllerError, match="stochastic policy"):  # two calls differ: refused before tracing
        to_graph(path, "state-dict", factory=factory)


class _FloatCast(nn.Module):
    """SB3's export recipe: the policy's preprocess_obs casts the observation with ``obs.float()``."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(3, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x.float().to("cpu"))))


@pytest.mark.parametrize("fmt", ["torch-export", "torchscript"])
def test_a_cast_to_float32_is_a_copy(tmp_path, zoo_obs, fmt: str) -> None:
    model = _FloatCast().eval()
    x = torch.zeros(1, 3)
    path = tmp_path / ("m.pt2" if fmt == "torch-export" else "m.ts")
    if fmt == "torch-export":
        torch.export.save(torch.export.export(model, (x,)), path)
    else:
        torch.jit.trace(model, x).save(str(path))
    gm = to_graph(path, fmt, obs_dim=3)
    obs = torch.as_tensor(zoo_obs[:64], dtype=torch.float32)
    assert torch.allclose(gm(obs), model(obs), atol=1e-6)
    assert find_groups(gm, obs[:8]).names


class _OnnxableSB3Policy(nn.Module):
    """stable-baselines3's documented export wrapper: the policy's forward, (actions, values, log_prob)."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, observation: torch.Tensor):
        return self.policy(observation, deterministic=True)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_sb3s_documented_export_of_a_ppo_policy_reads_as_its_action(
    tmp_path, pendulum_obs: np.ndarray, fmt: str
) -> None:
    import stable_baselines3 as sb3

    policy = sb3.PPO("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [8, 8]}, seed=0, device="cpu").policy
    wrapper, x = _OnnxableSB3Policy(policy).eval(), torch.zeros(1, 3)
    path = tmp_path / f"ppo.{fmt}"
    if fmt == "onnx":  # SB3's docs: torch.onnx.export(OnnxableSB3Policy(model.policy), ...); three outputs
        torch.onnx.export(wrapper, (x,), str(path), opset_version=17, input_names=["input"], dynamo=False)
    else:
        torch.jit.trace(wrapper, x).save(str(path))
    gm = to_graph(path, fmt, obs_dim=3)  # the first output, the action: the value and log-prob heads drop out
    obs = torch.as_tensor(pendulum_obs[:64], dtype=torch.float32)
    with torch.no_grad():
        expected = wrapper(obs)[0]
    assert torch.allclose(gm(obs), expected, atol=1e-5)
    assert find_groups(gm, obs[:8]).names
