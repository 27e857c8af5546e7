"""One graph for every controller: an aten-level torch.export graph rewritten into the canonical fx form.

Every controller file ends up as a ``torch.export`` program (see ``graph_import``); its graph is made of
aten ops with the weights as ``get_attr`` constants. :func:`canonicalize` rewrites it into the form
prune/ traces and export/ lowers, keeping only what reaches the action:

- the action output is selected (``output``: an index into a tuple/list output, 0 by default) and every
  node it does not depend on is dropped, with the submodules, parameters and buffers only they used
  (a ``log_std`` head, a critic, an unused parameter go *by the graph*, whatever their names);
- subgraphs computed from constants alone are folded into buffers (``sqrt(var + eps)`` of a normaliser);
- ``aten.linear`` with constant weights becomes an ``nn.Linear`` named after its weight's owner
  (``actor_mean.0``), ``aten.layer_norm`` an ``nn.LayerNorm``; activations become ``torch.*`` /
  ``torch.nn.functional`` calls, arithmetic ``operator`` calls, clamp ``torch.clamp``;
- a Linear whose output is only sliced along the features (a head of which one part is used, e.g.
  TD-MPC2's ``mu, log_std = pi(z).chunk(2, -1)``) keeps only the rows used;
- copies, dropout, shape-preserving reshapes vanish; activations a converter spelt out (Mish, SiLU,
  the erf form of GELU) become one call again; MatMul + Add and Min/Max as onnx2torch writes them
  become ``nn.Linear`` and ``torch.minimum``/``torch.maximum``.

Ops it does not know are left in place; :func:`check_ops` then refuses them by name, so the set of
supported ops is stated once (:data:`SUPPORTED`).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from tools.errors import ControllerError

aten = torch.ops.aten

SUPPORTED = (
    "Linear (constant weights), LayerNorm over the features, ReLU, ELU, Tanh, SiLU, Mish, LeakyReLU, "
    "GELU, Softplus, Sigmoid, residual add/sub of two hidden tensors, concatenation along the features, "
    "add/sub/mul/div by constants (observation normalisation, action scaling), clamp/clip/min/max with "
    "constant bounds, and shape-preserving copies/reshapes"
)

# aten activation -> (canonical callable, positional arguments kept after the input)
_ACTIVATIONS: dict[Any, tuple[Callable[..., Any], int]] = {
    aten.relu.default: (torch.relu, 0),
    aten.tanh.default: (torch.tanh, 0),
    aten.sigmoid.default: (torch.sigmoid, 0),
    aten.silu.default: (F.silu, 0),
    aten.mish.default: (F.mish, 0),
    aten.leaky_relu.default: (F.leaky_relu, 1),
    aten.softplus.default: (F.softplus, 2),
}
_ARITHMETIC: dict[Any, Callable[..., Any]] = {
    aten.add.Tensor: operator.add,
    aten.add.Scalar: operator.add,
    aten.sub.Tensor: operator.sub,
    aten.sub.Scalar: operator.sub,
    aten.mul.Tensor: operator.mul,
    aten.mul.Scalar: operator.mul,
    aten.div.Tensor: operator.truediv,
    aten.div.Scalar: operator.truediv,
}
_IDENTITY = {
    aten.clone.default,
    aten.alias.default,
    aten.detach.default,
    aten.contiguous.default,
    aten.lift_fresh_copy.default,
    aten.dropout.default,
    aten.feature_dropout.default,
}
_RESHAPES = {
    aten.view.default,
    aten.reshape.default,
    aten._unsafe_view.default,
    aten.flatten.using_ints,
    aten.squeeze.dim,
    aten.squeeze.dims,
    aten.unsqueeze.default,
    aten.expand.default,
    aten.slice.Tensor,
    aten._to_copy.default,
    aten.to.dtype,  # obs.float() on a float32 observation (SB3's preprocess_obs), as torch.export leaves it
    aten.to.dtype_layout,
    aten.to.device,
    aten.broadcast_to.default,
}
_INPLACE = {
    aten.add_.Tensor: aten.add.Tensor,
    aten.sub_.Tensor: aten.sub.Tensor,
    aten.mul_.Tensor: aten.mul.Tensor,
    aten.div_.Tensor: aten.div.Tensor,
    aten.relu_.default: aten.relu.default,
    aten.tanh_.default: aten.tanh.default,
    aten.clamp_.default: aten.clamp.default,
}
_ONNX_OP_PART = r"(Gemm|MatMul|LayerNormalization|Add)(_\d+)?"  # op type ending an onnx2torch module name
_ASSERTS = {
    aten._assert_tensor_metadata.default,
    aten._assert_scalar.default,
    aten.sym_constrain_range_for_size.default,
}

# What check_ops accepts in a canonical graph.
ACTIVATION_FUNCTIONS = {torch.relu, torch.tanh, torch.sigmoid, F.elu, F.silu, F.mish, F.leaky_relu, F.gelu, F.softplus}
CLAMP_FUNCTIONS = {torch.clamp, torch.minimum, torch.maximum}
ARITHMETIC_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.neg}


def canonicalize(
    gm: fx.GraphModule, output: int | None = 0, prefix: str = "", name: str = "Controller"
) -> fx.GraphModule:
    """The canonical fx graph of an aten-level GraphModule: the action output only, dead parts dropped.

    ``prefix`` is removed from weight names when naming the new modules (a wrapper's ``model.``).
    """
    graph = fx.Graph()  # a copy owned by no module: new modules and buffers are attached at the end
    graph.output(graph.graph_copy(gm.graph, {}))
    _select_output(graph, output)
    for node in list(graph.nodes):
        if (node.op == "call_module" and "_guards" in str(node.target)) or node.target in _ASSERTS:
            graph.erase_node(node)
    _dce(graph)
    values = _attributes(gm, graph)
    for node in graph.nodes:  # in-place arithmetic on a value nothing else reads is the plain op
        if node.target in _INPLACE and isinstance(node.args[0], fx.Node) and len(node.args[0].users) == 1:
            node.target = _INPLACE[node.target]
    _fold_constants(graph, values)
    for node in list(graph.nodes):  # copies and full slices first: they would hide a sliced head
        if node.op == "call_function" and (node.target in _IDENTITY or (node.target in _RESHAPES and _same_meta(node))):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    _unbroadcast(graph)
    _dce(graph)
    _lower_patterns(graph, values)
    _narrow_sliced_linears(graph, values)
    modules: dict[str, nn.Module] = {}
    shared: dict[tuple[str, ...], str] = {}  # weights (and bias) -> the one module they became
    for node in list(graph.nodes):
        _rewrite(node, values, modules, prefix, shared)
    _decomposed_activations(graph, values)
    _dce(graph)
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ControllerError(f"the model takes {len(placeholders)} inputs; a controller takes the observation alone")
    graph.lint()
    root: dict[str, Any] = {}
    for node in graph.nodes:
        if node.op == "get_attr":
            root[str(node.target)] = values[str(node.target)]
        elif node.op == "call_module":
            root[str(node.target)] = modules[str(node.target)]
    out = fx.GraphModule(root, graph, class_name=name)
    out.eval()
    return out


# ---------------------------------------------------------------- passes


def _dce(graph: fx.Graph) -> None:
    """Drop every node the output does not depend on (the graph owns no module, so fx's purity check cannot run)."""
    for node in reversed(list(graph.nodes)):
        if node.op not in ("placeholder", "output") and not node.users:
            graph.erase_node(node)


def _unbroadcast(graph: fx.Graph) -> None:
    """``broadcast_tensors(xs)[i]`` that leaves ``xs[i]`` as it was is ``xs[i]``.

    torch.distributions.Normal(mean, std) broadcasts its mean against ``ones_like(mean) * exp(log_std)``;
    SB3's deterministic action (the distribution's mode) is that mean, so the broadcast is all that ties
    the action to the std branch.
    """
    for node in list(graph.nodes):
        source = node.args[0] if node.target is operator.getitem and node.args else None
        if not (isinstance(source, fx.Node) and source.target is aten.broadcast_tensors.default):
            continue
        inputs, index = source.args[0], node.args[1]
        if not (isinstance(index, int) and isinstance(inputs, (list, tuple))):
            continue
        kept = inputs[index]
        if isinstance(kept, fx.Node):
            a, b = kept.meta.get("val"), node.meta.get("val")
            if a is not None and b is not None and tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype:
                node.replace_all_uses_with(kept)
                graph.erase_node(node)


def _select_output(graph: fx.Graph, output: int | None) -> None:
    """Make the graph return one tensor: ``output`` picks an element of a tuple/list output."""
    out = next(n for n in graph.nodes if n.op == "output")
    value = out.args[0]
    while isinstance(value, (tuple, list)):
        if len(value) == 1:
            value = value[0]
            continue
        if output is None:
            raise ControllerError(f"the model returns {len(value)} outputs; say which one is the action (output=INDEX)")
        if not -len(value) <= output < len(value):
            raise ControllerError(f"output={output}: the model returns {len(value)} outputs")
        value = value[output]
    if not isinstance(value, fx.Node):
        raise ControllerError(
            f"the selected output is {type(value).__name__}, not a tensor computed from the observation"
        )
    out.args = (value,)


def _attributes(gm: fx.GraphModule, graph: fx.Graph) -> dict[str, torch.Tensor]:
    """The constant tensors the graph reads (``get_attr``), detached, by target."""
    values: dict[str, torch.Tensor] = {}
    for node in graph.nodes:
        if node.op == "get_attr":
            obj: Any = gm
            for part in str(node.target).split("."):
                obj = getattr(obj, part)
            if not isinstance(obj, torch.Tensor):
                raise ControllerError(
                    f"node '{node.name}' reads {node.target} ({type(obj).__name__}), not a tensor; supported: {SUPPORTED}"
                )
            values[str(node.target)] = obj.detach().clone()
    return values


def _is_const(arg: Any) -> bool:
    if isinstance(arg, fx.Node):
        return arg.op == "get_attr"
    if isinstance(arg, (list, tuple)):
        return all(_is_const(a) for a in arg)
    return True


def _fold_constants(graph: fx.Graph, values: dict[str, torch.Tensor]) -> None:
    """Evaluate every op whose operands are all constants; its result becomes a buffer ``_folded_N``."""
    count = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or not _is_const((node.args, node.kwargs)):
            continue
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: values[str(n.target)])
        with torch.no_grad():
            result = node.target(*args, **kwargs)  # type: ignore[operator,unused-ignore]
        if not isinstance(result, torch.Tensor):
            continue
        target = f"_folded_{count}"
        count += 1
        values[target] = result.detach().clone()
        with graph.inserting_before(node):
            const = graph.get_attr(target)
        node.replace_all_uses_with(const)
        graph.erase_node(node)
    _dce(graph)


def _const_tensor(arg: Any, values: dict[str, torch.Tensor]) -> torch.Tensor | None:
    return values[str(arg.target)] if isinstance(arg, fx.Node) and arg.op == "get_attr" else None


def _new_const(graph: fx.Graph, values: dict[str, torch.Tensor], before: fx.Node, value: torch.Tensor) -> fx.Node:
    target = f"_folded_{len(values)}"
    while target in values:
        target += "_"
    values[target] = value.detach().clone()
    with graph.inserting_before(before):
        return graph.get_attr(target)


def _lower_patterns(graph: fx.Graph, values: dict[str, torch.Tensor]) -> None:
    """What converters write in place of the plain op: back to ``aten.linear``, ``minimum``/``maximum``, nothing.

    - ``x * 1`` and ``x / 1`` vanish (onnx2torch's Gemm with alpha = beta = 1);
    - ``matmul(x, W)`` and ``addmm(b, x, W)`` with constant ``W`` become ``linear(x, W.T, b)``, and a
      constant vector added to a bias-free linear's only output becomes its bias (ONNX MatMul + Add);
    - ``amin/amax(stack([broadcast_to(a), broadcast_to(b)]), 0)`` (onnx2torch's Min/Max) becomes
      ``minimum/maximum(a, b)``.
    """
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        t = node.target
        args: Any = list(node.args)
        if (
            t in (aten.mul.Tensor, aten.mul.Scalar, aten.div.Tensor, aten.div.Scalar)
            and len(args) == 2
            and isinstance(args[0], fx.Node)
            and not isinstance(args[1], fx.Node)
            and args[1] == 1
        ):
            node.replace_all_uses_with(args[0])
            graph.erase_node(node)
        elif t is aten.matmul.default and (w := _const_tensor(args[1], values)) is not None and w.dim() == 2:
            weight = _new_const(graph, values, node, w.t().contiguous())
            _swap(node, aten.linear.default, (args[0], weight))
        elif (
            t is aten.addmm.default
            and (w := _const_tensor(args[2], values)) is not None
            and _const_tensor(args[0], values) is not None
            and not node.kwargs
        ):
            weight = _new_const(graph, values, node, w.t().contiguous())
            _swap(node, aten.linear.default, (args[1], weight, args[0]))
        elif (
            t in (aten.amin.default, aten.amax.default)
            and list(args[1:2]) in ([[0]], [0])
            and _is_call(args[0], aten.stack.default)
            and len(args[0].args[0]) == 2
            and args[0].args[1:] in ((), (0,))
        ):
            stacked: list[Any] = list(args[0].args[0])
            pair = [a.args[0] if _is_call(a, aten.broadcast_to.default) else a for a in stacked]
            _swap(node, aten.minimum.default if t is aten.amin.default else aten.maximum.default, tuple(pair))
    _dce(graph)
    for node in list(graph.nodes):  # linear(x, W) + b -> linear(x, W, b)
        if node.target not in (aten.add.Tensor,) or node.kwargs.get("alpha", 1) != 1:
            continue
        for lin, other in (node.args, node.args[::-1]):
            bias = _const_tensor(other, values)
            if (
                isinstance(lin, fx.Node)
                and lin.target is aten.linear.default
                and len(lin.args) == 2
                and len(lin.users) == 1
                and bias is not None
                and bias.dim() == 1
            ):
                lin.args = (lin.args[0], lin.args[1], other)
                node.replace_all_uses_with(lin)
                graph.erase_node(node)
                break


def _swap(node: fx.Node, target: Any, args: tuple) -> None:
    node.target = target
    node.args = args
    node.kwargs = {}


def _feature_range(node: fx.Node, width: int) -> tuple[int, int] | None:
    """The [start, stop) feature range a slice/narrow takes of the last axis, else None."""
    args: Any = node.args
    if node.target is aten.slice.Tensor:
        dim, start, stop, step = (list(args[1:]) + [0, None, None, 1][len(args) - 1 :])[:4]
        if step != 1 or not isinstance(dim, int) or dim not in (-1, 1):
            return None
        start = 0 if start is None else int(start)
        stop = width if stop is None else min(int(stop), width)
        return (start + width if start < 0 else start, stop + width if stop < 0 else stop)
    if node.target is aten.narrow.default and args[1] in (-1, 1):
        return int(args[2]), int(args[2]) + int(args[3])
    return None


def _narrow_sliced_linears(graph: fx.Graph, values: dict[str, torch.Tensor]) -> None:
    """A Linear used only through one slice of its features keeps only those rows (unless its weights are shared)."""
    uses: dict[str, int] = {}
    for n in graph.nodes:
        if n.op == "get_attr":
            uses[str(n.target)] = uses.get(str(n.target), 0) + len(n.users)
    for node in list(graph.nodes):
        if node.target is not aten.linear.default or len(node.users) != 1:
            continue
        weight = node.args[1]
        bias = node.args[2] if len(node.args) > 2 else None
        if not (isinstance(weight, fx.Node) and weight.op == "get_attr") or (bias is not None and not _is_const(bias)):
            continue
        if uses[str(weight.target)] != 1 or (isinstance(bias, fx.Node) and uses[str(bias.target)] != 1):
            continue
        w = values[str(weight.target)]
        user = next(iter(node.users))
        span = _feature_range(user, w.shape[0]) if user.op == "call_function" and user.args[0] is node else None
        if user.target in (aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default):
            span = _split_span(user, w.shape[0])
            if span is not None:
                getter = next(iter(user.users))
                user = getter
        if span is None:
            continue
        start, stop = span
        target = str(weight.target)
        values[target] = w[start:stop].clone()
        if isinstance(bias, fx.Node):
            values[str(bias.target)] = values[str(bias.target)][start:stop].clone()
        user.replace_all_uses_with(node)
        _dce(graph)


def _split_span(node: fx.Node, width: int) -> tuple[int, int] | None:
    """For a split/chunk on the features whose outputs are read by one ``getitem``: that piece's range."""
    dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    if dim not in (-1, 1) or len(node.users) != 1:
        return None
    getter = next(iter(node.users))
    if getter.target is not operator.getitem or not isinstance(getter.args[1], int):
        return None
    args: Any = node.args
    if node.target is aten.chunk.default:
        chunks = int(args[1])
        size = -(-width // chunks)
        sizes = [min(size, width - i * size) for i in range(chunks) if i * size < width]
    elif node.target is aten.split.Tensor:
        size = int(args[1])
        sizes = [min(size, width - i) for i in range(0, width, size)]
    else:
        sizes = [int(s) for s in args[1]]
    k = getter.args[1]
    start = sum(sizes[:k])
    return start, start + sizes[k]


def _module_name(target: str, suffix: str, taken: dict[str, nn.Module]) -> str:
    """``actor_mean.0.weight`` -> ``actor_mean_0``: a unique, attribute-safe module name.

    onnx2torch names modules after ONNX nodes (``actor_mean/actor_mean.0/Gemm``: the scope repeats the
    module name and ends in the op type); the op type and repeated parts are dropped, so a layer gets the
    same name from every format.
    """
    base = target[: -len(suffix)] if target.endswith(suffix) else target
    parts: list[str] = []
    for part in re.split(r"[./]", base):
        if part and not re.fullmatch(_ONNX_OP_PART, part) and (not parts or parts[-1] != part):
            parts.append(part)
    base = "_".join(re.sub(r"\W", "_", part) for part in parts) or "layer"
    base = base if not base[0].isdigit() else f"layer_{base}"
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def _rewrite(
    node: fx.Node,
    values: dict[str, torch.Tensor],
    modules: dict[str, nn.Module],
    prefix: str,
    shared: dict[tuple[str, ...], str],
) -> None:
    """Replace one aten node by its canonical form (in place); unknown ops are left for check_ops.

    Weights used by several calls become one module called several times, so sharing stays visible
    (prune/ refuses to shrink shared modules instead of silently untying them).
    """
    if node.op != "call_function":
        return
    t = node.target
    args: Any = node.args
    graph = node.graph
    if t is aten.linear.default and _is_const(args[1:]) and isinstance(args[1], fx.Node):
        weight = values[str(args[1].target)]
        bias = values[str(args[2].target)] if len(args) > 2 and isinstance(args[2], fx.Node) else None
        if weight.dim() != 2:
            return
        key = tuple(str(a.target) for a in args[1:] if isinstance(a, fx.Node))
        if key in shared:
            _to_module(node, shared[key], modules[shared[key]], modules)
            return
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        shared[key] = _module_name(str(args[1].target).removeprefix(prefix), ".weight", modules)
        _to_module(node, shared[key], linear, modules)
    elif t is aten.layer_norm.default and _is_const(args[1:]):
        shape = list(args[1])
        scale = values[str(args[2].target)] if len(args) > 2 and isinstance(args[2], fx.Node) else None
        shift = values[str(args[3].target)] if len(args) > 3 and isinstance(args[3], fx.Node) else None
        eps = float(args[4]) if len(args) > 4 else 1e-5
        norm = nn.LayerNorm(shape, eps=eps, elementwise_affine=scale is not None, bias=shift is not None)
        with torch.no_grad():
            if scale is not None:
                norm.weight.copy_(scale)
            if shift is not None:
                norm.bias.copy_(shift)
        owner = str(args[2].target) if isinstance(args[2], fx.Node) else "layer_norm"
        owner = "layer_norm" if owner.startswith("_folded") else owner
        _to_module(node, _module_name(owner.removeprefix(prefix), ".weight", modules), norm, modules)
    elif t in _ACTIVATIONS:
        fn, kept = _ACTIVATIONS[t]
        _to_function(node, fn, (args[0], *args[1 : 1 + kept]))
    elif t is aten.elu.default and all(float(a) == 1.0 for a in args[2:4]):
        _to_function(node, F.elu, (args[0], float(args[1]) if len(args) > 1 else 1.0))
    elif t is aten.gelu.default:
        _to_function(node, F.gelu, (args[0],), {"approximate": node.kwargs.get("approximate", "none")})
    elif t in _ARITHMETIC and node.kwargs.get("alpha", 1) == 1 and "rounding_mode" not in node.kwargs:
        _to_function(node, _ARITHMETIC[t], tuple(args))
    elif t is aten.rsub.Scalar and node.kwargs.get("alpha", 1) == 1:
        _to_function(node, operator.sub, (args[1], args[0]))
    elif t is aten.neg.default:
        _to_function(node, operator.neg, (args[0],))
    elif t in (aten.clamp.default, aten.clamp.Tensor, aten.hardtanh.default):
        lo, hi = (
            (list(args[1:3]) + [None, None])[:2]
            if t is not aten.hardtanh.default
            else (list(args[1:3]) + [-1.0, 1.0])[:2]
        )
        _to_function(node, torch.clamp, (args[0], lo, hi))
    elif t in (aten.clamp_min.default, aten.clamp_min.Tensor):
        _to_function(node, torch.clamp, (args[0], args[1], None))
    elif t in (aten.clamp_max.default, aten.clamp_max.Tensor):
        _to_function(node, torch.clamp, (args[0], None, args[1]))
    elif t in (aten.minimum.default, aten.maximum.default):
        _to_function(node, torch.minimum if t is aten.minimum.default else torch.maximum, tuple(args))
    elif t in (aten.cat.default, aten.concat.default):
        _to_function(node, torch.cat, (list(args[0]), args[1] if len(args) > 1 else 0))
    elif t in _IDENTITY or (t in _RESHAPES and _same_meta(node)):
        node.replace_all_uses_with(args[0])
        graph.erase_node(node)


def _same_meta(node: fx.Node) -> bool:
    """The op leaves shape and dtype as they were (a no-op reshape or cast)."""
    src = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
    a, b = (getattr(n, "meta", {}).get("val") for n in (src, node)) if src is not None else (None, None)
    return a is not None and b is not None and tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype


def _to_function(node: fx.Node, fn: Callable[..., Any], args: tuple, kwargs: dict | None = None) -> None:
    with node.graph.inserting_before(node):
        new = node.graph.call_function(fn, args, kwargs or {})
    new.meta = dict(node.meta)
    node.replace_all_uses_with(new)
    node.graph.erase_node(node)


def _to_module(node: fx.Node, name: str, module: nn.Module, modules: dict[str, nn.Module]) -> None:
    modules[name] = module.eval()
    with node.graph.inserting_before(node):
        new = node.graph.call_module(name, (node.args[0],))
    new.meta = dict(node.meta)
    node.replace_all_uses_with(new)
    node.graph.erase_node(node)


def _is_call(arg: Any, target: Any) -> bool:
    return isinstance(arg, fx.Node) and arg.target is target


def _near(value: Any, expected: float, values: dict[str, torch.Tensor]) -> bool:
    """value (a number, or a one-element constant tensor) equals expected (to 1e-6)."""
    if isinstance(value, fx.Node):
        const = _const_tensor(value, values)
        if const is None or const.numel() != 1:
            return False
        value = float(const.reshape(()))
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(float(value) - expected) < 1e-6


def _gelu_input(node: fx.Node, values: dict[str, torch.Tensor]) -> fx.Node | None:
    """x for ``(x * (erf(x / sqrt(2)) + 1)) * 0.5`` (GELU as ONNX before opset 20 writes it), else None."""
    args: Any = node.args
    if node.target is not operator.mul or not any(_near(a, 0.5, values) for a in args):
        return None
    inner: Any = next((a for a in args if _is_call(a, operator.mul)), None)
    if inner is None:
        return None
    for x, plus in (inner.args, inner.args[::-1]):
        if not _is_call(plus, operator.add) or not any(_near(a, 1.0, values) for a in plus.args):
            continue
        erf: Any = next((a for a in plus.args if _is_call(a, aten.erf.default)), None)
        div: Any = erf.args[0] if erf is not None else None
        if _is_call(div, operator.truediv) and div.args[0] is x and _near(div.args[1], 2**0.5, values):
            return x if isinstance(x, fx.Node) else None
    return None


def _decomposed_activations(graph: fx.Graph, values: dict[str, torch.Tensor]) -> None:
    """Activations a converter spelt out, back to one call (ONNX lacks Mish before 18, GELU before 20, SiLU).

    ``x * tanh(softplus(x))`` -> ``F.mish``; ``x * sigmoid(x)`` -> ``F.silu``; the erf form -> ``F.gelu``.
    """
    for node in list(graph.nodes):
        if node.target is not operator.mul or len(node.args) != 2:
            continue
        x_gelu = _gelu_input(node, values)
        if x_gelu is not None:
            _to_function(node, F.gelu, (x_gelu,))
            continue
        args: Any = node.args
        for x, other in (args, args[::-1]):
            if not isinstance(other, fx.Node):
                continue
            inner: Any = other.args[0] if other.args else None
            if other.target is torch.sigmoid and inner is x:
                _to_function(node, F.silu, (x,))
                break
            if (
                other.target is torch.tanh
                and _is_call(inner, F.softplus)
                and inner.args[0] is x
                and all(_near(a, e, values) for a, e in zip(inner.args[1:], (1.0, 20.0)))
            ):
                _to_function(node, F.mish, (x,))
                break


# ---------------------------------------------------------------- the supported-ops check


def check_ops(gm: fx.GraphModule, where: str = "controller") -> None:
    """Refuse any node outside :data:`SUPPORTED`, naming it, its op and target."""
    const: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if node.op == "get_attr":
            const.add(node)
            continue
        problem = _problem(gm, node, const)
        if problem:
            target = getattr(node.target, "__name__", None) or str(node.target)
            raise ControllerError(
                f"{where}: unsupported node '{node.name}' ({node.op} {target}){': ' + problem if problem != '-' else ''}; "
                f"supported: {SUPPORTED}"
            )


def _problem(gm: fx.GraphModule, node: fx.Node, const: set[fx.Node]) -> str | None:
    """Why a canonical node is not supported ('-' when it is simply unknown), None when it is."""
    tensors = [a for a in node.all_input_nodes if a not in const]
    if node.op == "call_module":
        mod = gm.get_submodule(str(node.target))
        if isinstance(mod, nn.Linear):
            return None
        if isinstance(mod, nn.LayerNorm):
            return (
                None
                if len(mod.normalized_shape) == 1
                else f"normalises over {tuple(mod.normalized_shape)}, not the features"
            )
        return f"module {type(mod).__name__}"
    if node.op != "call_function":
        return "-"
    t = node.target
    if t in ACTIVATION_FUNCTIONS:
        return None if len(tensors) == 1 and node.args[0] in tensors else "an activation of several tensors"
    if t in CLAMP_FUNCTIONS:
        return None if len(tensors) == 1 and node.args[0] in tensors else "bounds that depend on the observation"
    if t in ARITHMETIC_FUNCTIONS:
        if t in (operator.add, operator.sub) or len(tensors) <= 1:
            if t is operator.truediv and len(tensors) == 1 and node.args[0] is not tensors[0]:
                return "a division by the observation-dependent value"
            return None
        return "a product of two observation-dependent tensors (not an affine map with constants)"
    if t is torch.cat:
        dim = node.args[1] if len(node.args) > 1 else 0
        val = node.meta.get("val")
        last = (val.dim() - 1) if isinstance(val, torch.Tensor) else 1
        return (
            None
            if isinstance(dim, int) and dim % (last + 1) == last
            else "concatenation along another axis than the features"
        )
    return "-"


# ---------------------------------------------------------------- affine maps added at the ends


def _free_name(gm: fx.GraphModule, name: str) -> str:
    """``name``, or ``name_<k>`` if the module already has an attribute of that name."""
    taken, k, candidate = set(dict(gm.named_children())) | set(dir(gm)), 1, name
    while candidate in taken:
        candidate, k = f"{name}_{k}", k + 1
    return candidate


def _holder(**tensors: torch.Tensor) -> nn.Module:
    """A parameterless module holding float32 buffers (the constants of a map added to a graph)."""
    module = nn.Module()
    for key, value in tensors.items():
        module.register_buffer(key, torch.as_tensor(value, dtype=torch.float32).clone())
    return module


def prepend_normaliser(
    gm: fx.GraphModule, mean: torch.Tensor, std: torch.Tensor, clip: float | None, name: str = "obs_norm"
) -> fx.GraphModule:
    """``gm`` applied to ``clamp((x - mean) / std, -clip, clip)``: the observation normaliser inside the graph."""
    name = _free_name(gm, name)
    gm.add_submodule(name, _holder(mean=mean, std=std))
    graph = gm.graph
    obs = next(n for n in graph.nodes if n.op == "placeholder")
    users = list(obs.users)
    with graph.inserting_after(obs):
        mean_node = graph.get_attr(f"{name}.mean")
    with graph.inserting_after(mean_node):
        std_node = graph.get_attr(f"{name}.std")
    with graph.inserting_after(std_node):
        centred = graph.call_function(operator.sub, (obs, mean_node))
    with graph.inserting_after(centred):
        scaled = graph.call_function(operator.truediv, (centred, std_node))
    last = scaled
    if clip is not None:
        with graph.inserting_after(scaled):
            last = graph.call_function(torch.clamp, (scaled, -float(clip), float(clip)))
    for user in users:
        user.replace_input_with(obs, last)
    graph.lint()
    gm.recompile()
    return gm


def ends_in_clip(gm: fx.GraphModule, low: torch.Tensor, high: torch.Tensor) -> bool:
    """Whether the graph's output is already ``maximum(minimum(x, high), low)`` with these bounds."""
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0]

    def const(arg: Any) -> torch.Tensor | None:
        if isinstance(arg, fx.Node) and arg.op == "get_attr":
            obj: Any = gm
            for part in str(arg.target).split("."):
                obj = getattr(obj, part)
            return obj if isinstance(obj, torch.Tensor) else None
        return None

    if not (_is_call(out, torch.maximum) and _is_call(out.args[0], torch.minimum)):
        return False
    lo, hi = const(out.args[1]), const(out.args[0].args[1])
    return (
        lo is not None
        and hi is not None
        and lo.shape == low.shape
        and hi.shape == high.shape
        and bool(torch.equal(lo.float(), low.float()))
        and bool(torch.equal(hi.float(), high.float()))
    )


def _get_attr(gm: fx.GraphModule, arg: Any) -> torch.Tensor | float | None:
    """A constant argument: a number, or the tensor a ``get_attr`` node reads; None for anything else."""
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return float(arg)
    if isinstance(arg, fx.Node) and arg.op == "get_attr":
        obj: Any = gm
        for part in str(arg.target).split("."):
            obj = getattr(obj, part)
        return obj.detach().float() if isinstance(obj, torch.Tensor) else None
    return None


def output_interval(gm: fx.GraphModule) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Bounds the graph's output provably stays in whatever the observation (interval arithmetic back from the
    output through tanh, sigmoid, clamps and affine maps with constants); None when it is not bounded that way."""

    def interval(node: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not isinstance(node, fx.Node) or node.op != "call_function":
            return None
        t, args = node.target, node.args
        if t is torch.tanh:
            return torch.tensor(-1.0), torch.tensor(1.0)
        if t is torch.sigmoid:
            return torch.tensor(0.0), torch.tensor(1.0)
        if t is torch.clamp:
            lo, hi = (
                node.kwargs.get("min", args[1] if len(args) > 1 else None),
                node.kwargs.get("max", args[2] if len(args) > 2 else None),
            )
            lo_c, hi_c = _get_attr(gm, lo), _get_attr(gm, hi)
            if lo_c is None or hi_c is None:
                return None
            return torch.as_tensor(lo_c), torch.as_tensor(hi_c)
        if t in (torch.minimum, torch.maximum):
            inner, bound = interval(args[0]), _get_attr(gm, args[1])
            if bound is None:
                return None
            b = torch.as_tensor(bound)
            if t is torch.minimum:
                return None if inner is None else (torch.minimum(inner[0], b), torch.minimum(inner[1], b))
            return None if inner is None else (torch.maximum(inner[0], b), torch.maximum(inner[1], b))
        if t in (operator.add, operator.sub, operator.mul, operator.truediv) and len(args) == 2:
            (x, c), swapped = (args, False) if _get_attr(gm, args[1]) is not None else ((args[1], args[0]), True)
            const = _get_attr(gm, c)
            inner = interval(x)
            if const is None or inner is None:
                return None
            k = torch.as_tensor(const)
            lo, hi = inner
            if t is operator.add:
                return lo + k, hi + k
            if t is operator.sub:
                return (k - hi, k - lo) if swapped else (lo - k, hi - k)
            if t is operator.mul:
                a, b = lo * k, hi * k
                return torch.minimum(a, b), torch.maximum(a, b)
            if swapped or bool((k == 0).any()):
                return None
            a, b = lo / k, hi / k
            return torch.minimum(a, b), torch.maximum(a, b)
        return None

    out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    return interval(out)


def append_clip(gm: fx.GraphModule, low: torch.Tensor, high: torch.Tensor, name: str = "action_box") -> fx.GraphModule:
    """``gm`` followed by ``maximum(minimum(a, high), low)`` (per-action bounds; ONNX Min/Max), unless it ends in it
    or its output provably stays inside the bounds already (``2 * tanh(x)`` for [-2, 2]): then the clip would be a no-op."""
    if ends_in_clip(gm, low, high):
        return gm
    bounds = output_interval(gm)
    if bounds is not None and bool((bounds[0] >= low).all()) and bool((bounds[1] <= high).all()):
        return gm
    name = _free_name(gm, name)
    gm.add_submodule(name, _holder(low=low, high=high))
    graph = gm.graph
    out = next(n for n in graph.nodes if n.op == "output")
    value = out.args[0]
    with graph.inserting_before(out):
        high_node = graph.get_attr(f"{name}.high")
        low_node = graph.get_attr(f"{name}.low")
        upper = graph.call_function(torch.minimum, (value, high_node))
        lower = graph.call_function(torch.maximum, (upper, low_node))
    out.args = (lower,)
    graph.lint()
    gm.recompile()
    return gm


def clamps_as_min_max(gm: fx.GraphModule, name: str = "clamp_bounds") -> fx.GraphModule:
    """Every ``torch.clamp`` with constant number bounds as ``maximum(minimum(x, hi), lo)`` (the same function).

    ONNX writes the former as ``Clip``, which export's firmware stub fails on (cortex-a7: "row 0 got error
    'inference'"), and the latter as ``Min``/``Max``, which it runs; the bounds become float32 buffers.
    """
    graph, k = gm.graph, 0
    for node in list(graph.nodes):
        if not _is_call(node, torch.clamp):
            continue
        lo = node.kwargs.get("min", node.args[1] if len(node.args) > 1 else None)
        hi = node.kwargs.get("max", node.args[2] if len(node.args) > 2 else None)
        if not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in (lo, hi)) or lo > hi:
            continue
        holder = _free_name(gm, f"{name}_{k}")
        k += 1
        gm.add_submodule(holder, _holder(low=torch.tensor(float(lo)), high=torch.tensor(float(hi))))
        with graph.inserting_before(node):
            high_node = graph.get_attr(f"{holder}.high")
            low_node = graph.get_attr(f"{holder}.low")
            upper = graph.call_function(torch.minimum, (node.args[0], high_node))
            lower = graph.call_function(torch.maximum, (upper, low_node))
        node.replace_all_uses_with(lower)
        graph.erase_node(node)
    if k:
        graph.lint()
        gm.recompile()
    return gm
