"""Where a group's tensors live: in an ``nn.Linear`` / ``nn.LayerNorm`` module, or as graph attributes.

A traced graph holds a layer either as a module call (``nn.Linear``) or as an op on attribute
tensors (``aten.linear(x, w, b)``, ``F.layer_norm(x, (n,), w, b)``, ``x @ W``). These helpers hand
out the weight as an (out, in) view and the bias, whichever form, and replace an attribute tensor
keeping its kind (parameter, buffer or plain constant) and its ``requires_grad``.
"""

from __future__ import annotations

from typing import Protocol, cast

import torch
from torch import nn


class LayerInfo(Protocol):
    """Where a layer's tensors are (what :class:`prune.groups.ModuleInfo` records): empty paths for a module form."""

    weight: str
    bias_path: str
    transposed: bool
    node: str


def owner(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    """The module holding attribute ``path`` and the attribute's own name."""
    parent, _, name = path.rpartition(".")
    return (model.get_submodule(parent) if parent else model), name


def tensor_at(model: nn.Module, path: str) -> torch.Tensor:
    """The tensor at attribute ``path`` (a parameter, buffer or constant)."""
    mod, name = owner(model, path)
    return cast(torch.Tensor, getattr(mod, name))


def set_tensor(model: nn.Module, path: str, value: torch.Tensor) -> None:
    """Replace the tensor at ``path``, keeping it a parameter / buffer / constant as it was."""
    mod, name = owner(model, path)
    old = getattr(mod, name)
    if isinstance(old, nn.Parameter):
        setattr(mod, name, nn.Parameter(value.detach().clone(), requires_grad=old.requires_grad))
    elif name in mod._buffers:
        mod._buffers[name] = value.detach().clone()
    else:
        setattr(mod, name, value.detach().clone())


def linear_weight(model: nn.Module, name: str, info: LayerInfo) -> torch.Tensor:
    """The weight of Linear ``name`` as an (out, in) tensor (a view of the stored one)."""
    if not info.weight:
        return cast(nn.Linear, model.get_submodule(name)).weight
    w = tensor_at(model, info.weight)
    return w.T if info.transposed else w


def linear_bias(model: nn.Module, name: str, info: LayerInfo) -> torch.Tensor | None:
    """The bias of Linear ``name`` (None when it has none)."""
    if not info.weight:
        return cast(nn.Linear, model.get_submodule(name)).bias
    return tensor_at(model, info.bias_path) if info.bias_path else None


def norm_affine(model: nn.Module, name: str, info: LayerInfo) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Weight and bias of LayerNorm ``name`` (either may be None)."""
    if not (info.weight or info.bias_path or info.node):
        mod = cast(nn.LayerNorm, model.get_submodule(name))
        return mod.weight, mod.bias
    return (
        tensor_at(model, info.weight) if info.weight else None,
        tensor_at(model, info.bias_path) if info.bias_path else None,
    )
