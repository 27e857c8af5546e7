"""export/batched_schedule.py: the register blocks of a planner's M-row products, chosen and run exactly."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import onnx
import pytest
import torch
import tvm
from torch import nn
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

from export.batched_schedule import block_shape, live_registers, registers
from export.tvm_compile import lower
from targets import get_target


@pytest.mark.parametrize(
    "m, n, lanes, want",
    [
        (33, 64, 4, (1, 8)),  # SSE2: 8 accumulators and a whole 32-float weight piece per step
        (33, 32, 8, (3, 2)),  # AVX2: three rows share each weight vector
        (33, 64, 16, (3, 4)),  # AVX-512: 32 registers hold 12 accumulators
        (7, 16, 4, (1, 4)),  # a prime row count: one row per block
    ],
)
def test_block_shape_fits_the_registers_and_divides_the_output(m, n, lanes, want):
    rows, u = block_shape(m, n, lanes)
    assert (rows, u) == want
    assert m % rows == 0 and n % (u * lanes) == 0
    assert live_registers(rows, u) <= registers(lanes) - 2


def test_a_width_not_a_multiple_of_the_simd_width_is_refused():
    with pytest.raises(ValueError, match="not a multiple"):
        block_shape(33, 6, 4)


def batched_layer_module(rows: int, inp: int, out: int, seed: int):
    """A Linear + ELU layer at a static batch of ``rows``, through ONNX into Relax; returns (module, torch layer)."""
    torch.manual_seed(seed)
    layer = nn.Sequential(nn.Linear(inp, out), nn.ELU()).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(layer, (torch.zeros(rows, inp),), buf, input_names=["x"], dynamo=False)  # type: ignore[arg-type]
    mod = from_onnx(onnx.load_from_string(buf.getvalue()), shape_dict={"x": [rows, inp]}, keep_params_in_input=False)
    return mod, layer


@pytest.mark.parametrize(
    "target_name, inp, out, rule",
    [
        ("x86_64", 20, 64, "blocks"),
        ("x86_64-avx2", 20, 32, "blocks"),
        ("x86_64", 64, 1, "row dots"),  # a reward or Q head
        ("x86_64", 20, 6, None),  # 6 outputs, 4 lanes: no rule fits, TVM's default lowering
    ],
)
def test_scheduled_batched_layer_equals_torch(target_name, inp, out, rule):
    mod, layer = batched_layer_module(33, inp, out, seed=out)
    target = get_target(target_name)
    lowered, scheduled = lower(mod, target, "scheduled")
    matmul = [n for n in scheduled if "matmul" in n]
    if rule is None:
        assert not matmul, scheduled
    else:
        assert matmul, scheduled  # the 33-row product took the batched rule
        body = lowered[matmul[0]].script()
        assert "T.vectorized" in body and 'scope="local"' in body  # accumulators in a local (register) block
        assert ("rfactor" in body or "_rf" in body) == (rule == "row dots")
    with contextlib.redirect_stdout(io.StringIO()):
        ex = tvm.compile(lowered, target=target.tvm_target())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    x = np.random.default_rng(out).normal(size=(33, inp)).astype(np.float32)  # ELU on both sides of zero
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    with torch.no_grad():
        want = layer(torch.from_numpy(x)).numpy()
    assert (want < 0).mean() > 0.1 and (want > 0).mean() > 0.1
    np.testing.assert_allclose(got, want, atol=1e-5)
