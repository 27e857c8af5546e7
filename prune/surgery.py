"""Physical shrink: a new dense model whose Linear and LayerNorm layers really have fewer features.

The model's own class is kept (a deep copy with smaller submodules swapped in), so an
``nn.Sequential`` stays an ``nn.Sequential`` of the same layer types. A ``torch.fx.GraphModule``
stays a GraphModule: its ``nn.Linear`` / ``nn.LayerNorm`` submodules are swapped the same way, the
attribute tensors of graph-form layers (``aten.linear``'s weight, ``F.layer_norm``'s weight, a
per-feature constant) are sliced in place of the old ones, a LayerNorm op's literal
``normalized_shape`` is rewritten and a shape-keeping reshape on a pruned path is taken out of the
graph, which is then recompiled. :func:`masked_copy` builds the
reference the shrink is checked against: the original sizes with every removed unit cut off from
its consumers (their weight columns zeroed). :func:`reconstruct` optionally re-fits the layers that
lost inputs, by least squares on visited states (closed form; not a gradient fine-tune).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import cast

import torch
import torch.fx as fx
from torch import nn

from prune.capture import linear_inputs
from prune.errors import PruneError
from prune.groups import Groups, ModuleInfo
from prune.params import linear_bias, linear_weight, norm_affine, set_tensor, tensor_at

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
        else:  # layernorm, const, reshape: one unit-indexed axis
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
            axis = {"linear.in": "in", "linear.out": "out"}.get(s.kind, "norm")
            masks[(s.module, axis)][s.offset : s.offset + g.size] &= ~removed
    return {k: torch.nonzero(m).flatten() for k, m in masks.items()}


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _shrunk_linear(old: nn.Linear, rows: torch.Tensor, cols: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(cols), len(rows), bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
    new.weight.copy_(old.weight[rows][:, cols])
    if old.bias is not None:
        new.bias.copy_(old.bias[rows])
    return new


def _shrunk_layernorm(old: nn.LayerNorm, idx: torch.Tensor) -> nn.LayerNorm:
    new = nn.LayerNorm(
        len(idx),
        eps=old.eps,
        elementwise_affine=old.weight is not None,
        bias=old.bias is not None,
        device=old.weight.device if old.weight is not None else None,
    )
    if old.weight is not None:
        new.weight.copy_(old.weight[idx])
    if old.bias is not None:
        new.bias.copy_(old.bias[idx])
    return new


def _node(gm: fx.GraphModule, name: str) -> fx.Node:
    for n in gm.graph.nodes:
        if n.name == name:
            return n
    raise PruneError(f"node '{name}' is not in the graph of the model given (groups found on another model?)")


def _graph_linear(small: nn.Module, info: ModuleInfo, rows: torch.Tensor, cols: torch.Tensor) -> None:
    """Slice a graph-form Linear's weight (stored (out, in) or (in, out)) and bias attributes."""
    w = tensor_at(small, info.weight)
    w = (w.T[rows][:, cols].T if info.transposed else w[rows][:, cols]).contiguous()
    set_tensor(small, info.weight, w)
    if info.bias_path:
        set_tensor(small, info.bias_path, tensor_at(small, info.bias_path)[rows])


def _graph_layernorm(small: nn.Module, info: ModuleInfo, idx: torch.Tensor) -> None:
    """Slice a graph-form LayerNorm's weight and bias and rewrite its literal normalized_shape."""
    for path in (info.weight, info.bias_path):
        if path:
            set_tensor(small, path, tensor_at(small, path)[idx])
    node = _node(cast(fx.GraphModule, small), info.node) if isinstance(small, fx.GraphModule) and info.node else None
    if (
        node is not None and node.op == "call_function"
    ):  # a literal normalized_shape (onnx2torch's module reads the input's shape)
        if isinstance(node.kwargs.get("normalized_shape"), (list, tuple)):
            node.update_kwarg("normalized_shape", [len(idx)])
        elif len(node.args) > 1 and isinstance(node.args[1], (list, tuple)):
            node.update_arg(1, [len(idx)])


def _bypass(small: nn.Module, info: ModuleInfo) -> None:
    """Take a shape-keeping reshape out of the graph (its literal shape would no longer fit)."""
    gm = cast(fx.GraphModule, small)  # reshape entries exist only for GraphModules
    node = _node(gm, info.node)
    node.replace_all_uses_with(cast(fx.Node, node.args[0]))
    gm.graph.erase_node(node)


@torch.no_grad()
def shrink(model: nn.Module, groups: Groups, keep: Keep) -> nn.Module:
    """A new model with only the kept units: smaller nn.Linear / nn.LayerNorm (or sliced graph tensors), same class, same mode."""
    axes = _axis_keep(groups, keep)
    small = copy.deepcopy(model)
    edited = False
    for name, info in groups.modules.items():
        old = (
            model.get_submodule(name)
            if not (info.weight or info.bias_path or info.node or info.kind == "const")
            else None
        )
        new: nn.Module
        if info.kind == "linear":
            rows, cols = axes[(name, "out")], axes[(name, "in")]
            if len(rows) == info.out_features and len(cols) == info.in_features:
                continue
            if old is None:
                _graph_linear(small, info, rows, cols)
                continue
            new = _shrunk_linear(cast(nn.Linear, old), rows, cols)
        else:
            idx = axes[(name, "norm")]
            if len(idx) == info.norm_size:
                continue
            if info.kind == "const":
                set_tensor(small, name, tensor_at(small, name).index_select(-1, idx))
                continue
            if info.kind == "reshape":
                _bypass(small, info)
                edited = True
                continue
            if old is None:
                _graph_layernorm(small, info, idx)
                edited = True
                continue
            new = _shrunk_layernorm(cast(nn.LayerNorm, old), idx)
        new.train(old.training)
        for p_new, p_old in zip(new.parameters(), old.parameters()):
            p_new.requires_grad_(p_old.requires_grad)
        _set_submodule(small, name, new)
    if edited and isinstance(small, fx.GraphModule):
        small.graph.lint()
        small.recompile()
    return small


@torch.no_grad()
def masked_copy(model: nn.Module, groups: Groups, keep: Keep) -> nn.Module:
    """The original-sized model with removed units disconnected (consumer columns and producer rows zeroed)."""
    axes = _axis_keep(groups, keep)
    masked = copy.deepcopy(model)
    for name, info in groups.modules.items():
        if info.kind != "linear":
            continue
        weight, bias = linear_weight(masked, name, info), linear_bias(masked, name, info)
        cols = torch.ones(info.in_features, dtype=torch.bool)
        cols[axes[(name, "in")]] = False
        weight[:, cols] = 0.0
        rows = torch.ones(info.out_features, dtype=torch.bool)
        rows[axes[(name, "out")]] = False
        weight[rows] = 0.0
        if bias is not None:
            bias[rows] = 0.0
    return masked


def widths(model: nn.Module, groups: Groups) -> dict[str, dict[str, int]]:
    """Feature sizes per prunable layer of ``model`` (in/out for Linear, norm for LayerNorm)."""
    out = {}
    for name, info in groups.modules.items():
        if info.kind == "linear":
            weight = linear_weight(model, name, info)
            out[name] = {"in": int(weight.shape[1]), "out": int(weight.shape[0])}
        elif info.kind == "layernorm":
            if not (info.weight or info.bias_path or info.node):
                out[name] = {"norm": int(cast(nn.LayerNorm, model.get_submodule(name)).normalized_shape[0])}
            else:
                vec = next((p for p in norm_affine(model, name, info) if p is not None), None)
                shape = (
                    cast(Sequence[int], _node(cast(fx.GraphModule, model), info.node).args[1])
                    if vec is None
                    else [len(vec)]
                )
                size = int(shape[0])
                out[name] = {"norm": size}
    return out


def _linear_inputs(model: nn.Module, groups: Groups, names: list[str], states) -> dict[str, torch.Tensor]:
    """Inputs of the named Linears on ``states`` (flattened to rows)."""
    seen: dict[str, torch.Tensor] = {}
    linear_inputs(
        model, groups, names, states, lambda n, x: seen.__setitem__(n, x.detach().reshape(-1, x.shape[-1]).double())
    )
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
    names = [
        n for n, info in groups.modules.items() if info.kind == "linear" and len(axes[(n, "in")]) < info.in_features
    ]
    if not names:
        return
    target_in = _linear_inputs(original, groups, names, states)
    for name in names:
        x_small = _linear_inputs(small, groups, [name], states)[name]
        info = groups.modules[name]
        old_w, old_b = linear_weight(original, name, info), linear_bias(original, name, info)
        new_w, new_b = linear_weight(small, name, info), linear_bias(small, name, info)
        rows = axes[(name, "out")]
        y = target_in[name] @ old_w.double()[rows].T
        if old_b is not None:
            y = y + old_b.double()[rows]
        y_now = x_small @ new_w.double().T + (new_b.double() if new_b is not None else 0.0)
        x = torch.cat([x_small, torch.ones(len(x_small), 1, dtype=torch.float64)], 1) if new_b is not None else x_small
        gram = x.T @ x
        lam = ridge * float(torch.diagonal(gram).mean()) + 1e-12
        delta = torch.linalg.solve(gram + lam * torch.eye(len(gram), dtype=torch.float64), x.T @ (y - y_now))
        new_w.add_(delta[: new_w.shape[1]].T.to(new_w.dtype))
        if new_b is not None:
            new_b.add_(delta[-1].to(new_b.dtype))
