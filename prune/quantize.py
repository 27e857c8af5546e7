"""Weight-only int8: a Linear whose float weight is replaced by int8 codes and one float scale per output.

The contract (the exact host twin a device must reproduce; an exporter builds on it):

- Quantizing one weight ``w`` (float32, shape [out, in]), row by row (per output channel):
  ``scale[j] = max_i |w[j, i]| / 127`` computed in float32 (one float32 division); a row of zeros
  gets ``scale[j] = 1`` and codes 0. ``q[j, i] = clamp(round_half_to_even(w[j, i] / scale[j]), -127, 127)``,
  the quotient a float32 division, the rounding half to even (``torch.round``, ``numpy.rint``),
  stored as int8. -128 is never used (the range is symmetric, so negating a code never overflows).
- Storage: ``weight_q`` int8 [out, in], ``scale`` float32 [out], ``bias`` float32 [out] or None.
  The float weight is gone: it is not kept beside the codes.
- Forward, activations in float32: ``acc[j] = sum_i x[i] * float32(q[j, i])`` accumulated in float32
  (the codes converted exactly to float32, no scale inside the sum), then **one multiply per
  output after the accumulation**: ``y[j] = acc[j] * scale[j]``, then ``y[j] = y[j] + bias[j]``
  (two float32 operations, in this order; no fused multiply-add is implied). In torch:
  ``y = F.linear(x, weight_q.to(float32)) * scale + bias``. The order of the float32 sum over ``i``
  is the implementation's (BLAS on the host): results agree bit for bit whenever the products and
  partial sums are exact in float32 (e.g. dyadic inputs), and to float32 rounding of the sum otherwise.
- Footprint (:func:`bytes_footprint`): 1 byte per code, 4 per scale, 4 per bias entry; every
  float parameter elsewhere 4 bytes.

:func:`quantize` swaps the ``nn.Linear`` modules of a model (all, or those of chosen components)
for :class:`Int8Linear`; in a ``torch.fx.GraphModule`` a Linear called as a module
(``call_module``, as ``symbolic_trace`` leaves it) is swapped the same way, and a Linear held as
graph tensors (``aten.linear`` / ``addmm`` / ``x @ W`` on attributes: a torch.export or onnx2torch
graph, known from the groups found on it) becomes a ``call_module`` of a new ``<name>_int8``
submodule, its float tensors removed. A component's Linears are those whose
output units are one of its groups, and an output layer (no group of its own) goes with the
component of its input units (:func:`component_linears`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from prune.errors import PruneError
from prune.groups import Groups
from prune.params import LayerInfo, linear_bias, linear_weight, owner

QMAX = 127  # symmetric int8 range [-127, 127]
CODE_BYTES = 1  # one int8 code per weight
SCALE_BYTES = 4  # one float32 scale per output channel
FLOAT_BYTES = 4  # float32 parameters (biases, every float weight)


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Int8 codes [out, in] and float32 scales [out] of a float weight, by the contract (see module doc)."""
    if weight.ndim != 2:
        raise PruneError(f"quantize_weight needs an (out, in) weight, got shape {tuple(weight.shape)}")
    w = weight.detach().to(torch.float32)
    peak = w.abs().amax(dim=1)
    scale = torch.where(peak > 0, peak / torch.tensor(QMAX, dtype=torch.float32), torch.ones_like(peak))
    q = torch.round(w / scale[:, None]).clamp(-QMAX, QMAX).to(torch.int8)
    return q, scale


def dequantize(weight_q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 weight the codes stand for: ``q * scale`` per row."""
    return weight_q.to(torch.float32) * scale.to(torch.float32)[:, None]


def dequantized_error(weight: torch.Tensor) -> float:
    """Largest absolute difference between a float weight and its int8 round trip (at most half a scale per row)."""
    q, scale = quantize_weight(weight)
    return float((dequantize(q, scale) - weight.detach().to(torch.float32)).abs().max()) if weight.numel() else 0.0


class Int8Linear(nn.Module):
    """``y = F.linear(x, weight_q.to(float32)) * scale + bias``: int8 codes per output channel, float activations.

    ``weight_q`` (int8 [out, in]), ``scale`` (float32 [out]) and ``bias`` (float32 [out] or None)
    are buffers: the codes are not trained, and a state dict holds exactly what a device stores.
    The scale is applied after the float32 accumulation, one multiply per output (module doc of
    :mod:`prune.quantize` for the exact rounding).
    """

    weight_q: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.register_buffer("weight_q", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features, dtype=torch.float32))
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        """The int8 twin of ``linear`` (its weight quantized by the contract, its bias kept in float32)."""
        return cls.from_weight(linear.weight, linear.bias)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None) -> Int8Linear:
        """The int8 Linear of an (out, in) float ``weight`` and an optional ``bias``."""
        new = cls(weight.shape[1], weight.shape[0], bias=bias is not None)
        q, scale = quantize_weight(weight)
        new.weight_q.copy_(q)
        new.scale.copy_(scale)
        if bias is not None:
            assert new.bias is not None
            new.bias.copy_(bias.detach().to(torch.float32))
        return new.to(weight.device)

    def dequantized(self) -> nn.Linear:
        """A float ``nn.Linear`` holding ``q * scale`` (the same map up to where the scale is applied)."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(dequantize(self.weight_q, self.scale))
            if self.bias is not None:
                assert lin.bias is not None
                lin.bias.copy_(self.bias)
        return lin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight_q.to(torch.float32)) * self.scale
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8 per-channel"


def int8_bytes(in_features: int, out_features: int, bias: bool) -> int:
    """Bytes an :class:`Int8Linear` of this shape stores: codes, scales, bias."""
    return (
        in_features * out_features * CODE_BYTES
        + out_features * SCALE_BYTES
        + (out_features * FLOAT_BYTES if bias else 0)
    )


def float_bytes(in_features: int, out_features: int, bias: bool) -> int:
    """Bytes a float32 ``nn.Linear`` of this shape stores."""
    return (in_features * out_features + (out_features if bias else 0)) * FLOAT_BYTES


def bytes_footprint(model: nn.Module) -> int:
    """Weight bytes of ``model``: every parameter 4 B, every :class:`Int8Linear` 1 B per code + 4 B per scale and bias entry.

    Other buffers (running statistics, normaliser constants) are not weights and are not counted,
    as in :class:`prune.budget.Footprint`.
    """
    total = sum(p.numel() for p in model.parameters()) * FLOAT_BYTES
    for m in model.modules():
        if isinstance(m, Int8Linear):
            total += int8_bytes(m.in_features, m.out_features, m.bias is not None)
    return total


def component_linears(groups: Groups) -> dict[str, list[str]]:
    """The Linears of each component: producers of its groups' units, and output layers fed by its units.

    A Linear whose output units form a group belongs to that group's component; a Linear whose
    output is no group (an output layer) belongs to the component of its input units (the first
    such group in graph order). A Linear no group slices belongs to no component.
    """
    out_of: dict[str, str] = {}
    in_of: dict[str, str] = {}
    for g in groups.groups:
        for s in g.slices:
            if s.kind == "linear.out":
                out_of.setdefault(s.module, g.component)
            elif s.kind == "linear.in":
                in_of.setdefault(s.module, g.component)
    comps: dict[str, list[str]] = {c: [] for c in groups.components}
    for name, info in groups.modules.items():
        if info.kind != "linear":
            continue
        comp = out_of.get(name, in_of.get(name))
        if comp is not None:
            comps[comp].append(name)
    return comps


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def linears_of(groups: Groups, components: Iterable[str]) -> list[str]:
    """The Linear names of ``components`` (see :func:`component_linears`), refusing unknown component names."""
    comps = component_linears(groups)
    names = list(components)
    unknown = [c for c in names if c not in comps]
    if unknown:
        raise PruneError(f"unknown component(s) {', '.join(map(repr, unknown))}; components: {', '.join(comps)}")
    return [m for c in names for m in comps[c]]


def quantize(
    model: nn.Module, components: Iterable[str] | None = None, groups: Groups | None = None, inplace: bool = False
) -> nn.Module:
    """``model`` with Linears swapped for :class:`Int8Linear` (a copy unless ``inplace``): all, or those of ``components``.

    ``components`` (names of ``groups.components``) needs ``groups`` (from :func:`prune.find_groups`
    on the unpruned model; a shrunk model keeps its module and node names, so the same groups
    serve). Without ``components``: every ``nn.Linear`` module, and with ``groups`` every graph-form
    Linear they list too. A Linear already quantized stays as it is.
    """
    if components is not None and groups is None:
        raise PruneError(
            "quantize(components=...) needs groups (find_groups on the unpruned model) to know each component's Linears"
        )
    if components is None:
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if groups is not None:
            names += [n for n, info in groups.modules.items() if info.kind == "linear" and info.weight]
    else:
        assert groups is not None
        names = linears_of(groups, components)
    return quantize_modules(model, names, groups, inplace)


def quantize_modules(
    model: nn.Module, names: Iterable[str], groups: Groups | None = None, inplace: bool = False
) -> nn.Module:
    """``model`` (a copy unless ``inplace``) with the Linears named ``names`` swapped for :class:`Int8Linear`."""
    out = model if inplace else copy.deepcopy(model)
    modules = dict(out.named_modules())
    edited = False
    for name in names:
        mod = modules.get(name)
        info = groups.modules.get(name) if groups is not None else None
        if isinstance(mod, Int8Linear):
            continue
        if info is not None and info.weight and isinstance(out, fx.GraphModule):
            edited |= _quantize_graph_linear(out, name, info)
        elif isinstance(mod, nn.Linear):
            _set_submodule(out, name, Int8Linear.from_linear(mod))
        else:
            raise PruneError(
                f"cannot quantize Linear '{name}': it is a {type(mod).__name__}, neither an nn.Linear nor "
                "a Linear op of a GraphModule the groups were found on"
            )
    if edited:
        assert isinstance(out, fx.GraphModule)
        out.recompile()
    return out


def _quantize_graph_linear(gm: fx.GraphModule, name: str, info: LayerInfo) -> bool:
    """Replace a graph-form Linear (``aten.linear``, ``addmm``, ``x @ W`` on attribute tensors) by a call of an Int8Linear.

    The op's node becomes a ``call_module`` of a new :class:`Int8Linear` submodule fed by the op's
    input; the weight and bias tensors (and the transposes that read them) leave the graph and the
    module. A separate bias add after ``x @ W`` stays a float add. Returns False when the node is
    already gone (quantized before).
    """
    node = next((n for n in gm.graph.nodes if n.name == info.node), None)
    if node is None:
        return False
    weight = linear_weight(gm, name, info).detach().clone()
    bias = linear_bias(gm, name, info)
    q = Int8Linear.from_weight(weight, bias.detach().clone() if bias is not None else None)
    target = base = name.replace(".", "_").replace("@", "_") + "_int8"
    i = 1
    while hasattr(gm, target):
        target, i = f"{base}{i}", i + 1
    gm.add_submodule(target, q)
    x = node.args[1] if "addmm" in str(node.target) else node.args[0]
    with gm.graph.inserting_before(node):
        call = gm.graph.call_module(target, (x,))
    call.meta = dict(node.meta)
    node.replace_all_uses_with(call)
    inputs = [a for a in node.all_input_nodes if a is not x]
    gm.graph.erase_node(node)
    while inputs:  # the weight's get_attr and any transpose of it, now unused
        n = inputs.pop()
        if not n.users and n.op in ("get_attr", "call_function", "call_method"):
            inputs += list(n.all_input_nodes)
            gm.graph.erase_node(n)
    read = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for path in (info.weight, info.bias_path):
        if path and path not in read:
            mod, attr = owner(gm, path)
            delattr(mod, attr)
    return True


def precision_of(model: nn.Module, groups: Groups) -> dict[str, str]:
    """Each component's precision in ``model``: 'int8' when all its Linears are :class:`Int8Linear`, else 'float'."""
    modules = dict(model.named_modules())
    nodes = {n.name for n in model.graph.nodes} if isinstance(model, fx.GraphModule) else set()

    def int8(name: str) -> bool:
        info = groups.modules[name]
        return isinstance(modules.get(name), Int8Linear) or bool(info.weight and info.node not in nodes)

    return {
        c: ("int8" if names and all(int8(n) for n in names) else "float")
        for c, names in component_linears(groups).items()
    }


def quantized_modules(precision: Mapping[str, str], groups: Groups) -> set[str]:
    """Linear names quantized under ``precision`` (component -> 'float' | 'int8')."""
    return set(linears_of(groups, [c for c, p in precision.items() if p == "int8"]))
