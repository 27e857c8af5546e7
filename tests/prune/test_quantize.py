"""Weight-only int8 (prune.quantize): the contract against numpy, after shrink, traced, exported, pickled, its bytes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.fx as fx
from torch import nn

from prune import (
    Int8Linear,
    PruneError,
    bytes_footprint,
    dequantized_error,
    find_groups,
    load_program,
    load_state_dict,
    quantize,
    quantize_weight,
    save_pruned,
    shrink,
)
from prune.quantize import component_linears, dequantize, precision_of


def contract_numpy(w: np.ndarray, b: np.ndarray | None, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The contract written out in numpy float32: codes, scales, outputs."""
    w = w.astype(np.float32)
    peak = np.abs(w).max(axis=1)
    scale = np.where(peak > 0, peak / np.float32(127), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    acc = x.astype(np.float32) @ q.astype(np.float32).T
    y = (acc * scale).astype(np.float32)
    if b is not None:
        y = (y + b.astype(np.float32)).astype(np.float32)
    return q, scale, y


def test_int8_linear_equals_the_numpy_contract_exactly_on_dyadic_inputs():
    torch.manual_seed(0)
    lin = nn.Linear(64, 32)
    with torch.no_grad():
        lin.weight[3] = 0.0  # a zero row: scale 1, codes 0
    q8 = Int8Linear.from_linear(lin)
    # inputs k/256 with |k| < 1024: every product and partial sum is exact in float32, so any summation order agrees
    x = torch.randint(-1023, 1024, (50, 64), generator=torch.Generator().manual_seed(1)).float() / 256
    q, scale, y = contract_numpy(lin.weight.detach().numpy(), lin.bias.detach().numpy(), x.numpy())
    assert np.array_equal(q8.weight_q.numpy(), q)
    assert np.array_equal(q8.scale.numpy(), scale)
    assert q8.scale[3] == 1.0 and not q8.weight_q[3].any()
    out = q8(x).detach().numpy()
    assert out.dtype == np.float32
    assert np.array_equal(out, y)


def test_int8_linear_matches_the_contract_on_random_inputs_within_float32_summation():
    torch.manual_seed(2)
    lin = nn.Linear(17, 9, bias=False)
    q8 = Int8Linear.from_linear(lin)
    x = torch.randn(40, 17)
    _, _, y = contract_numpy(lin.weight.detach().numpy(), None, x.numpy())
    np.testing.assert_allclose(q8(x).detach().numpy(), y, rtol=1e-6, atol=1e-6)
    assert q8.bias is None


def test_rounding_is_half_to_even_and_never_minus_128():
    w = torch.tensor([[127.0, 0.5, 1.5, 2.5, -2.5, -127.0]])  # scale 1: codes are the rounded weights
    q, scale = quantize_weight(w)
    assert scale.tolist() == [1.0]
    assert q.tolist() == [[127, 0, 2, 2, -2, -127]]
    assert int(quantize_weight(torch.randn(20, 20))[0].min()) >= -127


def test_float_weight_is_replaced_not_kept_and_error_is_at_most_half_a_scale():
    torch.manual_seed(0)
    lin = nn.Linear(8, 4)
    q8 = Int8Linear.from_linear(lin)
    assert list(q8.parameters()) == []
    assert {k: v.dtype for k, v in q8.state_dict().items()} == {
        "weight_q": torch.int8,
        "scale": torch.float32,
        "bias": torch.float32,
    }
    err = dequantized_error(lin.weight)
    assert 0 < err <= float(q8.scale.max()) / 2 + 1e-9
    assert torch.allclose(dequantize(q8.weight_q, q8.scale), q8.dequantized().weight)


def test_quantize_swaps_every_linear_and_leaves_the_input_model_alone(tanh_mlp, states):
    model = tanh_mlp(64, 64)
    q = quantize(model)
    assert [type(m).__name__ for m in q if not isinstance(m, nn.Tanh)] == ["Int8Linear"] * 3
    assert all(isinstance(m, (nn.Linear, nn.Tanh)) for m in model)
    with torch.no_grad():
        assert float((q(states) - model(states)).abs().max()) < 0.02


def test_quantize_after_shrink_by_component(tanh_mlp, states):
    model = tanh_mlp(16, 16)
    groups = find_groups(model, states[:2])
    assert component_linears(groups) == {"0": ["0"], "2": ["2", "4"]}  # the output layer goes with its input units
    small = shrink(model, groups, {"0": torch.arange(5), "2": torch.arange(7)})
    q = quantize(small, components=["2"], groups=groups)
    assert isinstance(q[0], nn.Linear) and isinstance(q[2], Int8Linear) and isinstance(q[4], Int8Linear)
    assert tuple(q[2].weight_q.shape) == (7, 5) and tuple(q[4].weight_q.shape) == (1, 7)
    with torch.no_grad():
        assert torch.allclose(q(states), small(states), atol=0.02)
    with pytest.raises(PruneError, match="unknown component"):
        quantize(small, components=["nope"], groups=groups)
    with pytest.raises(PruneError, match="needs groups"):
        quantize(small, components=["2"])


def test_quantized_model_traces_exports_and_pickles(tanh_mlp, states):
    q = quantize(tanh_mlp(16, 16))
    with torch.no_grad():
        want = q(states)
    traced = fx.symbolic_trace(q)
    exported = torch.export.export(q, (states[:4],)).module()
    restored = pickle.loads(pickle.dumps(q))
    with torch.no_grad():
        assert torch.equal(traced(states), want)
        assert torch.equal(exported(states[:4]), want[:4])
        assert torch.equal(restored(states), want)
    # the codes stay int8 in the exported graph: the float weight is not folded back in
    graph_tensors = dict(exported.named_buffers())
    assert any(t.dtype == torch.int8 for t in graph_tensors.values())
    assert not any(
        t.dtype == torch.float32 and t.ndim == 2 for t in list(graph_tensors.values()) + list(exported.parameters())
    )


def test_quantize_swaps_call_module_linears_in_a_graph_module(tanh_mlp, states):
    model = tanh_mlp(16, 16)
    gm = fx.symbolic_trace(model)
    q = quantize(gm)
    assert isinstance(q, fx.GraphModule)
    assert sum(isinstance(m, Int8Linear) for m in q.modules()) == 3
    with torch.no_grad():
        assert torch.equal(q(states), quantize(model)(states))
    assert isinstance(pickle.loads(pickle.dumps(q)), fx.GraphModule)


def test_graph_form_linears_of_an_exported_module_become_int8_calls(tanh_mlp, states):
    model = tanh_mlp(16, 16)
    exported = torch.export.export(model, (states[:2],)).module()
    groups = find_groups(exported, states[:2])
    q = quantize(exported, components=list(groups.components), groups=groups)
    assert precision_of(q, groups) == {"0": "int8", "2": "int8"}
    assert precision_of(exported, groups) == {"0": "float", "2": "float"}
    assert sum(isinstance(m, Int8Linear) for m in q.modules()) == 3
    assert list(q.parameters()) == []  # the float weights left with their ops
    assert bytes_footprint(q) == bytes_footprint(quantize(model))
    with torch.no_grad():
        assert torch.equal(q(states[:2]), quantize(model)(states[:2]))
        assert torch.equal(exported(states[:2]), model(states[:2]))  # the input module is left alone
    # shrunk first, then quantized: the groups found on the unpruned graph serve both
    small = shrink(exported, groups, {"0": torch.arange(6), "2": torch.arange(4)})
    qs = quantize(small, groups=groups)
    assert [tuple(m.weight_q.shape) for m in qs.modules() if isinstance(m, Int8Linear)] == [(6, 3), (4, 6), (1, 4)]
    with torch.no_grad():
        assert torch.allclose(qs(states[:2]), small(states[:2]), atol=0.02)
    with pytest.raises(PruneError, match="neither an nn.Linear nor a Linear op"):
        quantize(exported, components=["0"], groups=find_groups(model, states[:2]))


def test_bytes_footprint_counts_codes_scales_and_floats(tanh_mlp):
    model = tanh_mlp(64, 64)  # 3-64-64-1: 256 + 4160 + 65 parameters
    assert bytes_footprint(model) == (256 + 4160 + 65) * 4 == 17924
    q = quantize(model)
    # per layer: codes in*out, scales 4*out, bias 4*out
    assert bytes_footprint(q) == (192 + 8 * 64) + (4096 + 8 * 64) + (64 + 8) == 5384
    groups = find_groups(model, torch.zeros(2, 3))
    half = quantize(model, components=["0"], groups=groups)
    assert bytes_footprint(half) == (192 + 8 * 64) + (4160 + 65) * 4


def test_a_quantized_model_saves_and_loads_as_a_program_with_int8_codes(tanh_mlp, states, tmp_path):
    q = quantize(tanh_mlp(16, 16))
    saved = save_pruned(q, states[:2], tmp_path / "q", widths={})
    program = load_program(saved.program)
    with torch.no_grad():
        assert torch.equal(program(states), q(states))  # batch dimension dynamic, same arithmetic
    codes = load_state_dict(saved.state_dict)
    assert codes["0.weight_q"].dtype == torch.int8 and "0.weight" not in codes
