"""Int8 weights on a microcontroller: ``static const int8_t`` in flash, the firmware under qemu equal to onnxruntime."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
import torch

from export import DoesNotFit, ExportError, export_onnx
from export.kernel_chain import kernel_chain
from export.mcu.firmware import build_mcu_artifact, lower_for_mcu, run_host_check
from export.onnx_export import ort_actions, ort_session
from prune import quantize
from targets import get_target

REFERENCE = [256, 256]  # the bundled reference controller's shape (tools/controllers/native.py)
WEIGHTS = 3 * 256 + 256 * 256 + 256 * 1


@pytest.fixture(scope="module")
def reference(make_mlp) -> torch.nn.Module:
    torch.set_num_threads(1)
    return make_mlp(REFERENCE, "elu", seed=0)


@pytest.fixture(scope="module")
def onnx_models(reference, pendulum) -> dict[str, onnx.ModelProto]:
    return {
        "float": export_onnx(reference, pendulum, n_parity=50)[0],
        "int8": export_onnx(quantize(reference), pendulum, n_parity=50)[0],
    }


def test_generated_c_holds_int8_weights_and_runs_like_onnxruntime_on_the_host(onnx_models, pendulum, tmp_path):
    model = onnx_models["int8"]
    art = build_mcu_artifact(model, pendulum, get_target("cortex-m4"), tmp_path, tmp_path / "work")
    source = (tmp_path / "cortex-m4_model.c").read_text()
    int8_arrays = re.findall(r"static const int8_t c\d+\[(\d+)\]", source)
    float_arrays = [int(n) for n in re.findall(r"static const float c\d+\[(\d+)\]", source)]
    assert sorted(map(int, int8_arrays)) == [256, 768, 256 * 256]
    assert max(float_arrays) == 256  # scales and biases only: no float weight matrix is left
    assert "TENSOR_I8(" in source and f"{WEIGHTS} int8 codes" in source
    assert art.record["memory"]["weights_bytes"] == WEIGHTS + 4 * (
        2 * 256 + 2 * 256 + 4
    )  # codes + scales, biases, output box
    obs = pendulum.sample_observations(200, seed=5)
    got, _ = run_host_check(art.host_check, obs, 1)
    assert np.max(np.abs(got - ort_actions(ort_session(model), pendulum, obs, batch_one=True))) <= 1e-5


def test_reference_shape_fits_the_256k_part_only_in_int8(onnx_models, pendulum, tmp_path):
    small = get_target("cortex-m4-256k")
    (tmp_path / "f").mkdir()
    (tmp_path / "q").mkdir()
    with pytest.raises(DoesNotFit) as info:
        build_mcu_artifact(onnx_models["float"], pendulum, small, tmp_path / "f", tmp_path / "fw")
    float_flash = info.value.memory.flash_bytes
    int8 = build_mcu_artifact(onnx_models["int8"], pendulum, small, tmp_path / "q", tmp_path / "qw").record
    assert float_flash > 256 * 1024 >= int8["flash_bytes"]
    # three of each weight's four bytes are gone from flash (scales cost 4 bytes per output, code is alike)
    assert int8["flash_bytes"] <= float_flash - 2 * WEIGHTS, (float_flash, int8["flash_bytes"])


def test_kernel_chain_refuses_int8_weights_by_name_unless_the_caller_carries_them(onnx_models, pendulum):
    mod, _ = lower_for_mcu(onnx_models["int8"], pendulum, get_target("cortex-m4"), fast_math=True)
    with pytest.raises(ExportError, match=r"int8 weights of kernel .*float32 constants only"):
        kernel_chain(mod, "plan")
    assert {t.dtype for t in kernel_chain(mod, "plan", int8=True).tensors} == {"float32", "int8"}
