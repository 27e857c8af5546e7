"""tools/bench/floors.py: the plain-C loop computes what torch computes before it is timed; the floors are measured."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tools.bench.floors import floor_us, macs, measure_floors, plain_c_bench, weight_bytes, write_model
from tools.controllers.native import build_mlp, pendulum_spec
from tools.errors import ToolsError


@pytest.mark.parametrize("activation", ["elu", "relu", "tanh"])
def test_plain_c_loop_matches_torch_on_non_saturating_inputs(activation: str) -> None:
    # widths 13 and 6: a four-output pass and a remainder of one and two outputs
    torch.manual_seed(0)
    spec = pendulum_spec()
    module = build_mlp(spec, [13, 6], activation).eval()
    obs = spec.sample_observations(50, 0)
    r = plain_c_bench(module, spec, obs, n=50, warmup=5, check_n=200, seed=0)
    assert r.check.reference == "torch" and r.check.inputs == 200
    assert r.check.max_error <= r.check.tolerance
    assert 0 < r.min_us <= r.p50_us <= r.max_us


def test_plain_c_refuses_a_layer_it_does_not_compute(tmp_path) -> None:
    module = nn.Sequential(nn.Linear(3, 4), nn.SiLU(), nn.Linear(4, 1))
    with pytest.raises(ToolsError, match="SiLU is not supported"):
        write_model(module, tmp_path / "m.bin")


def test_floors_are_the_models_work_at_the_measured_rates() -> None:
    torch.manual_seed(0)
    module = build_mlp(pendulum_spec(), [16, 8], "elu").eval()
    floors = measure_floors({"m": module})
    assert floors.macs_per_ns > 0 and floors.stream_bytes_per_ns["m"] > 0 and floors.fma_lanes in (4, 8, 16)
    compute, stream = floor_us(module, floors, "m")
    assert macs(module) == 3 * 16 + 16 * 8 + 8 and weight_bytes(module) == 4 * (macs(module) + 16 + 8 + 1)
    np.testing.assert_allclose(compute, macs(module) / floors.macs_per_ns / 1e3)
    np.testing.assert_allclose(stream, weight_bytes(module) / floors.stream_bytes_per_ns["m"] / 1e3)
