"""export/tvm_compile.py: unsupported ops refused by name, every pipeline computes what onnxruntime computes."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper
from tvm import relax

from export import ExportError, check_supported_ops, export_onnx, ort_actions, ort_session
from export.tvm_compile import PIPELINES, build, compile_library, import_onnx, lower
from targets import get_target, host_cpu_flags


@pytest.fixture(scope="module")
def onnx_model(pendulum, make_mlp) -> onnx.ModelProto:
    model, _ = export_onnx(make_mlp([24, 12], "elu", seed=5), pendulum, n_parity=100)
    return model


def _graph_with(op_type: str, node_name: str, domain: str = "") -> onnx.ModelProto:
    """obs -> Relu -> <op_type> -> action: one supported node, then the node under test."""
    nodes = [
        helper.make_node("Relu", ["obs"], ["h"], name="relu0"),
        helper.make_node(op_type, ["h"], ["action"], name=node_name, domain=domain),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, [1, 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_an_op_without_a_converter_is_refused_naming_the_node_and_the_op():
    with pytest.raises(
        ExportError,
        match=r"^ctrl\.onnx: TVM's ONNX importer does not support op 'FrobnicateX' "
        r"\(node head\); use another activation or layer$",
    ):
        check_supported_ops(_graph_with("FrobnicateX", "head"), "ctrl.onnx")


def test_an_op_from_a_custom_domain_is_refused_even_if_its_name_is_known():
    with pytest.raises(ExportError, match=r"op 'Relu' \(node custom_relu\)"):
        check_supported_ops(_graph_with("Relu", "custom_relu", domain="com.example"))


def test_supported_ops_pass_the_check(onnx_model):
    check_supported_ops(onnx_model)  # raises on any unsupported node
    check_supported_ops(_graph_with("Tanh", "head"))


def test_the_imported_module_takes_one_observation_at_a_time(onnx_model, pendulum):
    mod = import_onnx(onnx_model, pendulum)
    (param,) = mod["main"].params
    assert [int(d) for d in param.ty.shape.values] == [1, pendulum.obs_dim]  # TVM 0.27: Var.ty (was struct_info)


def test_an_unknown_pipeline_is_refused_naming_the_known_ones(onnx_model, pendulum):
    with pytest.raises(ExportError, match=r"unknown pipeline 'fastest'; known: scheduled, fused, default"):
        lower(import_onnx(onnx_model, pendulum), get_target("x86_64"), "fastest")


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_pipeline_computes_what_onnxruntime_computes(onnx_model, pendulum, pipeline):
    ex, kernels, scheduled, calls = build(onnx_model, pendulum, get_target("x86_64"), pipeline)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    obs = pendulum.sample_observations(50, seed=9)
    got = np.concatenate([vm["main"](tvm.runtime.tensor(obs[i : i + 1])).numpy() for i in range(len(obs))])
    want = ort_actions(ort_session(onnx_model), pendulum, obs, batch_one=True)
    assert got.shape == want.shape == (50, 1)
    assert np.max(np.abs(got - want)) <= 1e-5
    if pipeline == "default":  # unfused: many small kernels, none hand-scheduled
        assert len(kernels) > 3 and scheduled == []
    else:  # Linear+ELU, Linear+ELU, Linear+bound fused into three kernels
        assert len(kernels) == 3 and calls == 3
        assert sorted(scheduled) == (sorted(kernels) if pipeline == "scheduled" else [])


def test_compile_library_links_the_file_and_reports_it(onnx_model, pendulum, tmp_path):
    out = tmp_path / "x86_64.so"
    report = compile_library(onnx_model, pendulum, get_target("x86_64"), out)
    assert out.is_file() and report.library_bytes == out.stat().st_size > 0
    assert report.kernels == 3 and report.compile_flags["pipeline"] == "scheduled"
    assert report.compile_flags["fast_math"] is True and report.compile_seconds > 0


def test_the_default_x86_64_library_uses_the_hosts_vector_width_and_fma(onnx_model, pendulum, tmp_path):
    # On an AVX2 + FMA host the default target is never the SSE2 baseline: ymm (or zmm) registers and vfmadd.
    out = tmp_path / "x86_64.so"
    report = compile_library(onnx_model, pendulum, get_target("x86_64"), out)
    text = subprocess.run(["objdump", "-d", str(out)], capture_output=True, text=True, check=True).stdout
    sse2 = tmp_path / "sse2.so"
    compile_library(onnx_model, pendulum, get_target("x86_64-sse2"), sse2)
    baseline = subprocess.run(["objdump", "-d", str(sse2)], capture_output=True, text=True, check=True).stdout
    assert "vfmadd" not in baseline and "%ymm" not in baseline
    if {"avx2", "fma"} <= host_cpu_flags():
        assert "vfmadd" in text and re.search(r"%[yz]mm", text)
        assert {"avx2", "fma"} <= set(report.compile_flags["cpu_flags"].split())
    assert report.compile_flags["cpu"] == get_target("x86_64").tvm.get("mcpu", "generic")


def test_compile_library_refuses_a_microcontroller_target_by_name(onnx_model, pendulum, tmp_path):
    with pytest.raises(ExportError, match=r"target 'cortex-m4' is a mcu target: shared libraries are built only"):
        compile_library(onnx_model, pendulum, get_target("cortex-m4"), tmp_path / "m.so")
    assert not (tmp_path / "m.so").exists()
