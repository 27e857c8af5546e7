"""Pruning groups, traced from the model: every parameter slice that must go when one hidden unit goes.

The one idea the rest of prune/ asks. A *dimension* is a hidden feature space produced by an
``nn.Linear`` (its ``out_features``). Tracing the model with ``torch.fx`` follows each dimension
through element-wise ops (activations, Dropout, scalar arithmetic), LayerNorm, branching (several
consumers of one tensor) and ``torch.cat`` along the feature axis into later Linears; residual sums
of two equally wide dimensions merge them into one group. Every unit of a group is a set of
slices: a row of the producer's weight and bias, the matching column of every consumer's weight,
the LayerNorm weight and bias entries.

Anything the tracer does not model (reshapes, indexing, reductions over features, unknown ops or
modules, per-feature constant tensors) *blocks* the dimensions it touches: they are left out of the
groups and listed in :attr:`Groups.excluded` with the node that blocked them (``strict=True``
raises instead). Shared modules and tied weights are refused with a :class:`PruneError`. The
network input and every output are protected unless the caller opts in.
"""

from __future__ import annotations

import fnmatch
import operator
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from prune.errors import PruneError

# Modules that act on each feature independently: a unit can be removed through them.
ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ELU, nn.Tanh, nn.SiLU, nn.Mish, nn.LeakyReLU, nn.GELU, nn.Sigmoid, nn.Softplus,
    nn.Hardtanh, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.CELU, nn.SELU, nn.Softsign,
    nn.Tanhshrink, nn.LogSigmoid, nn.Dropout, nn.AlphaDropout, nn.Identity,
)
ELEMENTWISE_FUNCTIONS = {
    torch.relu, torch.tanh, torch.sigmoid, torch.exp, torch.abs, torch.neg, torch.sin, torch.cos,
    torch.square, torch.clamp, torch.clip, operator.neg, F.relu, F.elu, F.silu, F.mish, F.leaky_relu,
    F.gelu, F.softplus, F.hardtanh, F.relu6, F.hardswish, F.celu, F.selu, F.tanh, F.sigmoid,
    F.dropout, F.alpha_dropout,
}
ELEMENTWISE_METHODS = {
    "relu", "tanh", "sigmoid", "exp", "abs", "neg", "sin", "cos", "square", "clamp", "clip",
    "contiguous", "float", "double", "to", "detach", "clone", "type_as",
}
BINARY_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul, torch.div}
BINARY_METHODS = {"add", "sub", "mul", "div"}
CAT_FUNCTIONS = {torch.cat, torch.concat}
FIXED = -1  # dimension id of features that never shrink (constants, input of unknown width role)

Layout = tuple[tuple[int, int], ...]  # (dimension id, width) segments along the feature axis


@dataclass(frozen=True)
class Slice:
    """One unit-indexed slice of a module: ``kind`` is linear.out, linear.in or layernorm."""

    module: str
    kind: str
    offset: int


@dataclass
class Group:
    """A prunable hidden dimension: ``size`` units, each removable with all of its ``slices``."""

    name: str
    component: str
    size: int
    producers: list[str]
    slices: list[Slice]


@dataclass
class ModuleInfo:
    """Shape facts of one Linear or LayerNorm, for surgery and exact budget accounting."""

    kind: str  # "linear" | "layernorm"
    in_features: int = 0
    out_features: int = 0
    bias: bool = False
    norm_size: int = 0
    affine_params: int = 0  # LayerNorm: 0, 1 (weight only) or 2 (weight and bias) vectors
    rows_per_sample: int = 1  # how often a Linear is applied per sample (sequence positions)


@dataclass
class Groups:
    """The result of :func:`find_groups`: groups, their components, and what was left out and why."""

    groups: list[Group]
    components: dict[str, list[str]]
    excluded: dict[str, str]
    protected: dict[str, str]
    modules: dict[str, ModuleInfo]
    total_params: int
    warnings: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise PruneError(f"no group named {name!r}; groups: {', '.join(g.name for g in self.groups)}")

    @property
    def names(self) -> list[str]:
        """Group names in graph order."""
        return [g.name for g in self.groups]

    def to_dict(self) -> dict:
        """JSON-serialisable summary."""
        return asdict(self)


class _Dim:
    def __init__(self, ident: int, name: str, size: int, producer: str | None) -> None:
        self.id, self.name, self.size = ident, name, size
        self.producers = [producer] if producer else []
        self.slices: list[Slice] = []
        self.blocked: list[str] = []
        self.protected: list[str] = []


class _Tracer:
    """Walks the fx graph once, assigning a feature layout to every tensor-valued node."""

    def __init__(self, model: nn.Module, gm: fx.GraphModule) -> None:
        self.model, self.gm = model, gm
        self.dims: list[_Dim] = []
        self.parent: dict[int, int] = {}
        self.layouts: dict[fx.Node, Layout | None] = {}
        self.modules: dict[str, ModuleInfo] = {}

    # -- dimensions and union-find (residual sums share one index space) --
    def new_dim(self, name: str, size: int, producer: str | None = None) -> int:
        d = _Dim(len(self.dims), name, size, producer)
        self.dims.append(d)
        self.parent[d.id] = d.id
        return d.id

    def root(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[rb] = ra

    def block(self, layout: Layout | None, reason: str) -> None:
        for d, _ in layout or ():
            if d != FIXED:
                self.dims[d].blocked.append(reason)

    # -- node helpers --
    @staticmethod
    def shape(node) -> torch.Size | None:
        meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
        return getattr(meta, "shape", None)

    def layout_of(self, arg) -> Layout | None:
        return self.layouts.get(arg) if isinstance(arg, fx.Node) else None

    def opaque(self, node: fx.Node) -> Layout | None:
        shape = self.shape(node)
        if shape is None:
            return None
        return ((FIXED, int(shape[-1]) if len(shape) else 1),)

    def tensor_inputs(self, node: fx.Node) -> list[fx.Node]:
        found: list[fx.Node] = []

        def collect(n: fx.Node) -> fx.Node:
            found.append(n)
            return n

        fx.node.map_arg((node.args, node.kwargs), collect)
        return [n for n in found if self.layouts.get(n) is not None]

    def describe(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return f"module '{node.target}' ({type(self.gm.get_submodule(str(node.target))).__name__})"
        target = getattr(node.target, "__name__", str(node.target))
        return f"node '{node.name}' ({node.op} {target})"

    def unknown(self, node: fx.Node, why: str) -> Layout | None:
        for n in self.tensor_inputs(node):
            self.block(self.layouts[n], f"{self.describe(node)} {why}")
        return self.opaque(node)

    # -- the walk --
    def run(self, protect_input: bool, protect_outputs: bool) -> None:
        for node in self.gm.graph.nodes:
            self.layouts[node] = self.visit(node, protect_input, protect_outputs)

    def visit(self, node: fx.Node, protect_input: bool, protect_outputs: bool) -> Layout | None:
        if node.op == "placeholder":
            shape = self.shape(node)
            if shape is None or len(shape) == 0:
                return None
            d = self.new_dim(f"input:{node.target}", int(shape[-1]))
            if protect_input:
                self.dims[d].protected.append(f"network input '{node.target}'")
            return ((d, int(shape[-1])),)
        if node.op == "get_attr":
            return self.opaque(node)
        if node.op == "output":
            for n in self.tensor_inputs(node):
                for d, _ in self.layouts[n] or ():
                    if d != FIXED and protect_outputs:
                        self.dims[d].protected.append(f"network output '{n.name}'")
            return None
        if node.op == "call_module":
            return self.visit_module(node)
        if node.op in ("call_function", "call_method"):
            return self.visit_function(node)
        return self.unknown(node, "is not modelled")

    def visit_module(self, node: fx.Node) -> Layout | None:
        name = str(node.target)  # a call_module node's target is the module's qualified name
        mod = self.gm.get_submodule(name)
        src = self.layout_of(node.args[0]) if node.args else None
        if isinstance(mod, nn.Linear):
            if len(node.args) != 1 or node.kwargs:
                return self.unknown(node, "is called with extra arguments")
            shape = self.shape(node.args[0])
            rows = 1
            for s in (shape[1:-1] if shape is not None and len(shape) > 2 else ()):
                rows *= int(s)
            self.modules[name] = ModuleInfo("linear", mod.in_features, mod.out_features, mod.bias is not None, rows_per_sample=rows)
            offset = 0
            for d, width in src or ():
                if d != FIXED:
                    self.dims[d].slices.append(Slice(name, "linear.in", offset))
                offset += width
            d = self.new_dim(name, mod.out_features, name)
            self.dims[d].slices.append(Slice(name, "linear.out", 0))
            return ((d, mod.out_features),)
        if isinstance(mod, nn.LayerNorm):
            if len(mod.normalized_shape) != 1:
                return self.unknown(node, f"normalises over {tuple(mod.normalized_shape)}, not the feature axis alone")
            n_vec = (mod.weight is not None) + (mod.bias is not None)
            self.modules[name] = ModuleInfo("layernorm", norm_size=mod.normalized_shape[0], affine_params=n_vec)
            offset = 0
            for d, width in src or ():
                if d != FIXED:
                    self.dims[d].slices.append(Slice(name, "layernorm", offset))
                offset += width
            return src
        if isinstance(mod, ELEMENTWISE_MODULES) or (isinstance(mod, nn.PReLU) and mod.num_parameters == 1):
            return src
        return self.unknown(node, "is not a module prune/ can shrink through")

    def visit_function(self, node: fx.Node) -> Layout | None:
        t = node.target
        is_method = node.op == "call_method"
        inputs = self.tensor_inputs(node)
        if not inputs:
            return self.opaque(node)  # computed from constants only
        if (is_method and t in ELEMENTWISE_METHODS) or (not is_method and t in ELEMENTWISE_FUNCTIONS):
            if len(inputs) == 1 and inputs[0] is node.args[0]:
                return self.layouts[inputs[0]]
            return self.unknown(node, "mixes tensors in an element-wise op it does not model")
        if (is_method and t in BINARY_METHODS) or (not is_method and t in BINARY_FUNCTIONS):
            return self.visit_binary(node, inputs)
        if not is_method and t in CAT_FUNCTIONS:
            return self.visit_cat(node)
        if (is_method and t in ("unsqueeze", "squeeze")) or (not is_method and t in (torch.unsqueeze, torch.squeeze)):
            return self.visit_unsqueeze(node, inputs)
        if t == "size" or (t == getattr and node.args[1] in ("shape", "dtype", "device")):
            return None
        return self.unknown(node, "reshapes, indexes or reduces the features, or is not modelled")

    def visit_binary(self, node: fx.Node, inputs: list[fx.Node]) -> Layout | None:
        if len(inputs) == 1:
            other = [a for a in node.args if a is not inputs[0]]
            other_shape = self.shape(other[0]) if other and isinstance(other[0], fx.Node) else None
            if other_shape is None or len(other_shape) == 0 or other_shape[-1] == 1:
                return self.layouts[inputs[0]]  # scalar or broadcast along the features
            if self.layouts[inputs[0]] == ((FIXED, other_shape[-1]),):
                return self.layouts[inputs[0]]
            return self.unknown(node, f"combines the features with a per-feature tensor of width {other_shape[-1]} it cannot slice")
        if len(inputs) != 2:
            return self.unknown(node, "has more tensor operands than modelled")
        a, b = (self.layouts[n] or () for n in inputs)  # tensor_inputs() has a layout for each
        sa, sb = self.shape(inputs[0]), self.shape(inputs[1])
        fixed_a, fixed_b = all(d == FIXED for d, _ in a), all(d == FIXED for d, _ in b)
        if fixed_a != fixed_b:  # features combined with a constant tensor (a buffer, a parameter)
            hidden, const = (b, sa) if fixed_a else (a, sb)
            if const is None or len(const) == 0 or const[-1] == 1:
                return hidden  # broadcast along the features: shrinks with them
            self.block(hidden, f"{self.describe(node)} combines the features with a per-feature tensor of width {const[-1]} it cannot slice")
            return hidden
        # Broadcast of a (.., 1) operand leaves the other's features intact.
        if sb is not None and len(sb) and sb[-1] == 1 and (sa is None or not len(sa) or sa[-1] != 1):
            self.block(b, f"{self.describe(node)} broadcasts it over another tensor's features")
            return a
        if sa is not None and len(sa) and sa[-1] == 1 and (sb is None or not len(sb) or sb[-1] != 1):
            self.block(a, f"{self.describe(node)} broadcasts it over another tensor's features")
            return b
        if a == b:
            return a
        if len(a) == 1 and len(b) == 1 and a[0][1] == b[0][1]:
            (da, _), (db, _) = a[0], b[0]
            if da == FIXED or db == FIXED:
                self.block(a + b, f"{self.describe(node)} adds a fixed-width tensor to the features (a residual it cannot shrink)")
                return a
            self.union(da, db)  # a residual sum: both sides must lose the same units
            return a
        return self.unknown(node, "combines two tensors whose features do not line up (residual it does not model)")

    def visit_cat(self, node: fx.Node) -> Layout | None:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        shape = self.shape(node)
        if shape is None or not isinstance(dim, int) or not isinstance(tensors, (list, tuple)):
            return self.unknown(node, "is a concatenation it cannot follow")
        if dim % len(shape) != len(shape) - 1:
            layouts = [self.layout_of(t) for t in tensors]
            if all(lay == layouts[0] for lay in layouts):
                return layouts[0]
            return self.unknown(node, "concatenates along a non-feature axis tensors with different features")
        out: list[tuple[int, int]] = []
        for t in tensors:
            lay = self.layout_of(t)
            if lay is None:
                return self.unknown(node, "concatenates something that is not a traced tensor")
            out.extend(lay)
        return tuple(out)

    def visit_unsqueeze(self, node: fx.Node, inputs: list[fx.Node]) -> Layout | None:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        shape_in, shape_out = self.shape(inputs[0]), self.shape(node)
        if isinstance(dim, int) and shape_in is not None and shape_out is not None and len(shape_in) and len(shape_out):
            last = len(shape_out) - 1 if node.target in ("unsqueeze", torch.unsqueeze) else len(shape_in) - 1
            if dim % (last + 1) != last and shape_in[-1] == shape_out[-1]:
                return self.layouts[inputs[0]]
        return self.unknown(node, "changes the feature axis")


def _check_shared(model: nn.Module, gm: fx.GraphModule) -> None:
    seen: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            raise PruneError(f"parameters '{seen[id(p)]}' and '{name}' are the same tensor (tied or shared weights); "
                             "prune/ refuses to shrink one without the other: untie them or exclude the modules")
        seen[id(p)] = name
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), (nn.Linear, nn.LayerNorm)):
            calls[node.target] = calls.get(node.target, 0) + 1
    for name, n in calls.items():
        if n > 1:
            raise PruneError(f"module '{name}' is called {n} times in forward (shared weights); prune/ refuses to shrink it")


def _component_of(producers: list[str], patterns: Mapping[str, Sequence[str]]) -> str | None:
    hits = set()
    for comp, pats in patterns.items():
        for p in pats:
            if any(fnmatch.fnmatchcase(m, p) or fnmatch.fnmatchcase(m, p + ".*") for m in producers):
                hits.add(comp)
    if len(hits) > 1:
        raise PruneError(f"group of {', '.join(producers)} matches several components: {', '.join(sorted(hits))}")
    return hits.pop() if hits else None


def find_groups(
    model: nn.Module,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    components: Mapping[str, str | Sequence[str]] | None = None,
    protect_input: bool = True,
    protect_outputs: bool = True,
    strict: bool = False,
) -> Groups:
    """Trace ``model`` and return its pruning groups, each tagged with its component.

    ``components`` maps a component name to module-name patterns (fnmatch; ``"enc"`` also matches
    ``"enc.0"``); groups no pattern claims belong to their producer's top-level submodule (for an
    ``nn.Sequential``, the Linear itself). ``strict`` raises on anything left out instead of listing it.
    """
    if not isinstance(model, nn.Module):
        raise PruneError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    if not all(isinstance(x, torch.Tensor) for x in inputs):
        raise PruneError("example_input must be a tensor or a tuple of tensors shaped like the model's inputs")
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # fx raises many types: name the model and the cause
        raise PruneError(f"cannot trace {type(model).__name__} with torch.fx: {str(e).splitlines()[0]}") from e
    _check_shared(model, gm)
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*inputs)
    except Exception as e:
        raise PruneError(f"running {type(model).__name__} on the example input failed: {str(e).splitlines()[0]}") from e

    tracer = _Tracer(model, gm)
    tracer.run(protect_input, protect_outputs)

    patterns = {k: [v] if isinstance(v, str) else list(v) for k, v in (components or {}).items()}
    module_names = [n for n, _ in model.named_modules() if n]
    for comp, pats in patterns.items():
        for p in pats:
            if not any(fnmatch.fnmatchcase(m, p) or fnmatch.fnmatchcase(m, p + ".*") for m in module_names):
                raise PruneError(f"component {comp!r}: pattern {p!r} matches no module of {type(model).__name__} "
                                 f"(modules: {', '.join(module_names[:12])}{' ...' if len(module_names) > 12 else ''})")

    merged: dict[int, list[_Dim]] = {}
    for d in tracer.dims:
        merged.setdefault(tracer.root(d.id), []).append(d)
    groups, excluded, protected = [], {}, {}
    for members in merged.values():
        name = "+".join(d.name for d in members)
        protect = [r for d in members for r in d.protected]
        blocked = [r for d in members for r in d.blocked]
        producers = [p for d in members for p in d.producers]
        slices = [s for d in members for s in d.slices]
        if protect:
            protected[name] = protect[0]
        elif blocked:
            excluded[name] = blocked[0]
        elif not slices:
            continue
        else:
            anchor = producers[0] if producers else name
            comp = _component_of(producers or [anchor], patterns) or anchor.split(".")[0]
            groups.append(Group(name, comp, members[0].size, producers, slices))
    if strict and excluded:
        raise PruneError("cannot prune " + "; ".join(f"'{k}': {v}" for k, v in excluded.items()))
    comps: dict[str, list[str]] = {}
    for g in groups:
        comps.setdefault(g.component, []).append(g.name)
    warnings = [f"dimension '{k}' left unpruned: {v}" for k, v in excluded.items()]
    total = sum(p.numel() for p in model.parameters())
    return Groups(groups, comps, excluded, protected, tracer.modules, total, warnings)
