"""Controllers trained elsewhere: TorchScript, torch.export, state dict + factory, ONNX, stable-baselines3.

Every foreign file becomes the same thing as the native controller file: an ``nn.Sequential`` of
Linear and activation layers whose last module maps the head's output into the env's action box
(``tools.controllers.native.build_mlp``). That canonical MLP is what prune/ traces, what is exported to
ONNX and TVM, and what the device runs, so host and device apply the action bounds the same way.

- raw policies (TorchScript, torch.export, factory, ONNX) act in env units: the output is clipped to
  the action box (``ClipOutput``), as gymnasium clips; an output found outside the box on sampled
  observations is refused unless ``clip_actions`` (``--clip-actions``) says the clip is intended.
- SAC: ``tanh(mu(latent_pi(obs)))`` rescaled to the box, i.e. ``BoundedOutput`` on ``mu``.
- TD3 / DDPG: ``actor.mu`` ends in tanh, rescaled to the box: ``BoundedOutput`` on the pre-tanh head.
- PPO: ``action_net(policy_net(obs))`` clipped to the box, as ``predict(deterministic=True)`` does.

The observation and action sizes and bounds of a foreign file come from the gymnasium env it is
for (``--env``, default Pendulum-v1). The canonical MLP is checked against the original on sampled
observations before it is used, so a conversion that changed the function is an error, not a result.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from export import ControllerSpec
from tools.controllers.native import ACTIVATIONS, FORMAT, Controller, build_mlp
from tools.controllers.source import FORMATS
from tools.errors import ControllerError

DEFAULT_ENV = "Pendulum-v1"
UNBOUNDED_OBS = 10.0  # an infinite observation bound becomes +-this for the box parity checks sample from
CHECK_SAMPLES = 1000
MATCH_TOL = 1e-5
# Layers that do nothing at inference on a flat observation batch.
PASSTHROUGH = (nn.Identity, nn.Dropout, nn.Flatten)
ONNX_ACTIVATIONS = {"Relu": "relu", "Tanh": "tanh", "Elu": "elu", "LeakyRelu": "leaky_relu", "Mish": "mish"}
ATEN_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "elu": "elu", "silu": "silu", "mish": "mish", "leaky_relu": "leaky_relu"}


@dataclass
class Layer:
    """One step of a feed-forward chain: a dense layer (weight, bias) or an activation by name."""

    name: str  # where it came from, for error messages
    kind: str  # "linear" or a key of tools.controllers.native.ACTIVATIONS
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None


# ---------------------------------------------------------------- detection

def detect_format(path: Path) -> str:
    """Which of FORMATS a file is, from its suffix and contents (zip members, ONNX protobuf)."""
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        base = {n.split("/", 1)[-1] for n in names}
        if "policy.pth" in names and "data" in names:
            return "sb3"
        if "archive_format" in base or "models/model.json" in base or path.suffix.lower() == ".pt2":
            return "torch-export"
        if any(n.split("/", 1)[-1].startswith("code/") for n in names) or "constants.pkl" in base:
            return "torchscript"
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - load_controller reports the unpickling error itself
            return "controller"
        if isinstance(payload, dict) and payload.get("format") != FORMAT and payload and all(
                isinstance(v, torch.Tensor) for v in payload.values()):
            return "state-dict"
        return "controller"
    try:
        import onnx

        onnx.load(str(path), load_external_data=False)
        return "onnx"
    except Exception:  # noqa: BLE001 - not protobuf: let the native loader say what is wrong
        return "controller"


# ---------------------------------------------------------------- the env's contract

def spec_from_env(env_id: str) -> ControllerSpec:
    """Observation/action sizes and bounds of a gymnasium env with flat Box spaces."""
    import gymnasium as gym

    try:
        env = gym.make(env_id)
    except Exception as e:  # noqa: BLE001 - gymnasium raises several types for unknown ids / missing extras
        raise ControllerError(f"--env {env_id}: cannot make it ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
    try:
        obs, act = env.observation_space, env.action_space
    finally:
        env.close()
    for what, space in (("observation", obs), ("action", act)):
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ControllerError(f"--env {env_id}: {what} space {space} is not a flat Box; only Box observations and actions are supported")
    assert isinstance(obs, gym.spaces.Box) and isinstance(act, gym.spaces.Box)  # checked above; tells the type checker
    if not np.all(np.isfinite(act.low)) or not np.all(np.isfinite(act.high)):
        raise ControllerError(f"--env {env_id}: action space {act} is unbounded; a controller needs finite action bounds")
    obs_low = np.where(np.isfinite(obs.low), obs.low, -UNBOUNDED_OBS)
    obs_high = np.where(np.isfinite(obs.high), obs.high, UNBOUNDED_OBS)
    return ControllerSpec(
        obs_dim=int(obs.shape[0]), act_dim=int(act.shape[0]),
        obs_low=tuple(float(v) for v in obs_low), obs_high=tuple(float(v) for v in obs_high),
        act_low=tuple(float(v) for v in act.low), act_high=tuple(float(v) for v in act.high), env_id=env_id,
    )


# ---------------------------------------------------------------- layer chains from each format

def _activation_of(module: nn.Module) -> str | None:
    """The ACTIVATIONS key of a default-configured activation module, else None."""
    for key, cls in ACTIVATIONS.items():
        if type(module) is cls:
            if isinstance(module, nn.ELU) and module.alpha != 1.0:
                return None
            if isinstance(module, nn.LeakyReLU) and module.negative_slope != 0.01:
                return None
            return key
    return None


def chain_of_modules(model: nn.Module, prefix: str = "") -> list[Layer]:
    """Leaf modules in registration order (what an MLP built from nn.Sequential runs in)."""
    chain = []
    for name, mod in model.named_modules():
        if any(True for _ in mod.children()):
            continue
        full = f"{prefix}{name}" if name else prefix.rstrip(".") or type(model).__name__
        kind = _leaf_kind(mod)
        if kind is None:
            continue
        if kind == "linear":
            chain.append(Layer(full, "linear", mod.weight.detach().clone(),
                               None if mod.bias is None else mod.bias.detach().clone()))
        elif kind == "?":
            type_name = getattr(mod, "original_name", type(mod).__name__)
            raise ControllerError(f"unsupported layer {full!r} ({type_name}): only Linear layers and "
                                  f"{', '.join(ACTIVATIONS)} activations (default parameters) are supported")
        else:
            chain.append(Layer(full, kind))
    return chain


def _leaf_kind(mod: nn.Module) -> str | None:
    """'linear', an activation key, None for a pass-through, '?' for anything else (eager or TorchScript)."""
    type_name = getattr(mod, "original_name", None)  # TorchScript keeps the eager class name here
    if isinstance(mod, torch.jit.ScriptModule) and type_name:
        if type_name == "Linear":
            return "linear"
        if type_name in ("Identity", "Dropout", "Flatten"):
            return None
        matches = [k for k, cls in ACTIVATIONS.items() if cls.__name__ == type_name]
        return matches[0] if matches else "?"
    if isinstance(mod, nn.Linear):
        return "linear"
    if isinstance(mod, PASSTHROUGH):
        return None
    return _activation_of(mod) or "?"


def chain_of_export(program, path: Path) -> list[Layer]:
    """The aten ops of a torch.export program, in graph order: linear and activations only."""
    gm = program.module()
    params = {**dict(gm.named_parameters()), **dict(gm.named_buffers())}
    attrs: dict[str, torch.Tensor | None] = {}
    chain = []
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            attrs[node.name] = params.get(node.target, getattr(gm, str(node.target).replace(".", "_"), None))
            continue
        if node.op in ("placeholder", "output") or (node.op == "call_module" and "guards" in str(node.target)):
            continue
        if node.op != "call_function":
            raise ControllerError(f"{path}: unsupported node {node.name!r} ({node.op} {node.target})")
        op = getattr(node.target, "__name__", str(node.target)).split(".")[0]
        if op == "linear":
            weight = attrs.get(node.args[1].name)
            bias = attrs.get(node.args[2].name) if len(node.args) > 2 and node.args[2] is not None else None
            if weight is None:
                raise ControllerError(f"{path}: layer {node.name!r}: weight is not a constant of the program")
            chain.append(Layer(node.name, "linear", weight.detach().clone(), None if bias is None else bias.detach().clone()))
        elif op in ATEN_ACTIVATIONS and len(node.args) == 1:
            chain.append(Layer(node.name, ATEN_ACTIVATIONS[op]))
        elif op in ("dropout", "alias", "detach", "clone", "_assert_tensor_metadata"):
            continue
        else:
            raise ControllerError(f"{path}: unsupported layer {node.name!r} ({node.target}): only linear and "
                                  f"{', '.join(ATEN_ACTIVATIONS)} are supported")
    return chain


def chain_of_onnx(path: Path) -> list[Layer]:
    """An ONNX MLP (Gemm, or MatMul + Add, and activations) as a chain; any other op is refused by name."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf decode errors vary
        raise ControllerError(f"{path}: not an ONNX model ({e})") from e
    inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()).float() for t in model.graph.initializer}
    for node in model.graph.node:  # constants folded in by some exporters
        if node.op_type == "Constant":
            inits[node.output[0]] = torch.from_numpy(numpy_helper.to_array(node.attribute[0].t).copy()).float()
    chain: list[Layer] = []
    nodes = [n for n in model.graph.node if n.op_type != "Constant"]
    i = 0
    while i < len(nodes):
        node = nodes[i]
        name = node.name or node.output[0]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gemm":
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                raise ControllerError(f"{path}: Gemm {name!r} with transA/alpha/beta is not supported")
            w = inits.get(node.input[1])
            if w is None:
                raise ControllerError(f"{path}: Gemm {name!r}: weight {node.input[1]!r} is not an initializer")
            w = w if attrs.get("transB", 0) else w.t()
            b = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            chain.append(Layer(name, "linear", w.contiguous(), b))
        elif node.op_type == "MatMul":
            w = inits.get(node.input[1])
            if w is None or w.dim() != 2:
                raise ControllerError(f"{path}: MatMul {name!r}: second input {node.input[1]!r} is not a 2-D initializer")
            b = None
            nxt = nodes[i + 1] if i + 1 < len(nodes) else None
            if nxt is not None and nxt.op_type == "Add" and node.output[0] in nxt.input:
                other = [x for x in nxt.input if x != node.output[0]][0]
                b = inits.get(other)
                if b is None:
                    raise ControllerError(f"{path}: Add {nxt.name!r}: {other!r} is not an initializer")
                i += 1
            chain.append(Layer(name, "linear", w.t().contiguous(), b))
        elif node.op_type in ONNX_ACTIVATIONS:
            if node.op_type == "Elu" and attrs.get("alpha", 1.0) != 1.0 or node.op_type == "LeakyRelu" and abs(attrs.get("alpha", 0.01) - 0.01) > 1e-9:
                raise ControllerError(f"{path}: unsupported layer {name!r} ({node.op_type} with alpha {attrs.get('alpha')})")
            chain.append(Layer(name, ONNX_ACTIVATIONS[node.op_type]))
        elif node.op_type not in ("Identity", "Dropout", "Flatten"):
            raise ControllerError(f"{path}: unsupported layer {name!r} (ONNX op {node.op_type}): only Gemm, MatMul+Add and "
                                  f"{', '.join(ONNX_ACTIVATIONS)} are supported")
        i += 1
    return chain


# ---------------------------------------------------------------- chain -> canonical MLP

def _weight(layer: Layer, where: Path) -> torch.Tensor:
    """A dense layer's weight (every chain reader sets it; a missing one is a broken file)."""
    if layer.weight is None:
        raise ControllerError(f"{where}: dense layer {layer.name!r} has no weight")
    return layer.weight


def mlp_from_chain(chain: list[Layer], spec: ControllerSpec, output: str, where: Path) -> tuple[nn.Sequential, dict]:
    """The canonical MLP (tools.controllers.native.build_mlp) holding a chain's weights; checks sizes against the env."""
    linears = [layer for layer in chain if layer.kind == "linear"]
    weights = [_weight(layer, where) for layer in linears]
    if not linears or chain[0].kind != "linear":
        raise ControllerError(f"{where}: expected a feed-forward network starting with a dense layer, found "
                              f"{', '.join(f'{x.name}:{x.kind}' for x in chain[:3]) or 'no layers'}")
    in_dim, out_dim = weights[0].shape[1], weights[-1].shape[0]
    if in_dim != spec.obs_dim:
        raise ControllerError(f"{where}: the model takes {in_dim} observations, env {spec.env_id} gives {spec.obs_dim}; "
                              f"pass --env with the env it was trained on")
    if out_dim != spec.act_dim:
        raise ControllerError(f"{where}: the model outputs {out_dim} actions, env {spec.env_id} takes {spec.act_dim}; "
                              f"pass --env with the env it was trained on")
    hidden_acts, output_activation = [], None
    for k, layer in enumerate(chain):
        if layer.kind == "linear":
            continue
        if k + 1 < len(chain) and chain[k + 1].kind != "linear" or k > 0 and chain[k - 1].kind != "linear":
            raise ControllerError(f"{where}: two activations in a row at {layer.name!r}; expected Linear/activation pairs")
        if k == len(chain) - 1:
            output_activation = layer.kind
        else:
            hidden_acts.append(layer)
    if len(hidden_acts) != len(linears) - 1:
        raise ControllerError(f"{where}: dense layers must alternate with activations ({len(linears)} dense, "
                              f"{len(hidden_acts)} hidden activations)")
    kinds = {layer.kind for layer in hidden_acts}
    if len(kinds) > 1:
        raise ControllerError(f"{where}: mixed hidden activations ({', '.join(f'{x.name}:{x.kind}' for x in hidden_acts)}); "
                              "one activation for all hidden layers is supported")
    activation = kinds.pop() if kinds else "relu"
    hidden = [int(w.shape[0]) for w in weights[:-1]]
    if len(linears) == 1:
        raise ControllerError(f"{where}: a single dense layer has no hidden layer to prune")
    module = build_mlp(spec, hidden, activation, output, output_activation)
    targets = [m for m in module if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer, weight, target in zip(linears, weights, targets):
            if tuple(weight.shape) != tuple(target.weight.shape):
                raise ControllerError(f"{where}: layer {layer.name!r} has weight {tuple(weight.shape)}, "
                                      f"the previous layer feeds {target.in_features}")
            target.weight.copy_(weight)
            if layer.bias is None:
                target.bias.zero_()
            else:
                target.bias.copy_(layer.bias.reshape(-1))
    arch = {"kind": "mlp", "hidden": hidden, "activation": activation}
    if output != "bounded":
        arch["output"] = output
    if output_activation:
        arch["output_activation"] = output_activation
    return module.eval(), arch


def check_deterministic(fn: Callable[[torch.Tensor], torch.Tensor], obs: torch.Tensor, where: Path) -> torch.Tensor:
    """The model's output on obs, after checking that two calls give the same actions."""
    with torch.no_grad():
        first, second = fn(obs), fn(obs)
    if first.shape != second.shape or not torch.equal(first, second):
        raise ControllerError(f"{where}: the model's output changes between two calls on the same observations "
                              "(stochastic output: sampling, noise or dropout); export its deterministic action, "
                              "e.g. the mean of the action distribution")
    return first


def check_matches(reference: torch.Tensor, module: nn.Module, obs: torch.Tensor, where: Path) -> None:
    """The canonical MLP reproduces the original's actions, or the conversion is refused."""
    with torch.no_grad():
        ours = module(obs)
    err = float((ours - reference.reshape(ours.shape)).abs().max()) if reference.numel() == ours.numel() else float("inf")
    if not err <= MATCH_TOL * max(1.0, float(reference.abs().max())):
        raise ControllerError(f"{where}: read as a Linear/activation chain the model gives actions up to {err:.3g} away "
                              "from the original; the forward pass is not its layers in order (functional ops, skips?)")


def check_bounds(raw: torch.Tensor, spec: ControllerSpec, where: Path) -> None:
    """Refuse a raw policy whose actions leave the env's box (they would be clipped, silently changing it)."""
    low, high = torch.tensor(spec.act_low), torch.tensor(spec.act_high)
    over = torch.clamp(raw - high, min=0).max().item()
    under = torch.clamp(low - raw, min=0).max().item()
    if over > 0 or under > 0:
        lo, hi = raw.min().item(), raw.max().item()
        raise ControllerError(f"{where}: actions out of bounds: on {raw.shape[0]} observations from the observation box "
                              f"the model outputs [{lo:.3g}, {hi:.3g}], env {spec.env_id} takes "
                              f"[{', '.join(f'{v:g}' for v in spec.act_low)}]..[{', '.join(f'{v:g}' for v in spec.act_high)}]; "
                              "pass --clip-actions to clip them to the bounds (host and device alike), or --env with "
                              "the env it was trained on")


# ---------------------------------------------------------------- loaders

def _factory(ref: str | None, path: Path) -> nn.Module:
    if not ref:
        raise ControllerError(f"{path}: a state dict holds no architecture; pass --factory package.module:function "
                              "(a function returning the untrained nn.Module)")
    module_name, sep, func_name = ref.partition(":")
    if not sep or not module_name or not func_name:
        raise ControllerError(f"--factory {ref!r}: expected package.module:function")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as e:
        raise ControllerError(f"--factory {ref!r}: {e}") from e
    model = func()
    if not isinstance(model, nn.Module):
        raise ControllerError(f"--factory {ref!r}: returned {type(model).__name__}, expected an nn.Module")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ControllerError(f"{path}: weights do not fit --factory {ref}: {str(e).splitlines()[0]}") from e
    return model.eval()


def _sb3_actor(path: Path, spec: ControllerSpec) -> tuple[list[Layer], str, Callable]:
    """The deterministic actor of an SB3 SAC/TD3/DDPG/PPO zip: its chain, output kind, and SB3's own predict."""
    try:
        import stable_baselines3 as sb3
    except ImportError as e:
        raise ControllerError(f"{path}: a stable-baselines3 model; install the extra: pip install prune-and-export[sb3]") from e
    with zipfile.ZipFile(path) as z:
        data = json.loads(z.read("data"))
    module = str(data.get("policy_class", {}).get("__module__", ""))
    algo: Any = {"stable_baselines3.sac.policies": sb3.SAC, "stable_baselines3.td3.policies": sb3.TD3,
            "stable_baselines3.common.policies": sb3.PPO}.get(module)
    if algo is None:
        raise ControllerError(f"{path}: stable-baselines3 policy {module or 'of unknown class'} is not supported (SAC, TD3, DDPG, PPO)")
    model = algo.load(str(path), device="cpu")
    policy = model.policy.eval()
    if algo is sb3.SAC:
        actor = policy.actor
        if actor.use_sde:
            raise ControllerError(f"{path}: SAC with gSDE is not supported")
        chain = chain_of_modules(actor.latent_pi, "actor.latent_pi.") + chain_of_modules(actor.mu, "actor.mu")
        output = "bounded"
    elif algo is sb3.TD3:
        chain = chain_of_modules(policy.actor.mu, "actor.mu.")
        if not chain or chain[-1].kind != "tanh":
            raise ControllerError(f"{path}: TD3/DDPG actor does not end in tanh (squash_output); not supported")
        chain, output = chain[:-1], "bounded"  # BoundedOutput is the tanh plus SB3's rescaling to the box
    else:
        if not isinstance(policy.action_dist, sb3.common.distributions.DiagGaussianDistribution):
            raise ControllerError(f"{path}: PPO with {type(policy.action_dist).__name__} is not supported (Box actions, Gaussian)")
        chain = chain_of_modules(policy.mlp_extractor.policy_net, "mlp_extractor.policy_net.") + \
            chain_of_modules(policy.action_net, "action_net")
        output = "clip"
    space = model.observation_space
    if tuple(space.shape) != (spec.obs_dim,):
        raise ControllerError(f"{path}: the model takes {tuple(space.shape)} observations, env {spec.env_id} gives {spec.obs_dim}; "
                              "pass --env with the env it was trained on")

    def predict(obs: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(model.predict(obs.numpy(), deterministic=True)[0], dtype=torch.float32)

    return chain, output, predict


def _torch_callable(module) -> Callable[[torch.Tensor], torch.Tensor]:
    def once(obs: torch.Tensor) -> torch.Tensor:
        try:
            return module(obs)
        except Exception:  # noqa: BLE001 - a program traced at batch 1 refuses a batch: feed it row by row
            if obs.shape[0] == 1:
                raise
            return torch.cat([module(row[None]) for row in obs])

    def call(obs: torch.Tensor) -> torch.Tensor:
        out = once(obs)
        if isinstance(out, (tuple, list)):
            raise ControllerError("the model returns a tuple; export a module that returns the action tensor")
        return out.float()

    return call


def load_foreign(path: Path, fmt: str, env: str | None = None, factory: str | None = None,
                 clip_actions: bool = False, seed: int = 0) -> Controller:
    """Load a controller trained elsewhere into the canonical MLP, checked against the original."""
    spec = spec_from_env(env or DEFAULT_ENV)
    where = path
    obs = torch.as_tensor(spec.sample_observations(CHECK_SAMPLES, seed))
    if fmt == "torchscript":
        try:
            original = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as e:  # noqa: BLE001 - TorchScript raises RuntimeError and friends
            raise ControllerError(f"{path}: not a TorchScript file ({str(e).strip().splitlines()[0]})") from e
        chain, output, call = chain_of_modules(original), "clip", _torch_callable(original)
    elif fmt == "torch-export":
        try:
            program = torch.export.load(str(path))
        except Exception as e:  # noqa: BLE001
            raise ControllerError(f"{path}: not a torch.export program ({str(e).strip().splitlines()[0]})") from e
        chain, output, call = chain_of_export(program, path), "clip", _torch_callable(program.module())
    elif fmt == "state-dict":
        original = _factory(factory, path)
        chain, output, call = chain_of_modules(original), "clip", _torch_callable(original)
    elif fmt == "onnx":
        import onnxruntime as ort

        chain = chain_of_onnx(path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def call(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([torch.from_numpy(session.run(None, {name: row[None].numpy()})[0]) for row in x])

        output = "clip"
    elif fmt == "sb3":
        chain, output, call = _sb3_actor(path, spec)
    else:
        raise ControllerError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    module, arch = mlp_from_chain(chain, spec, output, where)
    try:
        reference = check_deterministic(call, obs, where)
    except ControllerError:
        raise
    except Exception as e:  # noqa: BLE001 - a model that cannot run on the env's observations
        raise ControllerError(f"{where}: the model fails on a batch of {spec.obs_dim}-dim observations from {spec.env_id}: "
                              f"{str(e).strip().splitlines()[0]}") from e
    if output == "clip" and fmt != "sb3":
        if not clip_actions:
            check_bounds(reference, spec, where)
        reference = torch.maximum(torch.minimum(reference, torch.tensor(spec.act_high)), torch.tensor(spec.act_low))
    check_matches(reference, module, obs, where)
    arch["source_format"] = fmt
    return Controller(module, spec, arch, path, hashlib.sha256(path.read_bytes()).hexdigest())
