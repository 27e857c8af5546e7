"""Full-integer inference on the FPU-less Cortex-M3: the integer model, its C, the firmware under qemu, all bit for bit
equal to the host twin; no soft-float routine on the inference path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export import ExportError, IntModel, build_int_model, export_bundle, integer_only, load_int_model, read_manifest
from export.mcu.int_firmware import is_soft_float
from export.mcu.int_model import CLIP_PERCENTILES, fixed_multiplier, quantize_input, requantize, saturation
from prune import quantize
from targets import get_target

TARGET = "cortex-m3"


@pytest.fixture(scope="module")
def states(pendulum) -> np.ndarray:
    rng = np.random.default_rng(0)
    angle = rng.uniform(-np.pi, np.pi, 400)
    return np.stack([np.cos(angle), np.sin(angle), rng.uniform(-6, 6, 400)], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def bundle(make_mlp, pendulum, states, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("int") / "bundle"
    export_bundle(
        make_mlp([40, 24], "elu", seed=3),
        pendulum,
        [get_target(TARGET)],
        out,
        n_parity=200,
        seed=1,
        parity_observations=states,
    )
    return out


def test_the_cortex_m3_target_is_integer_only_on_the_an385_board():
    t = get_target(TARGET)
    assert integer_only(t) and t.qemu_machine == "mps2-an385" and t.tvm["mcpu"] == "cortex-m3"
    assert not integer_only(get_target("cortex-m4"))


@pytest.mark.parametrize("r", [1e-6, 0.37, 1.0, 15.875, 127 / 8, 3.3e4])
def test_a_fixed_point_multiplier_is_within_one_part_in_2_to_the_30(r):
    m, n = fixed_multiplier(r)
    assert 2**30 <= m < 2**31 and abs(m * 2.0**-n - r) <= r * 2.0**-30


def test_input_codes_round_half_away_from_zero_from_the_float_bits():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-9, 9, (5000, 1)), [[0.0], [-0.0], [1e-30], [8.0], [-100.0], [0.5 / 15.875]]])
    x = x.astype(np.float32)
    m, n = fixed_multiplier(15.875)
    q = quantize_input(x, np.array([m], np.int32), np.array([n], np.int32))
    exact = x.astype(np.float64) * (m * 2.0**-n)
    expected = np.clip(np.sign(exact) * np.floor(np.abs(exact) + 0.5), -127, 127)
    assert np.array_equal(q, expected)


def test_requantize_rounds_half_up_and_clamps():
    acc = np.array([[-7, -6, -5, 5, 6, 7, 10**6, -(10**6)]])
    m, n = fixed_multiplier(0.5)
    p = requantize(acc, np.full(8, m, np.int32), np.full(8, n, np.int32), 100)
    assert p.tolist() == [[-3, -3, -2, 3, 3, 4, 100, -100]]


def test_the_integer_model_tracks_the_float_controller(make_mlp, states):
    float_model = make_mlp([40, 24], "elu", seed=3)
    twin = build_int_model(quantize(float_model), states)  # weight-only int8 layers are read as their codes x scales
    with torch.no_grad():
        ref = float_model(torch.as_tensor(states)).numpy()
    assert np.abs(twin.act(states) - ref).max() < 0.1  # 8-bit activations: a few % of the action range of 4
    assert IntModel.from_json(twin.to_json()).act(states).tobytes() == twin.act(states).tobytes()


def test_the_firmware_equals_the_host_twin_bit_for_bit_and_calls_no_soft_float(bundle):
    rec = read_manifest(bundle).artifacts[TARGET]
    v = rec["verification"]
    assert v["status"] == "verified" and v["max_abs_err"] == 0.0 and v["n"] == 600  # the 400 states + 200 box samples
    assert "qemu-system-arm -machine mps2-an385" in v["method"]
    assert rec["integer"]["inference_undefined_symbols"] == [] and rec["integer"]["inference_soft_float"] == []
    assert rec["instructions_per_inference"]["mean"] > 0
    assert rec["memory"]["fits"] and rec["flash_bytes"] < 32 * 1024
    source = (bundle / f"{TARGET}_model.c").read_text()
    assert "static const int8_t w0[120]" in source and "static const int8_t t0[1025]" in source  # 40x3 codes, a table
    assert load_int_model(bundle, TARGET).obs_dim == 3


@pytest.mark.parametrize(
    "name, soft",
    [
        ("__aeabi_fmul", True),
        ("__addsf3", True),
        ("__floatsisf", True),
        ("__aeabi_ldivmod", False),
        ("memcpy", False),
        ("__aeabi_lmul", False),
    ],
)
def test_soft_float_routines_are_told_apart_from_integer_helpers(name, soft):
    assert is_soft_float(name) is soft


def test_the_integer_target_refuses_to_export_without_calibration_states(make_mlp, pendulum, tmp_path):
    with pytest.raises(ExportError, match="cortex-m3.*calibrated on states the controller visits"):
        export_bundle(make_mlp([8], "elu"), pendulum, [get_target(TARGET)], tmp_path / "b", n_parity=10)
    assert not (tmp_path / "b").exists()


def test_a_saturating_activation_gets_its_grid_only_where_it_still_changes():
    tanh = saturation([torch.nn.Tanh()], 1, reach=100.0, flat=2.0**-16)
    assert 5.0 < tanh < 7.0  # tanh is within 2^-16 of +-1 beyond |z| = 6.1
    assert saturation([torch.nn.ELU()], 1, reach=100.0, flat=0.01) == 100.0  # ELU grows without bound


def test_the_calibration_percentile_is_recorded_in_the_twin(make_mlp, states):
    twin = build_int_model(make_mlp([40, 24], "elu", seed=3), states)
    assert twin.clip_percentile in CLIP_PERCENTILES
    assert IntModel.from_json(twin.to_json()).clip_percentile == twin.clip_percentile
