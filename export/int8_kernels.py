"""Int8 weights through TVM: a dense kernel reads the int8 codes and converts them inside its reduction.

TVM's ONNX importer turns the int8 graph's ``DequantizeLinear(codes, 1.0, 0)`` (:mod:`export.int8`) into
``R.dequantize`` of a constant; the "zero" pipeline's ``FoldConstant`` runs before fusion and would
evaluate it into a float32 array, four bytes a weight in the library. :func:`keep_int8_weights` rewrites
``R.matmul(x, R.dequantize(codes, 1.0, 0))`` into ``R.matmul(x, codes, out_dtype="float32")`` first: TVM's
matmul legalisation then casts each int8 code to float32 inside the sum (exact, the scale still applied
after the accumulation by the following ``Mul``), no constant-only call is left to fold, and the kernel is
the same (1, N, K) reduction the schedules in :mod:`export.schedule` know.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard


def _value(const) -> np.ndarray:
    """The array of a Relax constant (TVM 0.27: GenericConst with the tensor in ``.value``)."""
    return (const.value if hasattr(const, "value") else const.data).numpy()


def _rewrite_int8_matmuls(func: relax.Function) -> relax.Function:
    x, codes, scale, zero = wildcard(), is_const(), is_const(), is_const()
    pattern = is_op("relax.matmul")(x, is_op("relax.dequantize")(codes, scale, zero))

    def rewrite(expr, match):
        q, s, z = _value(match[codes]), _value(match[scale]), _value(match[zero])
        if q.dtype != np.int8 or s.size != 1 or float(s.reshape(-1)[0]) != 1.0 or np.any(z != 0):
            return expr  # a real dequantisation (scale or zero point): leave it to TVM
        return relax.op.matmul(match[x], match[codes], out_dtype="float32")

    return rewrite_call(pattern, rewrite, func)


@relax.transform.function_pass(opt_level=0, name="KeepInt8Weights")
def _keep_int8_pass(func: relax.Function, mod: tvm.IRModule, ctx: tvm.transform.PassContext) -> relax.Function:
    return _rewrite_int8_matmuls(func)


def keep_int8_weights(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with every ``matmul(x, dequantize(int8 constant, 1, 0))`` reading the int8 constant itself."""
    return _keep_int8_pass(mod)


def constant_dtypes(mod: tvm.IRModule, function: str = "main") -> list[tuple[tuple[int, ...], str]]:
    """(shape, dtype) of every rank-2 constant a Relax function passes to its kernels (what the library stores)."""
    found: list[tuple[tuple[int, ...], str]] = []

    def visit(expr) -> None:
        if isinstance(expr, tvm.ir.expr.Constant) and hasattr(
            getattr(expr, "value", getattr(expr, "data", None)), "numpy"
        ):
            arr = _value(expr)  # a tensor constant (integer constants of shapes are Constants too)
            if arr.ndim == 2:
                found.append((tuple(arr.shape), str(arr.dtype)))

    relax.analysis.post_order_visit(mod[function].body, visit)
    return found
