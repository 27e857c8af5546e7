"""Physical shrink: a new dense model whose Linear and LayerNorm layers really have fewer features.

The model's own class is kept (a deep copy with smaller submodules swapped in), so an
``nn.Sequential`` stays an ``nn.Sequential`` of the same layer types. :func:`masked_copy` builds the
reference the shrink is checked against: the original sizes with every removed unit cut off from
its consumers (their weight columns zeroed). :func:`reconstruct` optionally re-fits the layers that
lost inputs, by least squares on visited states (closed form; not a gradient fine-tune).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import cast

import torch
from torch import nn

from prune.errors import PruneError
from prune.groups import Groups

Keep = Mapping[str, torch.Tensor]  # group name -> sorted indices of the units kept


def keep_indices(scores: Mapping[str, torch.Tensor], kept: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """The ``kept[g]`` most important units of each group (highest score), as sorted indices."""
    out = {}
    for name, k in kept.items():
        s = scores[name]
        if not 1 <= k <= len(s):
            raise PruneError(f"group '{name}': cannot keep {k} of {len(s)} units")
        # stable tie-break by index so equal scores give a deterministic choice
        order = torch.argsort(s.double(), descending=True, stable=True)
        out[name] = torch.sort(order[:k]).values
    return out


def _axis_keep(groups: Groups, keep: Keep) -> dict[tuple[str, str], torch.Tensor]:
    """Indices kept along each (module, axis), where axis is out/in/norm."""
    sizes = {}
    for name, info in groups.modules.items():
        if info.kind == "linear":
            sizes[(name, "out")], sizes[(name, "in")] = info.out_features, info.in_features
        else:
            sizes[(name, "norm")] = info.norm_size
    masks = {k: torch.ones(n, dtype=torch.bool) for k, n in sizes.items()}
    for g in groups.groups:
        idx = keep.get(g.name)
        if idx is None:
            continue
        idx = torch.as_tensor(idx, dtype=torch.long)
        if idx.numel() < 1 or idx.min() < 0 or idx.max() >= g.size or len(torch.unique(idx)) != len(idx):
            raise PruneError(f"group '{g.name}': kept indices must be distinct, in [0, {g.size}) and at least one")
        removed = torch.ones(g.size, dtype=torch.bool)
        removed[idx] = False
        for s in g.slices:
            axis = {"linear.in": "in", "linear.out": "out", "layernorm": "norm"}[s.kind]
            masks[(s.module, axis)][s.offset: s.offset + g.size] &= ~removed
    return {k: torch.nonzero(m).flatten() for k, m in masks.items()}


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _linear(model: nn.Module, name: str) -> nn.Linear:
    return cast(nn.Linear, model.get_submodule(name))  # groups.modules records its kind from isinstance


def _shrunk_linear(old: nn.Linear, rows: torch.Tensor, cols: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(cols), len(rows), bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
    new.weight.copy_(old.weight[rows][:, cols])
    if old.bias is not None:
        new.bias.copy_(old.bias[rows])
    return new


def _shrunk_layernorm(old: nn.LayerNorm, idx: torch.Tensor) -> nn.LayerNorm:
    new = nn.LayerNorm(len(idx), eps=old.eps, elementwise_affine=old.weight is not None,
                       bias=old.bias is not None, device=old.weight.device if old.weight is not None else None)
    if old.weight is not None:
        new.weight.copy_(old.weight[idx])
    if old.bias is not None:
        new.bias.copy_(old.bias[idx])
    return new


@torch.no_grad()
def shrink(model: nn.Module, groups: Groups, keep: Keep) -> nn.Module:
    """A new model with only the kept units: smaller nn.Linear / nn.LayerNorm, same class, same mode."""
    axes = _axis_keep(groups, keep)
    small = copy.deepcopy(model)
    for name, info in groups.modules.items():
        old = model.get_submodule(name)
        new: nn.Module
        if info.kind == "linear":
            rows, cols = axes[(name, "out")], axes[(name, "in")]
            if len(rows) == info.out_features and len(cols) == info.in_features:
                continue
            new = _shrunk_linear(cast(nn.Linear, old), rows, cols)
        else:
            idx = axes[(name, "norm")]
            if len(idx) == info.norm_size:
                continue
            new = _shrunk_layernorm(cast(nn.LayerNorm, old), idx)
        new.train(old.training)
        for p_new, p_old in zip(new.parameters(), old.parameters()):
            p_new.requires_grad_(p_old.requires_grad)
        _set_submodule(small, name, new)
    return small


@torch.no_grad()
def masked_copy(model: nn.Module, groups: Groups, keep: Keep) -> nn.Module:
    """The original-sized model with removed units disconnected (consumer columns and producer rows zeroed)."""
    axes = _axis_keep(groups, keep)
    masked = copy.deepcopy(model)
    for name, info in groups.modules.items():
        if info.kind != "linear":
            continue
        lin = _linear(masked, name)
        cols = torch.ones(info.in_features, dtype=torch.bool)
        cols[axes[(name, "in")]] = False
        lin.weight[:, cols] = 0.0
        rows = torch.ones(info.out_features, dtype=torch.bool)
        rows[axes[(name, "out")]] = False
        lin.weight[rows] = 0.0
        if lin.bias is not None:
            lin.bias[rows] = 0.0
    return masked


def widths(model: nn.Module, groups: Groups) -> dict[str, dict[str, int]]:
    """Feature sizes per prunable layer of ``model`` (in/out for Linear, norm for LayerNorm)."""
    out = {}
    for name, info in groups.modules.items():
        if info.kind == "linear":
            lin = _linear(model, name)
            out[name] = {"in": lin.in_features, "out": lin.out_features}
        else:
            out[name] = {"norm": int(cast(nn.LayerNorm, model.get_submodule(name)).normalized_shape[0])}
    return out


def _linear_inputs(model: nn.Module, names: list[str], states) -> dict[str, torch.Tensor]:
    """Inputs of the named Linears on ``states`` (flattened to rows), from forward pre-hooks."""
    seen: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(n).register_forward_pre_hook(
        lambda mod, args, n=n: seen.__setitem__(n, args[0].detach().reshape(-1, args[0].shape[-1]).double())) for n in names]
    try:
        with torch.no_grad():
            model(*(states if isinstance(states, tuple) else (states,)))
    finally:
        for h in handles:
            h.remove()
    return seen


@torch.no_grad()
def reconstruct(original: nn.Module, small: nn.Module, groups: Groups, keep: Keep, states, ridge: float = 1e-3) -> None:
    """Re-fit, in place, every Linear that lost inputs so its outputs match the original's on ``states``.

    Layer by layer in graph order, a ridge least-squares correction of the weights and bias maps the
    small model's inputs (after the earlier corrections) to the original model's outputs of that
    layer (the kept rows). Closed form, no gradient training: what the removed units used to add is
    re-expressed with the units that stay, as far as the visited states allow.
    """
    axes = _axis_keep(groups, keep)
    names = [n for n, info in groups.modules.items()
             if info.kind == "linear" and len(axes[(n, "in")]) < info.in_features]
    if not names:
        return
    target_in = _linear_inputs(original, names, states)
    for name in names:
        x_small = _linear_inputs(small, [name], states)[name]
        old, new = _linear(original, name), _linear(small, name)
        rows = axes[(name, "out")]
        y = target_in[name] @ old.weight.double()[rows].T
        if old.bias is not None:
            y = y + old.bias.double()[rows]
        y_now = x_small @ new.weight.double().T + (new.bias.double() if new.bias is not None else 0.0)
        x = torch.cat([x_small, torch.ones(len(x_small), 1, dtype=torch.float64)], 1) if new.bias is not None else x_small
        gram = x.T @ x
        lam = ridge * float(torch.diagonal(gram).mean()) + 1e-12
        delta = torch.linalg.solve(gram + lam * torch.eye(len(gram), dtype=torch.float64), x.T @ (y - y_now))
        new.weight.add_(delta[: new.in_features].T.to(new.weight.dtype))
        if new.bias is not None:
            new.bias.add_(delta[-1].to(new.bias.dtype))
