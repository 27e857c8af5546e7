"""The lowered Relax ``main`` read as a chain of ``call_tir`` kernels: what a runtime-free driver runs.

TVM 0.27 has no runtime for a microcontroller and none for armv7, and on x86_64 and aarch64 the
Relax VM costs more per call than a small controller's kernels, so the kernels are called without
it: by generated C on a microcontroller (:mod:`export.mcu.codegen`), from a plan file by the Linux
stub (:func:`export.stub.kernel_plan`). Both need the same facts: the tensors
(input, folded constants, intermediates) and the kernel calls in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from export.errors import ExportError

INPUT, CONSTANT, INTERMEDIATE = "input", "constant", "intermediate"


@dataclass
class Tensor:
    """One tensor of the chain: the input, a folded constant, or a kernel's result (float32; int8 weights if allowed)."""

    kind: str
    shape: list[int]
    data: np.ndarray | None = None  # constants only, flattened, of ``dtype``
    dtype: str = "float32"  # "int8" only for int8 weights (kernel_chain(..., int8=True))

    @property
    def numel(self) -> int:
        """Number of values."""
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Bytes the tensor's values take (4 per float32, 1 per int8)."""
        return self.numel * np.dtype(self.dtype).itemsize


@dataclass
class KernelChain:
    """The compiled graph as the driver runs it: tensors, then kernel calls in order."""

    tensors: list[Tensor] = field(default_factory=list)
    calls: list[tuple[str, list[int]]] = field(default_factory=list)  # kernel name, tensor indices (output last)
    input: int = -1
    output: int = -1

    def floats(self, kind: str) -> int:
        """Number of float32 values held by tensors of ``kind``."""
        return sum(t.numel for t in self.tensors if t.kind == kind and t.dtype == "float32")

    def nbytes(self, kind: str) -> int:
        """Bytes held by tensors of ``kind`` (int8 weights 1 per value, everything else 4)."""
        return sum(t.nbytes for t in self.tensors if t.kind == kind)


def _ty(var):
    return var.ty if hasattr(var, "ty") else var.struct_info


def _name(var) -> str:
    return str(getattr(var, "name", None) or getattr(var, "name_hint", "?"))


def kernel_chain(mod, where: str, int8: bool = False) -> KernelChain:
    """Read the lowered Relax ``main`` as a chain of call_tir kernels; anything else is refused, named.

    Shared by both runtime-free paths: the generated microcontroller C (:mod:`export.mcu.codegen`) and
    the Linux stub's plan file (:func:`export.stub.kernel_plan`). ``int8``: the caller carries int8
    weight constants (both do; without it an int8 constant is refused, named).
    """
    chain = KernelChain()
    index: dict = {}

    def add(kind: str, shape, data=None, dtype: str = "float32") -> int:
        chain.tensors.append(Tensor(kind, [int(d) for d in shape], data, dtype))
        return len(chain.tensors) - 1

    def float_shape(ty, what: str) -> list[int]:
        if type(ty).__name__ not in ("TensorType", "TensorStructInfo") or ty.dtype != "float32" or ty.shape is None:
            raise ExportError(
                f"{where}: {what} is not a float32 tensor of known shape; the runtime-free path "
                "supports only float32 MLP-like graphs"
            )
        return [int(d) for d in ty.shape.values]

    main = mod["main"]
    if len(main.params) != 1:
        raise ExportError(f"{where}: main takes {len(main.params)} inputs; the runtime-free path supports exactly one")
    for p in main.params:
        index[p] = chain.input = add(INPUT, float_shape(_ty(p), f"input {_name(p)}"))
    for block in main.body.blocks:
        for b in block.bindings:
            v = b.value
            op_name = getattr(getattr(v, "op", None), "name", "")
            if not isinstance(b, relax.VarBinding) or op_name != "relax.call_tir" or len(v.args) != 2:
                raise ExportError(
                    f"{where}: binding {_name(b.var)} is not a plain call_tir kernel call "
                    "(the runtime-free path runs only kernel chains)"
                )
            args = []
            for a in v.args[1].fields:
                if isinstance(a, tvm.ir.expr.Constant):  # TVM 0.27: GenericConst, tensor in .value
                    arr = (a.value if hasattr(a, "value") else a.data).numpy()
                    if arr.dtype == np.int8 and not int8:
                        raise ExportError(
                            f"{where}: int8 weights of kernel {v.args[0].name_hint}: this runtime-free "
                            "path holds float32 constants only"
                        )
                    if arr.dtype not in (np.float32, np.int8):
                        raise ExportError(f"{where}: constant of dtype {arr.dtype} (only float32 is supported)")
                    if not np.all(np.isfinite(arr)):
                        raise ExportError(f"{where}: a folded constant of kernel {v.args[0].name_hint} is not finite")
                    # a scalar (Clip's bounds) stays rank 0: the kernel checks the rank it was given
                    args.append(add(CONSTANT, arr.shape, np.ascontiguousarray(arr).reshape(-1), str(arr.dtype)))
                elif a in index:
                    args.append(index[a])
                else:
                    raise ExportError(f"{where}: kernel argument {a} is neither a constant nor an earlier result")
            out_ty = v.ty_args[0] if hasattr(v, "ty_args") else v.sinfo_args[0]
            out = add(INTERMEDIATE, float_shape(out_ty, f"output of {v.args[0].name_hint}"))
            index[b.var] = out
            chain.calls.append((v.args[0].name_hint, args + [out]))
    result = main.body.body
    if result not in index or index[result] == chain.input:
        raise ExportError(f"{where}: main does not return a kernel result")
    chain.output = index[result]
    return chain
