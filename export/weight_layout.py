"""Weights laid out in the order a scheduled kernel reads them: [K, N] stored as [N/u, K, u].

A kernel that keeps ``u`` outputs in registers while the reduction walks K reads ``u`` weights of
row k, then ``u`` of row k+1, ...: with the folded [K, N] matrix those are N floats apart (on Thumb-2
wider than a load's offset range, on x86-64 a strided stream). Packed as [N/u, K, u] a group reads
one contiguous run from one pointer. The kernel's weight parameter is re-laid with
``transform_layout`` (:func:`pack_read`) and every folded constant the Relax ``main`` passes it is
permuted to match (:func:`pack_constants`), so every consumer of the lowered module (the Relax VM,
the Linux stub's kernel plan, the microcontroller driver) sees the packed arrays; only a weight that
every call passes as a folded constant (:func:`constant_args`) is packed.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, s_tir

CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def constant_args(mod: tvm.IRModule) -> dict[str, frozenset[int]]:
    """Kernel name -> the argument positions that are a folded constant in every call of it."""
    seen: dict[str, frozenset[int]] = {}
    for func in mod.functions.values():
        if not isinstance(func, relax.Function) or not hasattr(func.body, "blocks"):
            continue
        for block in func.body.blocks:
            for b in block.bindings:
                v = b.value
                if not isinstance(v, relax.Call) or not v.op.same_as(CALL_TIR):
                    continue
                consts = frozenset(i for i, a in enumerate(v.args[1].fields) if isinstance(a, tvm.ir.expr.Constant))
                name = v.args[0].name_hint
                seen[name] = seen[name] & consts if name in seen else consts
    return seen


def pack_read(
    sch: s_tir.Schedule, red, func: tvm.tirx.PrimFunc, k: int, n: int, u: int, constant: frozenset[int]
) -> int | None:
    """Re-lay the [K, N] weight that block ``red`` reads as [N/u, K, u]; its parameter index, or None if not packable.

    Call before splitting the loops (the layout is rewritten in terms of the block's iteration variables).
    """
    if u <= 1 or n % u:
        return None
    reads = [r.source for r in sch.get(red).reads]  # TVM 0.27: a parameter is the buffer itself
    for i, param in enumerate(func.params):
        if i not in constant or [int(d) for d in getattr(param, "shape", ())] != [k, n]:
            continue
        for r, buf in enumerate(reads):
            if buf.same_as(param):
                sch.transform_layout(red, ("read", r), lambda kk, nn: (nn // u, kk, nn % u))
                return i
    return None


def pack_weights(weights: np.ndarray, u: int) -> np.ndarray:
    """A [K, N] weight matrix in the order a group of ``u`` outputs reads it: [N/u, K, u]."""
    k, n = weights.shape
    return np.ascontiguousarray(weights.reshape(k, n // u, u).transpose(1, 0, 2))


@relax.expr_functor.mutator
class _PackedConstants(relax.PyExprMutator):
    """Every folded weight constant passed to a packed kernel is replaced by its packed copy."""

    def __init__(self, mod: tvm.IRModule, packed: dict[str, tuple[int, int]]) -> None:
        # the re-laid kernels are left out and added back under fresh GlobalVars (run): the old ones still
        # carry the signature the kernels had before their weight parameter changed shape
        self.kernels = {gv: f for gv, f in mod.functions.items() if gv.name_hint in packed}
        rest = {gv: f for gv, f in mod.functions.items() if gv.name_hint not in packed}
        super().__init__(tvm.IRModule(rest, attrs=mod.attrs, global_infos=mod.global_infos))
        self.mod_, self.packed = mod, packed
        self.targets: dict[str, tvm.ir.GlobalVar] = {}

    def visit_call_(self, call):  # noqa: D102 - the mutator's hook
        call = super().visit_call_(call)
        if not call.op.same_as(CALL_TIR) or call.args[0].name_hint not in self.packed:
            return call
        index, u = self.packed[call.args[0].name_hint]
        fields = list(call.args[1].fields)
        const = fields[index]  # a folded constant in every call (constant_args)
        data = (const.value if hasattr(const, "value") else const.data).numpy()
        fields[index] = relax.const(pack_weights(data, u))
        target = self.targets.get(call.args[0].name_hint, call.args[0])
        return relax.Call(call.op, [target, relax.Tuple(fields)], call.attrs, call.ty_args)

    def run(self) -> tvm.IRModule:
        for gv, func in self.kernels.items():
            self.targets[gv.name_hint] = self.builder_.add_func(func, gv.name_hint)
        for gv, func in self.mod_.functions.items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gv, self.visit_expr(func))
        return self.builder_.get()


def pack_constants(mod: tvm.IRModule, packed: dict[str, tuple[int, int]]) -> tvm.IRModule:
    """``mod`` with the weight constants of the packed kernels (name -> (parameter index, u)) permuted to match."""
    return _PackedConstants(mod, packed).run() if packed else mod
