"""The walk behind :func:`prune.groups.find_groups`: one pass over an fx graph, a feature layout per tensor.

Every tensor-valued node gets a *layout*: the feature dimensions along its last axis, as (dimension
id, width) segments. A Linear starts a dimension; element-wise ops, LayerNorm and shape-keeping
reshapes hand their input's layout on; ``cat`` along the features joins layouts; a sum or product
of two equally wide dimensions unites them (union-find), which is how residual sums and per-feature
constants couple. Each dimension collects the slices (:class:`Slice`) that lose a unit when one of
its units goes, why it must stay whole (``blocked``: an op the walk does not model) and whether it
is protected (network input or output).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from prune.ops import is_transpose, passes_through, role, target_name
from prune.params import tensor_at

FIXED = -1  # dimension id of features that never shrink (constants, input of unknown width role)

Layout = tuple[tuple[int, int], ...]  # (dimension id, width) segments along the feature axis


@dataclass(frozen=True)
class Slice:
    """One unit-indexed slice: ``kind`` is linear.out, linear.in, layernorm, const (last axis of a tensor) or reshape."""

    module: str
    kind: str
    offset: int


@dataclass
class ModuleInfo:
    """Shape facts of one Linear, LayerNorm, constant or reshape, for surgery and exact budget accounting.

    A module form (``nn.Linear``) leaves ``weight``/``bias``/``node`` empty. A graph form names
    the attribute tensors (``weight``, ``bias``; ``transposed`` when the weight is stored (in, out))
    and the fx ``node`` whose arguments the shrink rewrites (a LayerNorm's normalized_shape, a
    reshape bypassed). ``const`` entries are per-feature tensors sliced along their last axis.
    """

    kind: str  # "linear" | "layernorm" | "const" | "reshape"
    in_features: int = 0
    out_features: int = 0
    bias: bool = False
    norm_size: int = 0  # LayerNorm: features; const / reshape: width of the sliced axis
    affine_params: int = (
        0  # parameters per unit: LayerNorm 0, 1 or 2 vectors; const: numel/width if a parameter, else 0
    )
    rows_per_sample: int = 1  # how often a Linear is applied per sample (sequence positions)
    weight: str = ""
    bias_path: str = ""
    transposed: bool = False
    node: str = ""


class Dim:
    """One feature dimension: its units, slices, and why it is blocked or protected (``const``: a per-feature constant)."""

    def __init__(self, ident: int, name: str, size: int, producer: str | None, const: bool = False) -> None:
        self.id, self.name, self.size, self.const = ident, name, size, const
        self.producers = [producer] if producer else []
        self.slices: list[Slice] = []
        self.blocked: list[str] = []
        self.protected: list[str] = []
        self.couplings: list[str] = []


class Tracer:
    """Walks the fx graph once, assigning a feature layout to every tensor-valued node."""

    def __init__(self, model: nn.Module, gm: fx.GraphModule, graph_input: bool) -> None:
        self.model, self.gm = model, gm
        self.graph_input = graph_input  # the caller's model is this GraphModule: its nodes can be rewritten
        self.dims: list[Dim] = []
        self.parent: dict[int, int] = {}
        self.layouts: dict[fx.Node, Layout | None] = {}
        self.tuples: dict[fx.Node, Layout | None] = {}  # layout of item 0 of tuple-valued nodes
        self.modules: dict[str, ModuleInfo] = {}
        self.consts: dict[str, int] = {}  # attribute path -> its const dimension
        self.const_info: dict[str, ModuleInfo] = {}
        self.params = {name for name, _ in gm.named_parameters(remove_duplicate=False)}
        self.graph_params: dict[str, str] = {}  # attribute path -> the graph-form layer it belongs to
        self.called = {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}

    # -- dimensions and union-find (residual sums share one index space) --
    def new_dim(self, name: str, size: int, producer: str | None = None, const: bool = False) -> int:
        d = Dim(len(self.dims), name, size, producer, const)
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
        return f"node '{node.name}' ({node.op} {target_name(node)})"

    def unknown(self, node: fx.Node, why: str) -> Layout | None:
        for n in self.tensor_inputs(node):
            self.block(self.layouts[n], f"{self.describe(node)} {why}")
        return self.opaque(node)

    def segments(self, layout: Layout | None, module: str, kind: str) -> None:
        """Add a ``kind`` slice of ``module`` to every dimension along ``layout``, at its offset."""
        offset = 0
        for d, width in layout or ():
            if d != FIXED:
                self.dims[d].slices.append(Slice(module, kind, offset))
            offset += width

    # -- constants: per-feature tensors become dimensions of their own, coupled to what they meet --
    def constant(self, node: fx.Node, path: str) -> Layout | None:
        shape = self.shape(node)
        if shape is None:
            return None
        dtype = getattr(node.meta.get("tensor_meta"), "dtype", None)
        if len(shape) == 0 or int(shape[-1]) <= 1 or not node.users or dtype is None or not dtype.is_floating_point:
            return self.opaque(node)
        width = int(shape[-1])
        d = self.consts.get(path)
        if d is None or self.dims[d].size != width:
            d = self.new_dim(f"const:{path}", width, const=True)
            self.consts[path] = d
            self.dims[d].slices.append(Slice(path, "const", 0))
            numel = math.prod(int(s) for s in shape)
            self.const_info[path] = ModuleInfo(
                "const", norm_size=width, affine_params=numel // width if path in self.params else 0
            )
            if self.module_owned(path):
                self.dims[d].blocked.append(
                    f"node '{node.name}' reads '{path}' outside its module (shared weights); prune/ leaves it whole"
                )
            if not self.graph_input:
                try:
                    tensor_at(self.model, path)
                except AttributeError:
                    self.dims[d].blocked.append(
                        f"node '{node.name}' is a tensor made in forward ('{path}' exists only in the trace); "
                        "pass torch.fx.symbolic_trace(model) to prune through it"
                    )
        return ((d, width),)

    def source(self, arg) -> tuple[str, bool] | None:
        """The attribute path of a constant tensor argument, and whether a transpose lies between."""
        flipped, n = False, arg
        while isinstance(n, fx.Node) and n.op in ("call_function", "call_method", "call_module"):
            mod = self.gm.get_submodule(str(n.target)) if n.op == "call_module" else None
            if n.op != "call_module" and is_transpose(n):
                flipped = not flipped
            elif not passes_through(n, mod):
                break
            n = n.args[0]
        if not isinstance(n, fx.Node):
            return None
        if n.op == "get_attr":
            return str(n.target), flipped
        if n.op == "call_module" and role(n, self.gm.get_submodule(str(n.target))) == "constant":
            return f"{n.target}.value", flipped
        return None

    def module_owned(self, path: str) -> str | None:
        """The nn.Linear / nn.LayerNorm called in the graph that owns parameter ``path`` (None if none does)."""
        parent = path.rpartition(".")[0]
        return (
            parent
            if parent in self.called and isinstance(self.gm.get_submodule(parent), (nn.Linear, nn.LayerNorm))
            else None
        )

    def claim(self, path: str, layer: str) -> None:
        """Record that ``path`` is a weight/bias of graph-form layer ``layer`` (a second claim is a shared tensor)."""
        owner = self.module_owned(path)
        if owner is not None:
            self.share(path, [layer, owner], f"is used by '{layer}' and by its module '{owner}'")
        if path in self.graph_params and self.graph_params[path] != layer:
            self.share(path, [self.graph_params[path], layer], f"is used by '{self.graph_params[path]}' and '{layer}'")
        self.graph_params.setdefault(path, layer)

    def share(self, path: str, layers: list[str], how: str) -> None:
        """Leave whole every dimension a shared graph tensor's layers touch (tied weights, or equal initial values an exporter merged)."""
        reason = (
            f"parameter '{path}' {how} (tied or shared weights, or equal values an exporter merged into one initializer); "
            "prune/ leaves them whole"
        )
        for d in self.dims:
            if any(s.module in layers for s in d.slices):
                d.blocked.append(reason)

    def key(self, path: str, node: fx.Node) -> str:
        base = path[: -len(".weight")] if path.endswith(".weight") else path
        return base if base not in self.modules else f"{base}@{node.name}"

    # -- the walk --
    def run(self, protect_input: bool, protect_outputs: bool) -> None:
        for node in self.gm.graph.nodes:
            self.layouts[node] = self.visit(node, protect_input, protect_outputs)
        self.check_sole_reads()

    def check_sole_reads(self) -> None:
        """Every graph-form weight is read once, by its own layer (else its dimensions are left whole)."""
        reads: dict[str, list[fx.Node]] = {}
        for node in self.gm.graph.nodes:
            if node.op == "get_attr" and str(node.target) in self.graph_params:
                reads.setdefault(str(node.target), []).append(node)
        for path, nodes in reads.items():
            users = [u for n in nodes for u in n.users]
            while (
                len(users) == 1
                and users[0].op in ("call_function", "call_method", "call_module")
                and (
                    is_transpose(users[0])
                    if users[0].op != "call_module"
                    else passes_through(users[0], self.gm.get_submodule(str(users[0].target)))
                )
            ):
                users = list(users[0].users)
            if len(users) > 1:
                self.share(
                    path,
                    [self.graph_params[path]],
                    f"of '{self.graph_params[path]}' is read by {len(users)} nodes "
                    f"({', '.join(u.name for u in users)})",
                )

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
            return self.constant(node, str(node.target))
        if node.op == "output":
            for n in self.tensor_inputs(node):
                for d, _ in self.layouts[n] or ():
                    if d != FIXED and protect_outputs:
                        self.dims[d].protected.append(f"network output '{n.name}'")
            return None
        if not node.users and self.shape(node) is None:
            return None  # a check with no tensor result (torch.export's guards, asserts)
        if node.op == "call_module":
            return self.visit_module(node)
        if node.op in ("call_function", "call_method"):
            return self.visit_function(node, role(node))
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
            for s in shape[1:-1] if shape is not None and len(shape) > 2 else ():
                rows *= int(s)
            self.modules[name] = ModuleInfo(
                "linear", mod.in_features, mod.out_features, mod.bias is not None, rows_per_sample=rows
            )
            self.segments(src, name, "linear.in")
            d = self.new_dim(name, mod.out_features, name)
            self.dims[d].slices.append(Slice(name, "linear.out", 0))
            return ((d, mod.out_features),)
        if isinstance(mod, nn.LayerNorm):
            if len(mod.normalized_shape) != 1:
                return self.unknown(node, f"normalises over {tuple(mod.normalized_shape)}, not the feature axis alone")
            n_vec = (mod.weight is not None) + (mod.bias is not None)
            self.modules[name] = ModuleInfo("layernorm", norm_size=mod.normalized_shape[0], affine_params=n_vec)
            self.segments(src, name, "layernorm")
            return src
        if isinstance(mod, nn.PReLU) and mod.num_parameters == 1:
            return src
        kind = role(node, mod)
        if kind == "constant":
            value = getattr(mod, "value", None)
            return self.constant(node, f"{name}.value") if isinstance(value, torch.Tensor) else None
        if kind == "cat":
            return self.visit_cat(node, list(node.args), getattr(mod, "axis", None))
        if kind == "layer_norm":
            shape = self.shape(node)
            axis = getattr(mod, "axis", None)
            if shape is None or not isinstance(axis, int) or axis % len(shape) != len(shape) - 1:
                return self.unknown(node, "normalises over more than the feature axis")
            return self.visit_layernorm(
                node,
                node.args[0],
                None,
                node.args[1] if len(node.args) > 1 else None,
                node.args[2] if len(node.args) > 2 else None,
            )
        if kind == "unknown":
            return self.unknown(node, "is not a module prune/ can shrink through")
        return self.visit_function(node, kind)

    def visit_function(self, node: fx.Node, kind: str) -> Layout | None:
        if kind == "shape":
            return None
        if kind == "getitem" and isinstance(node.args[0], fx.Node) and node.args[0] in self.tuples:
            return self.tuples[node.args[0]] if node.args[1] == 0 else self.opaque(node)
        inputs = self.tensor_inputs(node)
        if not inputs:
            return self.opaque(node)  # computed from constants only
        if kind == "elementwise":
            if len(inputs) == 1 and inputs[0] is node.args[0]:
                return self.layouts[inputs[0]]
            if node.args and inputs[0] is node.args[0] and any(w in target_name(node) for w in ("clamp", "clip")):
                return self.visit_combine(node, inputs)  # clamp with tensor bounds: per-feature constants
            return self.unknown(node, "mixes tensors in an element-wise op it does not model")
        if kind == "binary":
            return self.visit_binary(node, inputs)
        if kind == "combine":
            return self.visit_combine(node, inputs)
        if kind == "cat":
            tensors = node.args[0] if node.args else node.kwargs.get("tensors")
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            return self.visit_cat(node, tensors, dim)
        if kind == "squeeze":
            return self.visit_unsqueeze(node, inputs)
        if kind == "reshape":
            return self.visit_reshape(node, inputs)
        if kind == "linear":
            return self.visit_linear(
                node, node.args[0], self.arg(node, 1, "weight"), self.arg(node, 2, "bias"), out_in=True
            )
        if kind == "matmul":
            return self.visit_linear(node, node.args[0], node.args[1], None, out_in=False)
        if kind == "addmm":
            if any(node.kwargs.get(k, 1) != 1 for k in ("alpha", "beta")):
                return self.unknown(node, "scales its product (alpha/beta)")
            return self.visit_linear(node, node.args[1], node.args[2], node.args[0], out_in=False)
        if kind in ("layer_norm", "native_layer_norm"):
            out = self.visit_layernorm(
                node,
                node.args[0],
                self.arg(node, 1, "normalized_shape"),
                self.arg(node, 2, "weight"),
                self.arg(node, 3, "bias"),
            )
            if kind == "native_layer_norm":
                self.tuples[node] = out
                return None
            return out
        return self.unknown(node, "reshapes, indexes or reduces the features, or is not modelled")

    @staticmethod
    def arg(node: fx.Node, i: int, name: str):
        return node.args[i] if len(node.args) > i else node.kwargs.get(name)

    def visit_linear(self, node: fx.Node, x, weight, bias, out_in: bool) -> Layout | None:
        """A Linear written as an op on constant tensors: ``F.linear(x, w, b)``, ``x @ W``, ``addmm(b, x, W.t())``."""
        src = self.layout_of(x)
        found = self.source(weight)
        if src is None or found is None:
            return self.unknown(node, "multiplies the features by a tensor that is not a constant weight")
        path, flipped = found
        w = tensor_at(self.gm, path)
        if w.dim() != 2:
            return self.unknown(node, f"multiplies the features by a {w.dim()}-D weight")
        transposed = flipped if out_in else not flipped  # stored (in, out)
        out_features, in_features = (w.shape[1], w.shape[0]) if transposed else (w.shape[0], w.shape[1])
        bias_path = ""
        if bias is not None:
            found_b = self.source(bias)
            if found_b is None or found_b[1] or tensor_at(self.gm, found_b[0]).shape != (out_features,):
                return self.unknown(node, "adds a bias that is not a constant vector")
            bias_path = found_b[0]
        shape = self.shape(x)
        rows = math.prod(int(s) for s in shape[1:-1]) if shape is not None and len(shape) > 2 else 1
        name = self.key(path, node)
        for p in (path, bias_path):
            if p:
                self.claim(p, name)
        self.modules[name] = ModuleInfo(
            "linear",
            int(in_features),
            int(out_features),
            bool(bias_path),
            rows_per_sample=rows,
            weight=path,
            bias_path=bias_path,
            transposed=transposed,
            node=node.name,
        )
        self.segments(src, name, "linear.in")
        d = self.new_dim(name, int(out_features), name)
        self.dims[d].slices.append(Slice(name, "linear.out", 0))
        return ((d, int(out_features)),)

    def visit_layernorm(self, node: fx.Node, x, normalized_shape, weight, bias) -> Layout | None:
        """A LayerNorm written as an op: ``F.layer_norm``, ``aten.layer_norm``, onnx2torch's ``OnnxLayerNorm``."""
        src, shape = self.layout_of(x), self.shape(x)
        if src is None or shape is None or not len(shape):
            return self.unknown(node, "normalises something that is not a traced tensor")
        width = int(shape[-1])
        literal = isinstance(normalized_shape, (list, tuple)) and all(isinstance(s, int) for s in normalized_shape)
        if literal and list(normalized_shape) != [width]:
            return self.unknown(node, f"normalises over {tuple(normalized_shape)}, not the feature axis alone")
        if normalized_shape is not None and not literal:
            return self.unknown(node, "normalises over a shape it cannot read")
        paths = []
        for t in (weight, bias):
            found = self.source(t) if t is not None else ("", False)
            if found is None or found[1] or (found[0] and tensor_at(self.gm, found[0]).shape != (width,)):
                return self.unknown(node, "has an affine weight or bias that is not a constant vector")
            paths.append(found[0])
        if literal and not self.graph_input and any(d != FIXED for d, _ in src):
            return self.unknown(
                node,
                "has a literal normalized_shape in Python code; pass torch.fx.symbolic_trace(model) to prune through it",
            )
        name = self.key(paths[0], node) if paths[0] else node.name
        for p in paths:
            if p:
                self.claim(p, name)
        self.modules[name] = ModuleInfo(
            "layernorm",
            norm_size=width,
            affine_params=sum(bool(p) for p in paths),
            weight=paths[0],
            bias_path=paths[1],
            node=node.name,
        )
        self.segments(src, name, "layernorm")
        return src

    def visit_reshape(self, node: fx.Node, inputs: list[fx.Node]) -> Layout | None:
        """A reshape / view / flatten that leaves the shape as it was passes; one that spells the width out is taken out of the graph by the shrink."""
        data = node.args[0] if node.args else None
        shape_in, shape_out = self.shape(data), self.shape(node)
        if data is not inputs[0] or shape_in is None or shape_in != shape_out or not len(shape_in):
            return self.unknown(node, "reshapes the features")
        src = self.layouts[inputs[0]]
        width = int(shape_in[-1])
        spelled: list = []  # what the reshape says about the sizes: a literal width must change with the features

        def collect(a):
            spelled.append(a)
            return a

        fx.node.map_aggregate((node.args[1:], node.kwargs), collect)
        literal = any(a == width and isinstance(a, int) for a in spelled) or any(
            self.shape(a) is not None for a in spelled
        )
        if all(d == FIXED for d, _ in src or ()) or not literal:
            return src
        if not self.graph_input:
            return self.unknown(
                node,
                "reshapes in Python code (shapes it cannot rewrite); pass torch.fx.symbolic_trace(model) to prune through it",
            )
        self.modules[node.name] = ModuleInfo("reshape", norm_size=width, node=node.name)
        self.segments(src, node.name, "reshape")
        return src

    def visit_combine(self, node: fx.Node, inputs: list[fx.Node]) -> Layout | None:
        """An element-wise op of several tensors (clamp with tensor bounds, where): each couples with the first like a sum."""
        out = self.layouts[inputs[0]]
        for other in inputs[1:]:
            out = self.combine(node, inputs[0], other, out)
        return out

    def visit_binary(self, node: fx.Node, inputs: list[fx.Node]) -> Layout | None:
        if len(inputs) == 1:
            other = [a for a in node.args if a is not inputs[0]]
            other_shape = self.shape(other[0]) if other and isinstance(other[0], fx.Node) else None
            if other_shape is None or len(other_shape) == 0 or other_shape[-1] == 1:
                return self.layouts[inputs[0]]  # scalar or broadcast along the features
            if self.layouts[inputs[0]] == ((FIXED, other_shape[-1]),):
                return self.layouts[inputs[0]]
            return self.unknown(
                node, f"combines the features with a per-feature tensor of width {other_shape[-1]} it cannot slice"
            )
        if len(inputs) != 2:
            return self.unknown(node, "has more tensor operands than modelled")
        return self.combine(node, inputs[0], inputs[1], self.layouts[inputs[0]])

    def combine(self, node: fx.Node, first: fx.Node, second: fx.Node, layout_a: Layout | None) -> Layout | None:
        a, b = layout_a or (), self.layouts[second] or ()
        sa, sb = self.shape(first), self.shape(second)
        fixed_a, fixed_b = all(d == FIXED for d, _ in a), all(d == FIXED for d, _ in b)
        if fixed_a != fixed_b:  # features combined with a tensor of fixed width (an unknown op's output)
            hidden, const = (b, sa) if fixed_a else (a, sb)
            if const is None or len(const) == 0 or const[-1] == 1:
                return hidden  # broadcast along the features: shrinks with them
            self.block(
                hidden,
                f"{self.describe(node)} combines the features with a per-feature tensor of width {const[-1]} it cannot slice",
            )
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
                self.block(
                    a + b,
                    f"{self.describe(node)} adds a fixed-width tensor to the features (a residual it cannot shrink)",
                )
                return a
            if not self.dims[da].const and not self.dims[db].const and self.root(da) != self.root(db):
                self.dims[da].couplings.append(
                    f"{node.name} ({target_name(node) if node.op != 'call_module' else node.target})"
                )
            self.union(da, db)  # a residual sum (or a per-feature constant): both sides lose the same units
            return a
        return self.unknown(node, "combines two tensors whose features do not line up (residual it does not model)")

    def visit_cat(self, node: fx.Node, tensors, dim) -> Layout | None:
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
            unsqueeze = node.target in ("unsqueeze", torch.unsqueeze) or target_name(node).startswith("aten.unsqueeze")
            last = len(shape_out) - 1 if unsqueeze else len(shape_in) - 1
            if dim % (last + 1) != last and shape_in[-1] == shape_out[-1]:
                return self.layouts[inputs[0]]
        return self.unknown(node, "changes the feature axis")
