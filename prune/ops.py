"""The graph ops the group tracer knows, in every spelling a traced controller comes in.

One op reaches prune/ in up to four forms: a module call (``nn.ReLU``, or one of onnx2torch's own
modules such as ``OnnxBinaryMathOperation``), a ``torch`` / ``torch.nn.functional`` / ``operator``
function (``torch.fx.symbolic_trace``), a tensor method, and an ATen overload
(``aten.relu.default``, from ``torch.export``). :func:`role` names the one role an fx node plays
for the tracer; everything else is unknown and blocks the features it touches.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

# Modules that act on each feature independently: a unit can be removed through them.
ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ELU,
    nn.Tanh,
    nn.SiLU,
    nn.Mish,
    nn.LeakyReLU,
    nn.GELU,
    nn.Sigmoid,
    nn.Softplus,
    nn.Hardtanh,
    nn.ReLU6,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.CELU,
    nn.SELU,
    nn.Softsign,
    nn.Tanhshrink,
    nn.LogSigmoid,
    nn.Dropout,
    nn.AlphaDropout,
    nn.Identity,
)
ELEMENTWISE_FUNCTIONS = {
    torch.relu,
    torch.tanh,
    torch.sigmoid,
    torch.exp,
    torch.abs,
    torch.neg,
    torch.sin,
    torch.cos,
    torch.square,
    torch.clamp,
    torch.clip,
    operator.neg,
    F.relu,
    F.elu,
    F.silu,
    F.mish,
    F.leaky_relu,
    F.gelu,
    F.softplus,
    F.hardtanh,
    F.relu6,
    F.hardswish,
    F.celu,
    F.selu,
    F.tanh,
    F.sigmoid,
    F.dropout,
    F.alpha_dropout,
    torch.erf,
    torch.sqrt,
    torch.rsqrt,
    torch.reciprocal,
    F.logsigmoid,
    F.softsign,
    F.hardsigmoid,
    F.tanhshrink,
}
ELEMENTWISE_METHODS = {
    "relu",
    "tanh",
    "sigmoid",
    "exp",
    "abs",
    "neg",
    "sin",
    "cos",
    "square",
    "clamp",
    "clip",
    "contiguous",
    "float",
    "double",
    "to",
    "detach",
    "clone",
    "type_as",
}
BINARY_FUNCTIONS = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.minimum,
    torch.maximum,
    torch.pow,
    operator.pow,
}
BINARY_METHODS = {"add", "sub", "mul", "div", "minimum", "maximum", "pow"}
CAT_FUNCTIONS = {torch.cat, torch.concat}

# ATen overload packets by name (torch.export spells every op this way).
ATEN_ELEMENTWISE = {
    "relu",
    "tanh",
    "sigmoid",
    "elu",
    "silu",
    "mish",
    "leaky_relu",
    "gelu",
    "softplus",
    "hardtanh",
    "relu6",
    "hardswish",
    "hardsigmoid",
    "celu",
    "selu",
    "erf",
    "exp",
    "abs",
    "neg",
    "sqrt",
    "rsqrt",
    "reciprocal",
    "sin",
    "cos",
    "square",
    "log_sigmoid",
    "clone",
    "alias",
    "detach",
    "_to_copy",
    "contiguous",
    "dropout",
    "alpha_dropout",
    "feature_dropout",
    "lift_fresh_copy",
    "clamp",
    "clip",
    "clamp_min",
    "clamp_max",
    "to",
    "type_as",
    "log1p",
    "expm1",
    "log",
    "logical_not",
    "sign",
}
ATEN_BINARY = {"add", "sub", "mul", "div", "rsub", "pow", "maximum", "minimum", "gt", "lt", "ge", "le", "eq", "ne"}
ATEN_COMBINE = {"where"}  # element-wise over several equally wide tensors (core ATen's softplus, ELU, hardtanh)
ATEN_SHAPE = {
    "sym_size",
    "sym_numel",
    "sym_stride",
    "_assert_tensor_metadata",
    "_assert_scalar",
    "sym_constrain_range_for_size",
    "sym_constrain_range",
}
ATEN_RESHAPE = {"view", "reshape", "_unsafe_view", "flatten"}
ATEN_TRANSPOSE = {"t", "transpose", "permute", "numpy_T"}

# onnx2torch's own modules, by class name (prune/ does not import onnx2torch).
ONNX_ELEMENTWISE = {
    "OnnxErf",
    "OnnxFunction",
    "OnnxClip",
    "OnnxHardSigmoid",
    "OnnxSqrt",
    "OnnxNeg",
    "OnnxReciprocal",
    "OnnxCast",
    "OnnxCopyIdentity",
}
ONNX_COMBINE = {
    "OnnxMinMax",
    "OnnxSum",
    "OnnxMean",
    "OnnxWhere",
}  # element-wise over several tensors (Max/Min: clamp with tensor bounds)
# Ops that hand their input on unchanged: looked through when finding a constant weight (an exporter's Identity on an initializer).
PASS_THROUGH = {"clone", "alias", "detach", "contiguous", "_to_copy", "lift_fresh_copy", "to", "float", "type_as"}

SUPPORTED = (
    "Linear (nn.Linear, F.linear, aten.linear/addmm/mm, matmul with a constant weight), "
    "LayerNorm over the features (module, F.layer_norm, aten.layer_norm/native_layer_norm), "
    "element-wise activations (ReLU, ELU, Tanh, SiLU, Mish, LeakyReLU, GELU, Softplus, Sigmoid, ...), "
    "dropout/identity, clamp/clip/minimum/maximum, + - * / with scalars, per-feature constants or an equally wide "
    "tensor (residual sums), cat along the features, reshapes that keep the shape"
)


def aten_name(target: object) -> str | None:
    """``'relu'`` for ``aten.relu.default`` (any overload); None for anything not an ATen op."""
    if isinstance(target, torch._ops.OpOverload) and target.namespace == "aten":
        return target._schema.name.split("::", 1)[1]
    return None


def target_name(node: fx.Node) -> str:
    """The op of a node as a user reads it: ``aten.sort.default``, ``sort``, ``mul``."""
    t = node.target
    if isinstance(t, torch._ops.OpOverload):
        return str(t)
    return getattr(t, "__name__", str(t))


def is_transpose(node: fx.Node) -> bool:
    """A 2-D transpose (of a constant weight): ``w.t()``, ``w.T``, ``torch.transpose(w, 0, 1)``, ``aten.t``, ``aten.permute(w, [1, 0])``."""
    t, name = node.target, aten_name(node.target)
    if node.op == "call_function" and t is getattr and len(node.args) > 1 and node.args[1] in ("T", "mT"):
        return True
    if (
        name in ATEN_TRANSPOSE
        or (node.op == "call_method" and t in ("t", "transpose", "permute"))
        or t in (torch.t, torch.transpose, torch.permute)
    ):
        rest: list = list(node.args[1:])
        if name == "permute" or t in ("permute", torch.permute):
            dims = list(rest[0]) if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
            return all(isinstance(d, int) for d in dims) and [d % 2 for d in dims] == [1, 0]
        return not rest or (all(isinstance(d, int) for d in rest) and sorted(d % 2 for d in rest) == [0, 1])
    return False


def role(node: fx.Node, mod: nn.Module | None = None) -> str:
    """What a call node does to the features, for the tracer.

    One of: ``elementwise``, ``binary``, ``combine`` (element-wise over several tensors), ``cat``, ``linear`` (x, weight[, bias]), ``matmul``
    (x @ weight), ``addmm`` (bias, x, weight), ``layer_norm``, ``native_layer_norm`` (a tuple),
    ``getitem``, ``reshape``, ``squeeze``, ``shape`` (reads sizes only), ``constant`` (onnx2torch
    Constant), ``unknown``. ``mod`` is the called module of a ``call_module`` node.
    """
    t = node.target
    if node.op == "call_module":
        cls = type(mod).__name__
        if isinstance(mod, ELEMENTWISE_MODULES) or cls in ONNX_ELEMENTWISE:
            return "elementwise"
        if (cls == "OnnxBinaryMathOperation" and getattr(mod, "broadcast", None) != 1) or cls == "OnnxPow":
            return "binary"
        if cls in ONNX_COMBINE:
            return "combine"
        if cls == "OnnxMatMul":
            return "matmul"
        if cls == "OnnxConcat":
            return "cat"
        if cls == "OnnxConstant":
            return "constant"
        if cls == "OnnxLayerNorm":
            return "layer_norm"
        if isinstance(mod, nn.Flatten) or cls in ("OnnxFlatten", "OnnxReshape"):
            return "reshape"
        return "unknown"
    if node.op == "call_method":
        if t in ELEMENTWISE_METHODS:
            return "elementwise"
        if t in BINARY_METHODS:
            return "binary"
        if t in ("matmul", "mm", "__matmul__"):
            return "matmul"
        if t in ("view", "reshape", "flatten"):
            return "reshape"
        if t in ("unsqueeze", "squeeze"):
            return "squeeze"
        if t in ("size", "dim", "numel"):
            return "shape"
        return "unknown"
    name = aten_name(t)
    if name is not None:
        if name in ATEN_ELEMENTWISE:
            return "elementwise"
        if name in ATEN_BINARY:
            return "binary"
        if name in ATEN_COMBINE:
            return "combine"
        table = {
            "cat": "cat",
            "concat": "cat",
            "linear": "linear",
            "mm": "matmul",
            "matmul": "matmul",
            "addmm": "addmm",
            "layer_norm": "layer_norm",
            "native_layer_norm": "native_layer_norm",
            "unsqueeze": "squeeze",
            "squeeze": "squeeze",
        }
        if name in table:
            return table[name]
        if name in ATEN_RESHAPE:
            return "reshape"
        if name in ATEN_SHAPE:
            return "shape"
        return "unknown"
    if t in ELEMENTWISE_FUNCTIONS:
        return "elementwise"
    if t in BINARY_FUNCTIONS:
        return "binary"
    if t is torch.where:
        return "combine"
    if t in CAT_FUNCTIONS:
        return "cat"
    if t is F.linear:
        return "linear"
    if t in (torch.matmul, operator.matmul, torch.mm):
        return "matmul"
    if t is torch.addmm:
        return "addmm"
    if t is F.layer_norm:
        return "layer_norm"
    if t is operator.getitem:
        return "getitem"
    if t in (torch.reshape, torch.flatten):
        return "reshape"
    if t in (torch.unsqueeze, torch.squeeze):
        return "squeeze"
    if t is getattr and len(node.args) > 1 and node.args[1] in ("shape", "dtype", "device", "ndim"):
        return "shape"
    if t in (torch._assert, torch.sym_int) or getattr(t, "__name__", "") == "_assert":
        return "shape"
    return "unknown"


def passes_through(node: fx.Node, mod: nn.Module | None = None) -> bool:
    """An op that returns its (first) input unchanged: ``nn.Identity``, ``clone``, ``detach``, a dtype cast."""
    if node.op == "call_module":
        return isinstance(mod, nn.Identity) or type(mod).__name__ == "OnnxCopyIdentity"
    name = aten_name(node.target) or (node.target if node.op == "call_method" else getattr(node.target, "__name__", ""))
    return name in PASS_THROUGH and bool(node.args)
