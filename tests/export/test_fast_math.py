"""export/fast_math.py: exp's polynomial without a floorf call per unit, bit for bit TVM's fast_exp."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from export.fast_math import fast_math
from targets import get_target

N = 4096


def _module(op, n: int = N) -> tvm.IRModule:
    """``main(x: float32[n]) = op(x)`` as a Relax module."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((n,), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(op(x))
        bb.emit_func_output(y)
    return bb.get()


def _exp_module() -> tvm.IRModule:
    return _module(relax.op.exp)


def _run(mod: tvm.IRModule, x: np.ndarray) -> tuple[np.ndarray, str]:
    target = get_target("x86_64-sse2")  # the SSE2 baseline: no vector floor instruction
    ex = tvm.compile(relax.get_pipeline("zero")(mod), target=target.tvm_target())
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    return out, ex.mod.imports[0].inspect_source("asm")


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    special = [0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 88.3, 88.5, -88.3, -88.5, 1e4, -1e4, 127.5, -127.5]
    grid = np.linspace(-100.0, 100.0, N - len(special), dtype=np.float32)
    return np.concatenate([grid, np.array(special, np.float32)])


def test_the_floor_free_exp_equals_tvms_fast_exp_bit_for_bit_without_calling_floorf(inputs):
    ours, asm = _run(fast_math(_exp_module()), inputs)
    theirs, their_asm = _run(relax.transform.FastMathTransform()(_exp_module()), inputs)
    assert "floorf" in their_asm and "floorf" not in asm  # the call per unit is gone on SSE2
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))
    finite = np.abs(inputs) < 80
    np.testing.assert_allclose(
        ours[finite], np.exp(inputs[finite].astype(np.float64)), rtol=5e-6
    )  # TVM's polynomial: a few ulps


def test_tanh_still_goes_through_tvms_fast_math():
    names = [gv.name_hint for gv in fast_math(_module(relax.op.tanh, 8)).functions]
    assert any("fast_tanh" in n for n in names), names
