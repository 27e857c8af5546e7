"""export/int8_kernels.py: an int8 controller's x86_64 library keeps its weights int8 and computes what onnxruntime does."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm.relax.frontend.onnx import from_onnx

from export.int8_kernels import constant_dtypes, keep_int8_weights
from export.onnx_export import export_onnx, ort_actions, ort_session
from export.tvm_compile import PIPELINES, compile_library, import_onnx, lower
from export.verify import run_library_in_process
from prune import quantize
from targets import get_target


@pytest.fixture(scope="module")
def models(pendulum, make_mlp) -> dict[str, onnx.ModelProto]:
    module = make_mlp([128, 96], seed=2)
    return {
        "float": export_onnx(module, pendulum, n_parity=100)[0],
        "int8": export_onnx(quantize(module), pendulum, n_parity=100)[0],
    }


N_WEIGHTS = 3 * 128 + 128 * 96 + 96 * 1


@pytest.mark.parametrize("pipeline", [p for p in PIPELINES if p != "default"])
def test_lowered_int8_module_passes_int8_constants_to_its_kernels(models, pendulum, pipeline):
    target = get_target("x86_64")
    lowered, scheduled = lower(import_onnx(models["int8"], pendulum), target, pipeline)
    assert sorted(constant_dtypes(lowered)) == [((3, 128), "int8"), ((96, 1), "int8"), ((128, 96), "int8")]
    if pipeline == "scheduled":
        assert len(scheduled) == 3  # the int8 dense kernels are scheduled like the float ones
    floats, _ = lower(import_onnx(models["float"], pendulum), target, pipeline)
    assert {dtype for _, dtype in constant_dtypes(floats)} == {"float32"}


def test_without_the_rewrite_constant_folding_would_make_the_weights_float(models, pendulum):
    raw = from_onnx(  # the importer alone, without export's int8 rewrite
        models["int8"], shape_dict={"obs": [1, 3]}, keep_params_in_input=False
    )
    folded, _ = lower(raw, get_target("x86_64"), "fused")
    assert {dtype for _, dtype in constant_dtypes(folded)} == {"float32"}
    kept, _ = lower(keep_int8_weights(raw), get_target("x86_64"), "fused")
    assert {dtype for _, dtype in constant_dtypes(kept)} == {"int8"}


@pytest.mark.parametrize("pipeline", ["scheduled", "default"])
def test_int8_library_matches_onnxruntime_and_is_smaller_than_float(models, pendulum, tmp_path, pipeline):
    target = get_target("x86_64")
    obs = pendulum.sample_observations(300, seed=4)
    sizes = {}
    for name, model in models.items():
        report = compile_library(model, pendulum, target, tmp_path / f"{name}.so", pipeline=pipeline)
        sizes[name] = report.library_bytes
        got = run_library_in_process(tmp_path / f"{name}.so", obs)
        expected = ort_actions(ort_session(model), pendulum, obs, batch_one=True)
        assert np.max(np.abs(got - expected)) <= 1e-5, name
    # 3 of every weight's 4 bytes are gone from the library (the rest of it is code, the same for both)
    assert sizes["int8"] <= sizes["float"] - 2 * N_WEIGHTS, sizes


def test_a_real_dequantisation_is_left_to_tvm(pendulum):
    codes = numpy_helper.from_array(np.arange(6, dtype=np.int8).reshape(3, 2), "codes")
    half = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    zero = numpy_helper.from_array(np.array(0, np.int8), "zero")
    nodes = [
        helper.make_node("DequantizeLinear", ["codes", "half", "zero"], ["w"]),
        helper.make_node("MatMul", ["obs", "w"], ["action"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, [1, 2])],
        initializer=[codes, half, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    mod = import_onnx(model, pendulum)
    assert "R.dequantize" in mod["main"].script()  # scale 0.5: not the exact int8 -> float conversion
    lowered, _ = lower(mod, get_target("x86_64"), "fused")
    assert {dtype for _, dtype in constant_dtypes(lowered)} == {"float32"}  # TVM folded it, as it always did


def test_a_float_graph_is_imported_as_before(models, pendulum):
    raw = from_onnx(models["float"], shape_dict={"obs": [1, 3]}, keep_params_in_input=False)
    tvm.ir.assert_structural_equal(import_onnx(models["float"], pendulum), raw)
