"""Int8 weights in the exported graph: a weight-only int8 Linear becomes int8 initializers, not float ones.

The contract is :mod:`prune.quantize`'s (read here by duck typing: export does not import prune): a
module holding ``weight_q`` (int8 [out, in]), ``scale`` (float32 [out]) and ``bias`` (float32 [out] or
None) computes ``y = (x @ float32(weight_q).T) * scale + bias``, the scale applied once per output after
the float32 accumulation. In ONNX (QDQ form with a unit scale, so the dequantisation is the exact
int8 -> float32 conversion and the per-channel scale stays after the sum)::

    codes_t (INT8 [in, out]) -> DequantizeLinear(scale 1, zero point 0) -> MatMul(x, .) -> Mul(scale) -> Add(bias)

torch's exporter would fold a ``Cast`` of a constant into a float initializer; it does not fold
``DequantizeLinear``, so the codes stay INT8 in the file (``int8_initializers`` counts them after each step).
"""

from __future__ import annotations

import copy

import onnx
import torch
from torch import nn

from export.errors import ExportError


def is_int8_linear(module: nn.Module) -> bool:
    """True for a module holding the weight-only int8 contract's ``weight_q`` (int8, rank 2) and ``scale``."""
    q = getattr(module, "weight_q", None)
    return (
        isinstance(q, torch.Tensor)
        and q.dtype == torch.int8
        and q.ndim == 2
        and isinstance(getattr(module, "scale", None), torch.Tensor)
    )


def has_int8(module: nn.Module) -> bool:
    """True when any submodule of ``module`` is an int8 Linear."""
    return any(is_int8_linear(m) for m in module.modules())


def int8_tensors(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(weight_q, scale, bias)`` of an int8 Linear (bias None when it has none)."""
    if not is_int8_linear(module):
        raise ExportError(f"{type(module).__name__} is not an int8 Linear (no int8 weight_q [out, in] and scale)")
    bias = getattr(module, "bias", None)
    return module.weight_q, module.scale, bias if isinstance(bias, torch.Tensor) else None  # type: ignore[return-value]


def int8_linear_shapes(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """(name, [out, in]) of every int8 Linear in ``module``, in module order."""
    return [(name, tuple(int8_tensors(m)[0].shape)) for name, m in module.named_modules() if is_int8_linear(m)]


class _Codes(torch.autograd.Function):
    """int8 codes -> float32, exported as ``DequantizeLinear(q, 1.0, 0)`` (exact, and not constant-folded)."""

    @staticmethod
    def forward(ctx, codes: torch.Tensor) -> torch.Tensor:
        return codes.to(torch.float32)

    @staticmethod
    def symbolic(g, codes):  # torch.onnx's graph context (no public type)
        one = g.op("Constant", value_t=torch.tensor(1.0, dtype=torch.float32))
        zero = g.op("Constant", value_t=torch.tensor(0, dtype=torch.int8))
        return g.op("DequantizeLinear", codes, one, zero)


class OnnxInt8Linear(nn.Module):
    """The export form of an int8 Linear: ``(x @ dequant(codes_t)) * scale + bias`` with ``codes_t`` int8 [in, out]."""

    codes_t: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        # transposed once here, so the file holds the [in, out] codes MatMul reads and no Transpose node
        codes, scale, bias = int8_tensors(linear)
        self.register_buffer("codes_t", codes.detach().t().contiguous())
        self.register_buffer("scale", scale.detach().to(torch.float32).clone())
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.matmul(x, _Codes.apply(self.codes_t)) * self.scale
        return y + self.bias if self.bias is not None else y


def export_form(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose int8 Linears are :class:`OnnxInt8Linear` (``module`` itself when it has none)."""
    if not has_int8(module):
        return module
    out = copy.deepcopy(module)
    for name, m in list(out.named_modules()):
        if name and is_int8_linear(m):
            parent, _, child = name.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, child, OnnxInt8Linear(m))
    return out


def int8_initializers(model: onnx.ModelProto) -> list[str]:
    """Names of the INT8 initializers of ``model`` (the codes a quantized graph must keep)."""
    return [i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
