"""stable-baselines3 zips read without unpickling anything: the deterministic actor as a plain torch module.

An SB3 zip holds ``data`` (JSON), ``policy.pth`` (the policy's state dict, saved with ``torch.save``) and
optimiser states. ``data`` stores every value JSON cannot hold as ``{":type:": ..., ":serialized:":
base64 cloudpickle}`` next to readable copies of its first-level fields; SB3's own ``load`` unpickles
``:serialized:``, so a zip from a stranger runs whatever it carries. Here ``:serialized:`` is never
decoded: the architecture comes from the readable fields and the weights' shapes, the weights from
``torch.load(..., weights_only=True)``.

Readable ``data`` fields this relies on (SB3 1.x and 2.x write them):
- ``policy_class.__module__`` and the class name in ``policy_class.__init__`` (``"<function SACPolicy.__init__ ...>"``);
- ``observation_space`` / ``action_space``: ``:type:`` (must be a Box), ``_shape``, ``dtype``, ``low`` and
  ``high`` (numpy's ``str()`` of the bounds, e.g. ``"[-1. -1. -8.]"``);
- ``policy_kwargs.activation_fn`` (``"<class 'torch.nn.modules.activation.ELU'>"``), ``net_arch``,
  ``use_sde``, ``clip_mean``, ``squash_output``; ``use_sde`` at the top level;
- to tell algorithms sharing a policy class apart: ``policy_delay``/``target_noise_clip`` (DDPG vs TD3),
  ``clip_range`` (PPO vs A2C).

The actor computes what ``model.predict(obs, deterministic=True)`` returns for a flat Box observation
(SB3 only casts it to float32):
- SAC: ``tanh(mu(latent_pi(obs)))`` unscaled to the action box (``SquashToBox``); gSDE adds the
  ``Hardtanh(-clip_mean, clip_mean)`` SB3 puts on ``mu``; the ``log_std`` head is dropped.
- TD3 / DDPG: ``actor.mu`` (ends in tanh) unscaled to the action box.
- PPO / A2C: ``action_net(policy_net(obs))``, the Gaussian's mean, clipped to the box (``ClipToBox``),
  as ``predict`` clips Box actions; with gSDE and ``squash_output`` the mean is tanh-squashed and unscaled.
  The value network and ``log_std`` are dropped.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from export import ControllerSpec
from tools.controllers.native import ActionBox
from tools.controllers.obs_norm import ObsNorm
from tools.errors import ControllerError

SUPPORTED = (
    "stable-baselines3 SAC, TD3, DDPG (TD3Policy), PPO, A2C (ActorCriticPolicy) zips with an MlpPolicy, "
    "a flat Box observation and a bounded flat Box action"
)
# Parameterless torch.nn activations SB3's create_mlp may instantiate with activation_fn(); PReLU has weights.
ACTIVATIONS = (
    "ReLU",
    "Tanh",
    "ELU",
    "SiLU",
    "Mish",
    "LeakyReLU",
    "GELU",
    "Softplus",
    "Sigmoid",
    "SELU",
    "CELU",
    "ReLU6",
    "Hardtanh",
    "Hardswish",
    "Hardsigmoid",
    "Softsign",
    "Tanhshrink",
    "LogSigmoid",
)
# SB3's defaults when policy_kwargs names no activation_fn (SACPolicy/TD3Policy: ReLU; ActorCriticPolicy: Tanh).
DEFAULT_ACTIVATION = {"SACPolicy": "ReLU", "TD3Policy": "ReLU", "ActorCriticPolicy": "Tanh"}
POLICY_CLASSES = {
    ("stable_baselines3.sac.policies", "SACPolicy"),
    ("stable_baselines3.td3.policies", "TD3Policy"),
    ("stable_baselines3.common.policies", "ActorCriticPolicy"),
}
SAC_CLIP_MEAN = 2.0  # sac.policies.Actor's default clip_mean (gSDE only)


class SquashToBox(ActionBox):
    """``low + 0.5 * (tanh(x) + 1) * (high - low)``: SB3's tanh squash followed by ``unscale_action``."""

    span: torch.Tensor

    def __init__(self, low: np.ndarray, high: np.ndarray) -> None:
        super().__init__(low, high)
        # high - low once, as a buffer: a traced graph then reads it instead of baking in an anonymous constant
        self.register_buffer("span", torch.as_tensor(high - low, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.low + 0.5 * (torch.tanh(x) + 1.0) * self.span


class ClipToBox(ActionBox):
    """Clip to the action box, as SB3's ``predict`` clips an unsquashed Box action."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # minimum/maximum, not clamp: ONNX Min/Max take per-action bounds, Clip only scalars.
        return torch.maximum(torch.minimum(x, self.high), self.low)


@dataclass
class Sb3Policy:
    """The deterministic actor of an SB3 zip and what was read or assumed to build it."""

    actor: nn.Sequential  # raw observation -> action in the env's box; Linear/activation layers, then the box map
    algorithm: str  # SAC, TD3, DDPG, PPO, A2C
    policy_class: str  # e.g. stable_baselines3.sac.policies.SACPolicy
    obs_shape: tuple[int, ...]
    act_shape: tuple[int, ...]
    obs_low: np.ndarray
    obs_high: np.ndarray
    act_low: np.ndarray
    act_high: np.ndarray
    activation: str  # torch.nn class name
    net_arch: list[int]  # hidden sizes of the actor, from the weights
    output: str  # "squash" (tanh unscaled to the box) or "clip"
    stochastic: bool
    deterministic_action: str  # one sentence for the user: how the deterministic action is taken
    sb3_version: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def obs_dim(self) -> int:
        """Length of the (flat) observation."""
        return int(np.prod(self.obs_shape))

    @property
    def act_dim(self) -> int:
        """Length of the (flat) action."""
        return int(np.prod(self.act_shape))

    def summary(self) -> dict[str, Any]:
        """What was read, JSON-serialisable (everything but the module)."""
        return {
            "algorithm": self.algorithm,
            "policy_class": self.policy_class,
            "sb3_version": self.sb3_version,
            "obs_shape": list(self.obs_shape),
            "act_shape": list(self.act_shape),
            "obs_low": self.obs_low.tolist(),
            "obs_high": self.obs_high.tolist(),
            "act_low": self.act_low.tolist(),
            "act_high": self.act_high.tolist(),
            "activation": self.activation,
            "net_arch": list(self.net_arch),
            "output": self.output,
            "stochastic": self.stochastic,
            "deterministic_action": self.deterministic_action,
            "notes": list(self.notes),
        }

    def spec(self, env_id: str, unbounded_obs: float = 10.0) -> ControllerSpec:
        """The controller contract; an infinite observation bound becomes +-unbounded_obs."""
        obs_low = np.where(np.isfinite(self.obs_low), self.obs_low, -unbounded_obs)
        obs_high = np.where(np.isfinite(self.obs_high), self.obs_high, unbounded_obs)
        return ControllerSpec(
            obs_dim=self.obs_dim,
            act_dim=self.act_dim,
            obs_low=tuple(float(v) for v in obs_low),
            obs_high=tuple(float(v) for v in obs_high),
            act_low=tuple(float(v) for v in self.act_low),
            act_high=tuple(float(v) for v in self.act_high),
            env_id=env_id,
        )

    def with_obs_norm(self, norm: ObsNorm | None) -> nn.Sequential:
        """The actor preceded by the observation normaliser (one flat Sequential); the actor alone if None."""
        if norm is None:
            return self.actor
        if norm.mean.shape != (self.obs_dim,):
            raise ControllerError(
                f"{norm.source or 'observation statistics'}: mean has shape {norm.mean.shape}, "
                f"the {self.algorithm} policy takes {self.obs_dim} observations"
            )
        return nn.Sequential(norm.as_module(), *self.actor)


# ---------------------------------------------------------------- reading the zip


def read_sb3_zip(path: Path, env_spaces: tuple[Any, Any] | None = None) -> Sb3Policy:
    """Rebuild the deterministic actor of an SB3 zip from its JSON ``data`` and ``policy.pth`` (no unpickling).

    env_spaces, if given, is the env's (observation_space, action_space) (gymnasium Boxes): their exact
    bounds are used instead of the printed ones in ``data``, after checking that they agree.
    """
    path = Path(path)
    data, state, version = _read_members(path)
    module, cls = _policy_class(path, data)
    algorithm = _algorithm(cls, data)
    obs_shape, obs_low, obs_high = _box(path, data, "observation_space")
    act_shape, act_low, act_high = _box(path, data, "action_space")
    notes: list[str] = []
    rounded = [
        f"{key}.{name}"
        for key in ("observation_space", "action_space")
        for name in ("low", "high")
        if _maybe_rounded(data[key][name])
    ]
    if rounded and env_spaces is None:
        notes.append(
            f"{', '.join(rounded)} printed at numpy's 8-decimal precision in 'data': may differ from the "
            "env's float32 bounds in the last digit; pass the env's spaces for exact bounds"
        )
    if env_spaces is not None:
        obs_low, obs_high, act_low, act_high = _env_bounds(
            path, env_spaces, obs_shape, act_shape, (obs_low, obs_high, act_low, act_high), notes
        )
    if len(obs_shape) != 1:
        raise ControllerError(
            f"{path}: member 'data': observation shape {obs_shape} is not flat; supported: {SUPPORTED}"
        )
    if len(act_shape) != 1:
        raise ControllerError(f"{path}: member 'data': action shape {act_shape} is not flat; supported: {SUPPORTED}")
    if not (np.all(np.isfinite(act_low)) and np.all(np.isfinite(act_high))):
        raise ControllerError(
            f"{path}: member 'data': action bounds {act_low} .. {act_high} are not finite; "
            "a controller needs a bounded action box"
        )
    kwargs = _policy_kwargs(data)
    extractor = kwargs.get("features_extractor_class")
    if extractor is not None and not str(extractor).endswith(".FlattenExtractor'>"):
        raise ControllerError(
            f"{path}: member 'data': features_extractor_class {extractor} is not supported "
            f"(only the default FlattenExtractor); supported: {SUPPORTED}"
        )
    activation = _activation(path, cls, kwargs, notes)
    use_sde = bool(data.get("use_sde") or kwargs.get("use_sde"))
    build = {"SACPolicy": _sac_actor, "TD3Policy": _td3_actor, "ActorCriticPolicy": _actor_critic_actor}[cls]
    layers, hidden, output, sentence = build(path, state, activation, act_low, act_high, use_sde, kwargs, notes)
    stochastic = cls != "TD3Policy"
    _check_io(path, layers, int(np.prod(obs_shape)), int(np.prod(act_shape)))
    json_arch = kwargs.get("net_arch")
    if isinstance(json_arch, dict):
        json_arch = json_arch.get("pi")
    if isinstance(json_arch, list) and json_arch != hidden:
        notes.append(
            f"net_arch in data is {kwargs.get('net_arch')}, the weights have hidden sizes {hidden}: the weights were used"
        )
    if algorithm in ("TD3", "DDPG"):
        notes.append("TD3 and DDPG share TD3Policy; told apart by policy_delay and target_noise_clip in data")
    actor = nn.Sequential(*layers).eval()
    return Sb3Policy(
        actor=actor,
        algorithm=algorithm,
        policy_class=f"{module}.{cls}",
        obs_shape=obs_shape,
        act_shape=act_shape,
        obs_low=obs_low,
        obs_high=obs_high,
        act_low=act_low,
        act_high=act_high,
        activation=activation,
        net_arch=hidden,
        output=output,
        stochastic=stochastic,
        deterministic_action=sentence,
        sb3_version=version,
        notes=notes,
    )


def _read_members(path: Path) -> tuple[dict, dict[str, torch.Tensor], str]:
    """``data`` parsed as JSON, ``policy.pth`` loaded with weights_only, and the SB3 version string."""
    if not path.is_file():
        raise ControllerError(f"{path}: no such file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ControllerError(
            f"{path}: not a stable-baselines3 zip, cannot be read as sb3 (not a readable zip archive: {e})"
        ) from e
    with archive:
        names = set(archive.namelist())
        for member in ("data", "policy.pth"):
            if member not in names:
                raise ControllerError(
                    f"{path}: zip member {member!r} is missing; a stable-baselines3 zip has "
                    f"'data' and 'policy.pth' (members: {', '.join(sorted(names)) or 'none'})"
                )
        raw_data = _member_bytes(path, archive, "data")
        raw_policy = _member_bytes(path, archive, "policy.pth")
        version = ""
        if "_stable_baselines3_version" in names:
            version = _member_bytes(path, archive, "_stable_baselines3_version").decode("utf-8", "replace").strip()
    try:
        data = json.loads(raw_data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ControllerError(f"{path}: zip member 'data' is not JSON ({e})") from e
    if not isinstance(data, dict):
        raise ControllerError(f"{path}: zip member 'data' is not a JSON object")
    try:
        state = torch.load(io.BytesIO(raw_policy), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - weights_only refusals are UnpicklingError; corrupt files raise several types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = first[: first.index(". ") + 1] if ". " in first[:160] else first[:160]
        raise ControllerError(
            f"{path}: zip member 'policy.pth' cannot be loaded as plain tensors, so the file cannot be read as sb3 "
            f"(torch.load weights_only=True: {first})"
        ) from e
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ControllerError(f"{path}: zip member 'policy.pth' is not a state dict of tensors")
    return data, state, version


def _member_bytes(path: Path, archive: zipfile.ZipFile, member: str) -> bytes:
    """One member's bytes; a CRC or truncation error names the member."""
    try:
        return archive.read(member)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ControllerError(
            f"{path}: zip member {member!r} is corrupt, so the file cannot be read as sb3 ({e})"
        ) from e


def _policy_class(path: Path, data: dict) -> tuple[str, str]:
    """(module, class name) of the policy, from the readable fields of ``policy_class``; refused unless supported."""
    entry = data.get("policy_class")
    if not isinstance(entry, dict):
        raise ControllerError(f"{path}: member 'data' has no readable 'policy_class'; supported: {SUPPORTED}")
    module = str(entry.get("__module__", ""))
    match = re.match(r"<function (\w+)\.__init__ ", str(entry.get("__init__", "")))
    cls = match.group(1) if match else "<class name not readable>"
    if (module, cls) not in POLICY_CLASSES:
        hint = ""
        if cls in ("CnnPolicy", "MultiInputPolicy", "ActorCriticCnnPolicy", "MultiInputActorCriticPolicy"):
            hint = " (image or Dict observations)"
        elif ".dqn." in module or "qrdqn" in module:
            hint = " (discrete actions)"
        raise ControllerError(
            f"{path}: member 'data': policy class {module}.{cls}{hint} is not supported; supported: {SUPPORTED}"
        )
    return module, cls


def _algorithm(cls: str, data: dict) -> str:
    """The algorithm's name; TD3Policy and ActorCriticPolicy are each shared by two algorithms."""
    if cls == "SACPolicy":
        return "SAC"
    if cls == "TD3Policy":
        return "DDPG" if data.get("policy_delay") == 1 and data.get("target_noise_clip") == 0.0 else "TD3"
    return "PPO" if "clip_range" in data else "A2C"


def _box(path: Path, data: dict, key: str) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """Shape and bounds of a Box space from its readable fields (``_shape``, ``low``, ``high``)."""
    entry = data.get(key)
    if not isinstance(entry, dict):
        raise ControllerError(f"{path}: member 'data' has no readable {key!r}")
    kind = str(entry.get(":type:", ""))
    if not re.search(r"spaces\.box\.Box'>$", kind):
        what = {
            "Discrete": "discrete",
            "MultiDiscrete": "discrete",
            "MultiBinary": "binary",
            "Dict": "Dict",
            "Tuple": "Tuple",
        }
        name = kind.rsplit(".", 1)[-1].rstrip("'>")
        raise ControllerError(
            f"{path}: member 'data': {key} is {name or kind or 'unknown'} "
            f"({what.get(name, 'not Box')} space); supported: {SUPPORTED}"
        )
    shape_field = entry.get("_shape", entry.get("shape"))
    if not isinstance(shape_field, list) or not all(isinstance(n, int) and n > 0 for n in shape_field):
        raise ControllerError(f"{path}: member 'data': {key} has no readable shape (got {shape_field!r})")
    shape = tuple(shape_field)
    dtype = np.float64 if str(entry.get("dtype")) == "float64" else np.float32
    low = _printed_array(path, key, "low", entry.get("low"), shape, dtype)
    high = _printed_array(path, key, "high", entry.get("high"), shape, dtype)
    return shape, low.reshape(-1), high.reshape(-1)


def _printed_array(path: Path, key: str, name: str, text: Any, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A bound printed by numpy's ``str()`` (``"[-1. -1. -8.]"``, ``"[-inf inf]"``) back as an array."""
    if not isinstance(text, str):
        raise ControllerError(f"{path}: member 'data': {key}.{name} is not readable (got {text!r})")
    if "..." in text:
        raise ControllerError(
            f"{path}: member 'data': {key}.{name} was printed abbreviated ({text[:40]}...); "
            "pass the env's spaces to read its bounds"
        )
    tokens = text.replace("[", " ").replace("]", " ").replace(",", " ").split()
    try:
        values: np.ndarray = np.array([float(t) for t in tokens], dtype=dtype)
    except ValueError as e:
        raise ControllerError(f"{path}: member 'data': {key}.{name} {text!r} is not a list of numbers") from e
    if values.size != int(np.prod(shape)):
        raise ControllerError(f"{path}: member 'data': {key}.{name} has {values.size} values, shape is {shape}")
    return values.reshape(shape)


def _maybe_rounded(text: str) -> bool:
    """numpy prints at most 8 decimals (its default precision): a value printed with 8 may have been rounded."""
    mantissas = (t.lower().split("e")[0] for t in text.replace("[", " ").replace("]", " ").split())
    return any(len(m.partition(".")[2]) >= 8 for m in mantissas)


def _env_bounds(
    path: Path,
    env_spaces: tuple[Any, Any],
    obs_shape: tuple[int, ...],
    act_shape: tuple[int, ...],
    printed: tuple[np.ndarray, ...],
    notes: list[str],
) -> tuple[np.ndarray, ...]:
    """The env's exact bounds, checked against the ones printed in ``data``."""
    obs_space, act_space = env_spaces
    for what, space, shape in (("observation", obs_space, obs_shape), ("action", act_space, act_shape)):
        if tuple(getattr(space, "shape", ()) or ()) != shape:
            raise ControllerError(
                f"{path}: the env's {what} space has shape {getattr(space, 'shape', None)}, "
                f"the policy was trained on {shape}; pass --env with the env it was trained on"
            )
    exact = [
        np.asarray(b, dtype=np.float64).reshape(-1)
        for b in (obs_space.low, obs_space.high, act_space.low, act_space.high)
    ]
    names = ("observation low", "observation high", "action low", "action high")
    for name, env_b, zip_b in zip(names, exact, printed):
        same = np.allclose(env_b, zip_b, rtol=1e-6, atol=1e-7, equal_nan=True) or np.array_equal(env_b, zip_b)
        if same:
            continue
        if name.startswith("action"):
            raise ControllerError(
                f"{path}: the env's {name} {env_b} differs from the policy's {zip_b}; "
                "the policy would map its actions into the wrong box"
            )
        notes.append(f"the env's {name} {env_b} differs from the trained policy's {zip_b} (used the env's)")
    return tuple(b.astype(np.float32) for b in exact)


def _policy_kwargs(data: dict) -> dict:
    """The readable entries of ``policy_kwargs`` (a plain dict, or the first-level copies next to ``:serialized:``)."""
    kwargs = data.get("policy_kwargs")
    if not isinstance(kwargs, dict):
        return {}
    return {k: v for k, v in kwargs.items() if not k.startswith(":")}


def _activation(path: Path, cls: str, kwargs: dict, notes: list[str]) -> str:
    """The torch.nn activation named in ``policy_kwargs.activation_fn``, else SB3's default for the policy class."""
    text = kwargs.get("activation_fn")
    if text is None:
        name = DEFAULT_ACTIVATION[cls]
        notes.append(f"policy_kwargs names no activation_fn: assumed {name}, {cls}'s default")
        return name
    match = re.fullmatch(r"<class '([\w.]+)\.(\w+)'>", str(text))
    if not match or not match.group(1).startswith("torch.nn") or match.group(2) not in ACTIVATIONS:
        raise ControllerError(
            f"{path}: member 'data': activation_fn {text!r} is not supported; "
            f"supported: torch.nn {', '.join(ACTIVATIONS)}"
        )
    return match.group(2)


# ---------------------------------------------------------------- actors, one per policy class


def _linear_chain(path: Path, state: dict[str, torch.Tensor], prefix: str) -> list[nn.Linear]:
    """Linear layers stored as ``{prefix}{i}.weight`` at i = 0, 2, 4, ... (create_mlp: Linear, activation, ...)."""
    found: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        position, _, param = key[len(prefix) :].partition(".")
        if not position.isdigit() or param not in ("weight", "bias"):
            raise ControllerError(
                f"{path}: zip member 'policy.pth': {key} is not a Linear weight or bias; supported: {SUPPORTED}"
            )
        found.setdefault(int(position), {})[param] = value
    layers = []
    for n, index in enumerate(sorted(found)):
        params = found[index]
        weight = params.get("weight")
        if index != 2 * n or weight is None or weight.dim() != 2:
            raise ControllerError(
                f"{path}: zip member 'policy.pth': {prefix}{index} is not the Linear layer an "
                f"MLP (Linear, activation, ...) has there; supported: {SUPPORTED}"
            )
        layers.append(_linear(weight, params.get("bias")))
    return layers


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An nn.Linear holding these float32 weights."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight.float())
        if bias is not None:
            layer.bias.copy_(bias.float())
    return layer


def _require(path: Path, state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    """A state-dict entry that must be there."""
    if key not in state:
        raise ControllerError(f"{path}: zip member 'policy.pth' has no {key!r}; supported: {SUPPORTED}")
    return state[key]


def _no_extractor_params(path: Path, state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> None:
    """The default FlattenExtractor has no parameters; anything under a features extractor is a custom one."""
    for key in state:
        if key.startswith(prefixes):
            raise ControllerError(
                f"{path}: zip member 'policy.pth': {key} belongs to a custom features extractor; supported: {SUPPORTED}"
            )


def _with_activations(linears: list[nn.Linear], activation: str) -> list[nn.Module]:
    """Each Linear followed by a fresh ``activation_fn()``, as create_mlp and MlpExtractor build them."""
    layers: list[nn.Module] = []
    for linear in linears:
        layers += [linear, getattr(nn, activation)()]
    return layers


def _sac_actor(
    path: Path,
    state: dict[str, torch.Tensor],
    activation: str,
    low: np.ndarray,
    high: np.ndarray,
    use_sde: bool,
    kwargs: dict,
    notes: list[str],
) -> tuple[list[nn.Module], list[int], str, str]:
    """SAC: latent_pi, mu, (gSDE: Hardtanh(clip_mean)), tanh unscaled to the box; log_std dropped."""
    _no_extractor_params(path, state, ("actor.features_extractor.",))
    latent = _linear_chain(path, state, "actor.latent_pi.")
    layers = _with_activations(latent, activation)
    if use_sde:
        clip_mean = float(kwargs.get("clip_mean", SAC_CLIP_MEAN))
        if clip_mean > 0.0:
            layers.append(_linear(_require(path, state, "actor.mu.0.weight"), state.get("actor.mu.0.bias")))
            layers.append(nn.Hardtanh(min_val=-clip_mean, max_val=clip_mean))
        else:
            layers.append(_linear(_require(path, state, "actor.mu.weight"), state.get("actor.mu.bias")))
        sentence = (
            "SAC with gSDE: the deterministic action is tanh of the clipped Gaussian mean, unscaled to the "
            "action box, as SB3's predict(deterministic=True) takes it; the exploration noise is dropped"
        )
    else:
        layers.append(_linear(_require(path, state, "actor.mu.weight"), state.get("actor.mu.bias")))
        sentence = (
            "SAC's policy is a tanh-squashed Gaussian: the deterministic action is tanh of its mean, unscaled "
            "to the action box, as SB3's predict(deterministic=True) takes it; the log_std head is dropped"
        )
    layers.append(SquashToBox(low, high))
    return layers, [lin.out_features for lin in latent], "squash", sentence


def _td3_actor(
    path: Path,
    state: dict[str, torch.Tensor],
    activation: str,
    low: np.ndarray,
    high: np.ndarray,
    use_sde: bool,
    kwargs: dict,
    notes: list[str],
) -> tuple[list[nn.Module], list[int], str, str]:
    """TD3/DDPG: actor.mu is create_mlp(..., squash_output=True): Linear/activation pairs, Linear, Tanh."""
    _no_extractor_params(path, state, ("actor.features_extractor.",))
    linears = _linear_chain(path, state, "actor.mu.")
    if not linears:
        raise ControllerError(f"{path}: zip member 'policy.pth' has no actor.mu layers; supported: {SUPPORTED}")
    layers = _with_activations(linears[:-1], activation) + [linears[-1], SquashToBox(low, high)]
    sentence = (
        "the TD3/DDPG actor is deterministic: its tanh output unscaled to the action box, as SB3's predict "
        "returns it (exploration noise is added only in training)"
    )
    return layers, [lin.out_features for lin in linears[:-1]], "squash", sentence


def _actor_critic_actor(
    path: Path,
    state: dict[str, torch.Tensor],
    activation: str,
    low: np.ndarray,
    high: np.ndarray,
    use_sde: bool,
    kwargs: dict,
    notes: list[str],
) -> tuple[list[nn.Module], list[int], str, str]:
    """PPO/A2C: policy_net then action_net (the Gaussian mean), clipped to the box; value net and log_std dropped."""
    _no_extractor_params(path, state, ("features_extractor.", "pi_features_extractor.", "vf_features_extractor."))
    latent = _linear_chain(path, state, "mlp_extractor.policy_net.")
    head = _linear(_require(path, state, "action_net.weight"), state.get("action_net.bias"))
    layers = _with_activations(latent, activation) + [head]
    squash = bool(kwargs.get("squash_output", False))
    if squash and not use_sde:
        raise ControllerError(f"{path}: member 'data': squash_output without gSDE is not an SB3 configuration")
    if squash:
        layers.append(SquashToBox(low, high))
        sentence = (
            "the policy is a Gaussian (gSDE, squashed): the deterministic action is tanh of its mean unscaled "
            "to the action box, as SB3's predict(deterministic=True) takes it"
        )
    else:
        layers.append(ClipToBox(low, high))
        sentence = (
            "the policy is a Gaussian: the deterministic action is its mean (action_net), clipped to the action "
            "box as SB3's predict(deterministic=True) does; log_std and the value network are dropped"
        )
    if use_sde:
        notes.append("gSDE policy: its state-dependent exploration noise is not part of the deterministic action")
    return layers, [lin.out_features for lin in latent], "squash" if squash else "clip", sentence


def _check_io(path: Path, layers: list[nn.Module], obs_dim: int, act_dim: int) -> None:
    """The Linear layers chain from the observation size to the action size."""
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    width = obs_dim
    for linear in linears:
        if linear.in_features != width:
            raise ControllerError(
                f"{path}: zip member 'policy.pth': a layer takes {linear.in_features} inputs where "
                f"{width} arrive (observation size {obs_dim} from 'data')"
            )
        width = linear.out_features
    if width != act_dim:
        raise ControllerError(
            f"{path}: zip member 'policy.pth': the actor gives {width} outputs, the action space "
            f"in 'data' has {act_dim}"
        )
