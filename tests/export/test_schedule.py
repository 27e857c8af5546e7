"""export/schedule.py + tvm_compile.py: the fused MLP kernels get the hand schedule and stay exact."""

from __future__ import annotations

import re

import numpy as np
import pytest
from tvm import relax

from export.onnx_export import export_onnx, ort_actions, ort_session
from export.schedule import schedule_module
from export.tvm_compile import build, import_onnx, lower
from export.verify import run_library_in_process
from targets import get_target


@pytest.fixture(scope="module")
def onnx_model(pendulum, make_mlp):
    model, _ = export_onnx(make_mlp([256, 256], "elu", seed=0), pendulum, n_parity=1000)
    return pendulum, model


def test_zero_pipeline_fuses_the_mlp_into_three_kernels_all_scheduled(onnx_model):
    spec, model = onnx_model
    mod, scheduled = lower(import_onnx(model, spec), get_target("x86_64-avx2"), "scheduled")
    kernels = [gv.name_hint for gv, f in mod.functions.items() if "PrimFunc" in type(f).__name__]
    assert len(kernels) == 3 and sorted(scheduled) == sorted(kernels)


def test_default_pipeline_leaves_many_more_kernels(onnx_model):
    spec, model = onnx_model
    _, kernels, scheduled, calls = build(model, spec, get_target("x86_64"), "default")
    assert len(kernels) > 3 and calls >= len(kernels) and scheduled == []


def test_schedule_puts_the_reduction_outermost_and_vectorises(onnx_model):
    spec, model = onnx_model
    fused = relax.get_pipeline("zero")(import_onnx(model, spec))
    mod, report = schedule_module(fused, lanes=8, unroll=2)
    assert len(report.scheduled) == 3 and report.default == []
    text = mod.script()
    assert "T.vectorized" in text and "T.unroll" in text
    name = next(n for n in report.scheduled if n.startswith("fused_matmul1_"))
    body = mod[name].script()
    # the reduction loop k (256) is the outer loop of the product; the output loop is split 2 x 8 inside it
    loop = re.search(r"for k, (\w+) in T\.grid\(T\.int64\(256\), T\.int64\(16\)\):", body)
    assert loop, body
    assert "T.unroll(T.int64(2))" in body[loop.end() :] and "T.vectorized(T.int64(8))" in body[loop.end() :]


@pytest.mark.parametrize("hidden", [[37, 11], [1, 5]])
def test_scheduled_library_matches_onnxruntime_for_odd_widths(tmp_path, hidden, pendulum, make_mlp):
    spec = pendulum
    model, _ = export_onnx(make_mlp(hidden, "tanh", seed=1), spec, n_parity=1000)
    ex, _, scheduled, _ = build(model, spec, get_target("x86_64"), "scheduled")
    ex.export_library(str(tmp_path / "m.so"))
    obs = spec.sample_observations(200, seed=5)
    ref = ort_actions(ort_session(model), spec, obs, batch_one=True)
    got = run_library_in_process(tmp_path / "m.so", obs)
    assert np.max(np.abs(got - ref)) <= 1e-5


def test_a_pruned_width_that_misses_the_simd_tile_is_vectorised_with_a_scalar_tail(tmp_path, pendulum, make_mlp):
    # Pruning leaves widths like 75 and 212; a whole-row scalar fallback made such a model slower
    # than the unpruned one. The row is split into vectorised register tiles plus one guarded partial tile.
    spec = pendulum
    model, _ = export_onnx(make_mlp([75, 212], "elu", seed=2), spec, n_parity=200)
    fused = relax.get_pipeline("zero")(import_onnx(model, spec))
    mod, report = schedule_module(fused, lanes=4, unroll=2)
    assert len(report.scheduled) == 3 and report.default == []
    body = mod[next(n for n in report.scheduled if n.startswith("fused_matmul1_"))].script()
    # 212 = 6 full tiles of 8 x 4 outputs + 20 left over: the tile loop is partitioned at 6
    assert "T.vectorized(T.int64(4))" in body and "T.unroll(T.int64(8))" in body, body
    assert "range(T.int64(6), T.int64(7))" in body, body
    ex, _, _, _ = build(model, spec, get_target("x86_64"), "scheduled")
    ex.export_library(str(tmp_path / "m.so"))
    obs = spec.sample_observations(200, seed=5)
    ref = ort_actions(ort_session(model), spec, obs, batch_one=True)
    assert np.max(np.abs(run_library_in_process(tmp_path / "m.so", obs) - ref)) <= 1e-5


def test_128_bit_simd_keeps_a_tile_of_accumulators_in_registers_and_stores_it_through_the_epilogue(onnx_model):
    # SSE2/NEON: no N-float accumulator row loaded and stored every reduction step; a local tile of
    # 8 vectors x 4 lanes, and the activation computed from it (no N-float product buffer at all).
    # The local buffer is declared over the row and compacted to one tile when lowered.
    spec, model = onnx_model
    fused = relax.get_pipeline("zero")(import_onnx(model, spec))
    mod, report = schedule_module(fused, lanes=4, unroll=2)
    assert len(report.scheduled) == 3 and report.default == []
    body = mod[next(n for n in report.scheduled if n.startswith("fused_matmul1_"))].script()
    allocs = re.findall(r"T\.sblock_alloc_buffer\((.*)\)", body)
    assert len(allocs) == 1 and 'scope="local"' in allocs[0], allocs  # accumulators only (compacted to the tile)
    loop = re.search(r"for k, \w+ in T\.grid\(T\.int64\(256\), T\.int64\(1\)\):", body)
    assert loop and "T.unroll(T.int64(8))" in body[loop.end() :] and "T.vectorized(T.int64(4))" in body[loop.end() :], (
        body
    )


def test_a_single_output_sums_in_vector_partial_sums_at_wide_simd_too(onnx_model, tmp_path):
    # AVX-512 (16 lanes): the row sweep would make the action layer one chain of 256 dependent multiply-adds
    spec, model = onnx_model
    fused = relax.get_pipeline("zero")(import_onnx(model, spec))
    mod, report = schedule_module(fused, lanes=16, unroll=2)
    body = mod[next(n for n in report.scheduled if n.startswith("fused_matmul2_"))].script()
    assert 'T.sblock_alloc_buffer((T.int64(64), T.int64(1), T.int64(1)), scope="local")' in body, body
    assert "T.vectorized(T.int64(16))" in body, body
    # the 4 x 16 partial sums are folded into one vector before its 16 lanes are added up, not added one by one
    assert 'T.sblock_alloc_buffer((T.int64(16), T.int64(1), T.int64(1)), scope="local")' in body, body
    assert re.search(r"for \w+, \w+, \w+ in T\.grid\(T\.int64\(1\), T\.int64\(1\), T\.int64\(16\)\):", body), body


def test_a_single_output_over_a_pruned_width_keeps_its_partial_sums_with_a_guarded_last_chunk(
    tmp_path, pendulum, make_mlp
):
    # 37 inputs (pruning leaves widths no vector divides): 2 x 16 partial sums, the last chunk guarded,
    # not one chain of 37 dependent multiply-adds
    spec = pendulum
    model, _ = export_onnx(make_mlp([24, 37], "elu", seed=4), spec, n_parity=50)
    fused = relax.get_pipeline("zero")(import_onnx(model, spec))
    mod, report = schedule_module(fused, lanes=16, unroll=2)
    body = mod[next(n for n in report.scheduled if n.startswith("fused_matmul2_"))].script()
    assert 'T.sblock_alloc_buffer((T.int64(32), T.int64(1), T.int64(1)), scope="local")' in body, body
    assert "T.where(" in body and "T.vectorized(T.int64(16))" in body, body
    ex, _, _, _ = build(model, spec, get_target("x86_64"), "scheduled")
    ex.export_library(str(tmp_path / "m.so"))
    obs = spec.sample_observations(200, seed=5)
    ref = ort_actions(ort_session(model), spec, obs, batch_one=True)
    assert np.max(np.abs(run_library_in_process(tmp_path / "m.so", obs) - ref)) <= 1e-5


def test_a_single_output_sums_the_reduction_in_vector_partial_sums(onnx_model, tmp_path):
    # The action layer (256 -> 1): not one chain of 256 dependent additions but 4 x 4 partial sums.
    spec, model = onnx_model
    fused = relax.get_pipeline("zero")(import_onnx(model, spec))
    mod, report = schedule_module(fused, lanes=4, unroll=2)
    body = mod[next(n for n in report.scheduled if n.startswith("fused_matmul2_"))].script()
    assert 'T.sblock_alloc_buffer((T.int64(16), T.int64(1), T.int64(1)), scope="local")' in body, body
    loop = re.search(r"for k_0, \w+ in T\.grid\(T\.int64\(16\), T\.int64\(1\)\):", body)
    assert loop and "T.unroll(T.int64(4))" in body[loop.end() :] and "T.vectorized(T.int64(4))" in body[loop.end() :], (
        body
    )
    ex, _, _, _ = build(model, spec, get_target("x86_64"), "scheduled")
    ex.export_library(str(tmp_path / "m.so"))
    obs = spec.sample_observations(200, seed=5)
    ref = ort_actions(ort_session(model), spec, obs, batch_one=True)
    assert np.max(np.abs(run_library_in_process(tmp_path / "m.so", obs) - ref)) <= 1e-5
