"""export/onnx_export.py: named static-batch graphs, simplified and checked, in parity with torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from export.errors import ExportError
from export.onnx_export import OPSET, check_weight_shapes, export_onnx, ort_session


@pytest.fixture
def spec(pendulum):
    return pendulum


def test_pruned_mlp_exports_with_names_opset_static_batch_and_parity(spec, make_mlp):
    module = make_mlp([37, 11])  # odd, "pruned" widths
    model, rep = export_onnx(module, spec, n_parity=1000, seed=3)
    assert model.opset_import[0].version == OPSET == rep.opset
    assert [i.name for i in model.graph.input] == ["obs"] and [o.name for o in model.graph.output] == ["action"]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3]
    assert rep.n_parity == 1000 and rep.parity_max_abs_err <= 1e-5
    assert sorted(map(sorted, rep.weight_shapes)) == [[1, 11], [3, 37], [11, 37]]
    assert rep.param_count == 3 * 37 + 37 + 37 * 11 + 11 + 11 + 1
    assert rep.simplified


def test_dynamic_batch_graph_runs_a_whole_batch(spec, make_mlp):
    module = make_mlp([16, 16], activation="tanh")
    model, rep = export_onnx(module, spec, dynamic_batch=True, n_parity=1000)
    assert rep.dynamic_batch
    obs = spec.sample_observations(64, seed=1)
    got = ort_session(model).run(None, {"obs": obs})[0]
    with torch.no_grad():
        assert np.max(np.abs(got - module(torch.from_numpy(obs)).numpy())) <= 1e-5


def test_actions_stay_inside_the_action_bounds_in_onnx(spec, make_mlp):
    module = make_mlp([8, 8])
    with torch.no_grad():
        module[-2].weight.mul_(100.0)  # saturate the output
    model, _ = export_onnx(module, spec, n_parity=1000)
    got = ort_session(model).run(None, {"obs": spec.sample_observations(1, 0)[:1]})[0]
    assert -2.0 <= float(got[0, 0]) <= 2.0


def test_a_model_that_does_not_fit_the_spec_fails_with_one_clear_error(spec):
    wrong = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1))  # expects 5 inputs, spec gives 3
    with pytest.raises(ExportError, match=r"torch.onnx.export failed .*input obs of shape \[1, 3\]"):
        export_onnx(wrong, spec)


def test_weight_shape_check_names_the_missing_layer(spec, make_mlp):
    model, _ = export_onnx(make_mlp([16, 16]), spec, n_parity=1000)
    other = make_mlp([16, 12])
    with pytest.raises(ExportError, match=r"no weight of shape \[12, 16\] for layer '2'"):
        check_weight_shapes(model, other)
