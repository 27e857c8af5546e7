"""Fast math for the kernels: TVM's polynomial exp/tanh/erf, with exp's floor computed without a library call.

TVM's ``fast_exp`` (topi) splits x into n*ln2 + r with ``n = floor(x*log2e + 0.5)``. On targets with no
vector floor instruction (the SSE2 baseline, the Cortex-M4/M7 FPU) LLVM lowers that floor to a call to
``floorf`` for every unit: on a Cortex-M about 97 instructions each, a third of a pruned ELU model's
count; on SSE2 four calls per vector. :func:`fast_math` builds the same polynomial with the floor taken
from a truncating conversion, ``t = float(int(m)); floor(m) = t - (m < t)``, exact because the argument
is clamped to [-127.5, 128] first: the same results bit for bit, without the call. tanh and erf go
through TVM's ``FastMathTransform`` as before.
"""

from __future__ import annotations

import tvm
from tvm import relax, te, tirx

# topi::fast_exp's constants (float32): the clamp, log2(e), ln(2) and the polynomial of exp(r) on [-ln2/2, ln2/2]
X_HI, X_LO = 88.3762626647950, -88.3762626647949
LOG2E, LN2 = 1.44269504088896341, 0.6931471805599453
POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
EXP = tvm.ir.Op.get("relax.exp")


def _f32(v: float):
    return tirx.const(v, "float32")


def fast_exp(x: te.Tensor) -> te.Tensor:
    """topi's fast_exp for float32, its floor from a truncating conversion (no ``floorf``; see the module doc)."""

    def body(*i):
        v = te.max(te.min(x(*i), _f32(X_HI)), _f32(X_LO))
        m = v * _f32(LOG2E) + _f32(0.5)  # within [-127.5, 128]: int32 truncation is exact
        t = tirx.Cast("float32", tirx.Cast("int32", m))
        n = t - tirx.Select(m < t, _f32(1.0), _f32(0.0))  # floor(m)
        r = v - n * _f32(LN2)
        q = _f32(POLY[0])
        for p in POLY[1:]:
            q = q * r + _f32(p)
        y = q * r * r + r + _f32(1.0)
        two_n = tirx.reinterpret("float32", tirx.Cast("int32", n + _f32(127.0)) << 23)
        return te.max(two_n * y, x(*i))

    return te.compute(x.shape, body, name="T_fast_exp", tag="elemwise")


def _is_float32(expr) -> bool:
    return getattr(getattr(expr, "ty", None), "dtype", None) == "float32"


@relax.expr_functor.mutator
class _FloorFreeExp(relax.PyExprMutator):
    """Every float32 ``relax.exp`` becomes a call of :func:`fast_exp`."""

    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.mod_ = mod

    def visit_call_(self, call):  # noqa: D102 - the mutator's hook
        call = super().visit_call_(call)
        if call.op.same_as(EXP) and _is_float32(call.args[0]):
            return self.builder_.call_te(fast_exp, call.args[0], primfunc_name_hint="fast_exp")
        return call

    def run(self) -> tvm.IRModule:
        for gv, func in self.mod_.functions.items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gv, self.visit_expr(func))
        return self.builder_.get()


def fast_math(mod: tvm.IRModule) -> tvm.IRModule:
    """exp -> :func:`fast_exp`, then TVM's ``FastMathTransform`` for tanh and erf (a Relax module, before lowering)."""
    return relax.transform.FastMathTransform()(_FloorFreeExp(mod).run())
