"""export/int8.py + export_onnx: a weight-only int8 controller exports with INT8 codes in the file, in parity with torch."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch

from export.int8 import export_form, int8_initializers
from export.onnx_export import export_onnx, ort_session
from prune import find_groups, keep_indices, quantize, score, shrink


@pytest.fixture
def spec(pendulum):
    return pendulum


def _dtypes(model: onnx.ModelProto) -> dict[str, int]:
    return {i.name: i.data_type for i in model.graph.initializer if len(i.dims) == 2}


def _weight_bytes(model: onnx.ModelProto) -> int:
    return sum(len(onnx.numpy_helper.to_array(i).tobytes()) for i in model.graph.initializer if len(i.dims) == 2)


def _pruned(module: torch.nn.Module, obs_dim: int) -> torch.nn.Module:
    groups = find_groups(module, torch.zeros(1, obs_dim))
    kept = {g.name: max(1, g.size * 3 // 10) for g in groups.groups}  # keep 30% of every group
    return shrink(module, groups, keep_indices(score(module, groups, "l1"), kept)).eval()


@pytest.mark.parametrize("pruned", [False, True], ids=["unpruned", "pruned"])
def test_int8_mlp_exports_int8_codes_in_parity_and_smaller_than_float(spec, make_mlp, pruned):
    module = make_mlp([128, 128])
    if pruned:
        module = _pruned(module, 3)  # 38 units a layer
    quantized = quantize(module)
    float_model, _ = export_onnx(module, spec, n_parity=200)
    model, rep = export_onnx(quantized, spec, n_parity=1000, seed=1)

    # every rank-2 weight in the file is INT8 (after onnxsim), one per Linear, none float
    dtypes = _dtypes(model)
    assert len(dtypes) == 3 and set(dtypes.values()) == {onnx.TensorProto.INT8}, dtypes
    assert len(int8_initializers(model)) == 3
    assert "DequantizeLinear" in rep.op_types and rep.simplified
    assert {n.op_type for n in float_model.graph.node}.isdisjoint({"DequantizeLinear"})
    widths = [m.out_features for m in module.modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(map(sorted, rep.weight_shapes)) == sorted(sorted(s) for s in zip([3, *widths[:-1]], widths))

    # onnxruntime equals the torch int8 forward (the contract's: scale after the float accumulation)
    obs = spec.sample_observations(500, seed=7)
    session = ort_session(model)
    got = np.concatenate([session.run(None, {"obs": obs[i : i + 1]})[0] for i in range(len(obs))])
    with torch.no_grad():
        expected = quantized(torch.from_numpy(obs)).numpy()
    assert np.max(np.abs(got - expected)) <= 1e-5
    assert rep.parity_max_abs_err <= 1e-5

    # 1 byte per weight instead of 4; the file saves at least 1 of the 3 (DequantizeLinear nodes and scales cost bytes)
    n_weights = sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))
    assert _weight_bytes(model) == n_weights and _weight_bytes(float_model) == 4 * n_weights
    n_float, n_int8 = len(float_model.SerializeToString()), len(model.SerializeToString())
    assert n_int8 < n_float - n_weights, (n_float, n_int8)


def test_export_form_keeps_the_int8_forward_and_leaves_a_float_model_alone(spec, make_mlp):
    module = make_mlp([16, 16])
    assert export_form(module) is module
    quantized = quantize(module)
    form = export_form(quantized)
    assert form is not quantized and not any(hasattr(m, "weight_q") for m in form.modules())
    x = torch.from_numpy(spec.sample_observations(64, seed=0))
    with torch.no_grad():
        assert torch.allclose(form(x), quantized(x), atol=1e-6)
    assert quantized[0].weight_q.dtype == torch.int8  # the caller's model is not edited


def test_a_partly_quantized_model_keeps_its_float_layers_float(spec, make_mlp):
    module = make_mlp([16, 16])
    quantized = quantize(module)
    quantized[4] = module[4]  # the head stays float
    model, rep = export_onnx(quantized, spec, n_parity=200)
    assert sorted(_dtypes(model).values()) == [onnx.TensorProto.FLOAT, onnx.TensorProto.INT8, onnx.TensorProto.INT8]
    assert rep.parity_max_abs_err <= 1e-5
