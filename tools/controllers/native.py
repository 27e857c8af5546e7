"""Controller files: the bundled MLP format, loaded with ``weights_only=True``.

A controller file is ``torch.save`` of a plain dict (tensors, numbers, strings, lists only)::

    {"format": "prune-and-export.controller", "version": 1,
     "spec": ControllerSpec.to_dict(),
     "architecture": {"kind": "mlp", "hidden": [256, 256], "activation": "elu"},
     "state_dict": {...}}

The model is an ``nn.Sequential`` of Linear and activation layers ending in :class:`BoundedOutput`,
so the action bounds travel inside the network (and into ONNX and the device).
A pruned MLP is the same format with narrower ``hidden`` widths. A controller with weight-only int8
layers (:class:`prune.Int8Linear`) lists their indices among the Linears in ``architecture["int8"]``
(e.g. ``[0, 1, 2]``); its state dict holds their codes, scales and biases, no float weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export import ControllerSpec
from prune import Int8Linear
from tools.errors import ControllerError

FORMAT = "prune-and-export.controller"
VERSION = 1
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "leaky_relu": nn.LeakyReLU,
}


class ActionBox(nn.Module):
    """The action box's bounds as buffers (float32), so they travel with the weights into ONNX and the device."""

    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, low: torch.Tensor | np.ndarray, high: torch.Tensor | np.ndarray) -> None:
        super().__init__()
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32).clone())
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32).clone())


class BoundedOutput(ActionBox):
    """Squash to the action box: ``low + (tanh(x) + 1) / 2 * (high - low)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.low + (torch.tanh(x) + 1.0) * 0.5 * (self.high - self.low)


class ClipOutput(ActionBox):
    """Clip to the action box, as gymnasium does to an out-of-box action (for controllers trained unsquashed)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # minimum/maximum, not clamp: ONNX Min/Max take per-action bounds, Clip only scalars.
        return torch.maximum(torch.minimum(x, self.high), self.low)


# architecture["output"]: how the head's output becomes an action inside the network (so on the device too)
OUTPUTS: dict[str, type[nn.Module]] = {"bounded": BoundedOutput, "clip": ClipOutput}


def build_mlp(
    spec: ControllerSpec,
    hidden: list[int],
    activation: str,
    output: str = "bounded",
    output_activation: str | None = None,
) -> nn.Sequential:
    """The controller architecture: Linear/activation pairs, a Linear head (optionally activated), bounded or clipped output."""
    if output not in OUTPUTS:
        raise ControllerError(f"unknown output {output!r}; known: {', '.join(OUTPUTS)}")
    if output_activation is not None and output_activation not in ACTIVATIONS:
        raise ControllerError(f"unknown output activation {output_activation!r}; known: {', '.join(ACTIVATIONS)}")
    if activation not in ACTIVATIONS:
        raise ControllerError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
    if not hidden or any(int(w) < 1 for w in hidden):
        raise ControllerError(f"hidden widths must be positive integers, got {hidden}")
    layers: list[nn.Module] = []
    width = spec.obs_dim
    for w in hidden:
        layers += [nn.Linear(width, int(w)), ACTIVATIONS[activation]()]
        width = int(w)
    layers.append(nn.Linear(width, spec.act_dim))
    if output_activation is not None:
        layers.append(ACTIVATIONS[output_activation]())
    layers.append(OUTPUTS[output](torch.tensor(spec.act_low), torch.tensor(spec.act_high)))
    return nn.Sequential(*layers)


@dataclass
class Controller:
    """A loaded controller: the torch module, its contract, and where it came from."""

    module: nn.Module
    spec: ControllerSpec
    architecture: dict
    path: Path | None = None
    sha256: str = ""

    @torch.no_grad()
    def act(self, obs):
        """Actions for a batch of observations (numpy in, numpy out)."""
        x = torch.as_tensor(obs, dtype=torch.float32)
        return self.module(x).numpy()


def mlp_architecture(module: nn.Module, activation: str) -> dict:
    """The architecture record of an MLP built by :func:`build_mlp` (widths read from the layers)."""
    layers = list(module.children())  # an nn.Sequential: its layers in order
    linears = [m for m in layers if isinstance(m, nn.Linear | Int8Linear)]
    arch: dict = {"kind": "mlp", "hidden": [m.out_features for m in linears[:-1]], "activation": activation}
    int8 = [i for i, m in enumerate(linears) if isinstance(m, Int8Linear)]
    if int8:
        arch["int8"] = int8
    if isinstance(layers[-1], ClipOutput):
        arch["output"] = "clip"
    head_activation = [name for name, cls in ACTIVATIONS.items() if type(layers[-2]) is cls]
    if head_activation:
        arch["output_activation"] = head_activation[0]
    return arch


def save_controller(path: Path, module: nn.Module, spec: ControllerSpec, architecture: dict) -> None:
    """Write a controller file atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "spec": spec.to_dict(),
        "architecture": architecture,
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def brief(e: BaseException, limit: int = 160) -> str:
    """An exception's message in one short line: its first line, cut at the first sentence when long."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    if len(first) > limit and ". " in first[:limit]:
        first = first[: first.index(". ") + 1]
    return first if len(first) <= limit else first[: limit - 3] + "..."


def check_finite(tensors: Iterable[tuple[str, object]], where: Path | str) -> None:
    """Refuse NaN or Inf in any named tensor (weights, biases, bounds), naming the file and the tensor."""
    for name, value in tensors:
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ControllerError(
                f"{where}: tensor {name!r} holds {bad} non-finite value(s) (NaN or Inf) of {value.numel()}; "
                "a controller needs finite weights"
            )


def default_controller_path() -> Path:
    """The bundled reference controller (a 3-256-256-1 MLP trained for Pendulum-v1)."""
    return Path(str(resources.files("tools") / "assets" / "pendulum_mlp.pt"))


def load_native(path: Path) -> Controller:
    """Load a native controller file (the format above); problems raise ControllerError naming the file."""
    raw = path.read_bytes()
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch's unpickler raises anything (IndexError, KeyError...) on garbage
        first = brief(e)
        raise ControllerError(f"{path}: not a controller file that loads with weights_only=True ({first})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ControllerError(f"{path}: not a prune-and-export controller (missing format {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise ControllerError(
            f"{path}: controller format version {payload.get('version')!r}, this tool reads {VERSION}"
        )
    try:
        spec = ControllerSpec.from_dict(payload["spec"])
        arch = dict(payload["architecture"])
        state = payload["state_dict"]
    except (KeyError, TypeError, ValueError) as e:
        raise ControllerError(f"{path}: {e}") from e
    if not isinstance(state, dict):
        raise ControllerError(f"{path}: state_dict is a {type(state).__name__}, expected a dict of tensors")
    check_finite(state.items(), path)
    if arch.get("kind") != "mlp":
        raise ControllerError(f"{path}: architecture kind {arch.get('kind')!r} is not supported (expected 'mlp')")
    module = build_mlp(
        spec,
        list(arch.get("hidden", [])),
        str(arch.get("activation", "")),
        str(arch.get("output", "bounded")),
        arch.get("output_activation"),
    )
    _int8_layers(module, arch.get("int8", []), path)
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise ControllerError(f"{path}: weights do not match the architecture {arch}: {str(e).splitlines()[0]}") from e
    module.eval()
    return Controller(module, spec, arch, path, hashlib.sha256(raw).hexdigest())


def _int8_layers(module: nn.Sequential, indices: object, path: Path) -> None:
    """Swap the Linears ``architecture["int8"]`` lists (indices among the Linears) for empty Int8Linears, in place."""
    slots = [i for i, m in enumerate(module) if isinstance(m, nn.Linear)]
    if not isinstance(indices, list) or not all(isinstance(i, int) and 0 <= i < len(slots) for i in indices):
        raise ControllerError(f"{path}: architecture int8 {indices!r}: expected indices of its {len(slots)} Linears")
    for i in indices:
        lin = module[slots[i]]
        assert isinstance(lin, nn.Linear)
        module[slots[i]] = Int8Linear(lin.in_features, lin.out_features, bias=lin.bias is not None)


def pendulum_spec() -> ControllerSpec:
    """The contract of a Pendulum-v1 controller (observation box and torque limits of the env)."""
    return ControllerSpec(
        obs_dim=3,
        act_dim=1,
        obs_low=(-1.0, -1.0, -8.0),
        obs_high=(1.0, 1.0, 8.0),
        act_low=(-2.0,),
        act_high=(2.0,),
        env_id="Pendulum-v1",
    )
