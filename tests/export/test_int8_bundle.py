"""An int8 controller's bundle on every kind of target: TVM runtime (x86_64, aarch64), kernel plan (armv7), firmware."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

from export import export_bundle, read_manifest
from prune import quantize
from targets import parse_target_list

TARGETS = "x86_64,cortex-a72,cortex-a7,cortex-m4-256k"
INT8_CONSTANT = 3  # the plan's tensor kind of int8 codes (firmware_stub/model_kernels.c)


@pytest.fixture(scope="module")
def bundle(make_mlp, pendulum, tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("int8") / "bundle"
    export_bundle(
        quantize(make_mlp([64, 48], "elu", seed=6)), pendulum, parse_target_list(TARGETS), out, n_parity=100, seed=4
    )
    return out


@pytest.mark.parametrize("target", TARGETS.split(","))
def test_every_target_runs_the_int8_controller_like_onnxruntime(bundle, target):
    manifest = read_manifest(bundle).to_dict()
    assert "DequantizeLinear" in manifest["onnx"]["op_types"]
    check = manifest["artifacts"][target]["verification"]
    assert check["status"] == "verified" and check["n"] == 100 and check["max_abs_err"] <= 1e-5, check
    method = {
        "x86_64": "in-process",
        "cortex-a72": "qemu-user",
        "cortex-a7": "qemu-user",
        "cortex-m4-256k": "qemu-system-arm",
    }[target]
    assert method in check["method"]


def _plan_kinds(data: bytes) -> list[tuple[int, list[int]]]:
    """(kind, shape) of every tensor of a kernel plan (format in firmware_stub/model_kernels.c)."""
    pos = 4 + 4 + 64
    (count,) = struct.unpack_from("<I", data, pos)
    pos += 4
    out = []
    for _ in range(count):
        kind, ndim = struct.unpack_from("<II", data, pos)
        shape = list(struct.unpack_from(f"<{ndim}I", data, pos + 8))
        pos += 8 + 4 * ndim
        numel = 1
        for d in shape:
            numel *= d
        pos += {1: 4 * numel, INT8_CONSTANT: numel}.get(kind, 0)
        out.append((kind, shape))
    return out


def test_the_armv7_plan_carries_the_weights_as_int8(bundle):
    kinds = _plan_kinds((bundle / "cortex-a7.plan").read_bytes())
    assert sorted(shape for kind, shape in kinds if kind == INT8_CONSTANT) == [[3, 64], [48, 1], [64, 48]]
    assert all(len(shape) < 2 for kind, shape in kinds if kind == 1)  # float constants: scales and biases only
