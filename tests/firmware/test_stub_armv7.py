"""armv7 (cortex-a7) has no TVM runtime: the runtime-free stub calls the library's kernels from a plan, under qemu-arm."""

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from export import ExportError, StubFailed, StubSession, export_bundle, run_stub_batch
from export.stub import kernel_plan, linux_target, stage
from targets import parse_target_list, runner_for

TARGET = "cortex-a7"


def test_armv7_actions_under_qemu_match_the_torch_controller(small_bundle, small_controller, pendulum):
    obs = pendulum.sample_observations(200, seed=6)
    got = run_stub_batch(small_bundle, TARGET, obs)
    want = small_controller(torch.tensor(obs)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_export_verified_the_armv7_library_through_the_stub(small_bundle):
    record = json.loads((small_bundle / "manifest.json").read_text())["artifacts"][TARGET]["verification"]
    assert record["status"] == "verified" and "stub" in record["method"]


def test_plan_lists_the_three_kernels_of_the_mlp_and_names_the_library(small_bundle):
    plan = kernel_plan(small_bundle, TARGET)
    sha = json.loads((small_bundle / "manifest.json").read_text())["artifacts"][TARGET]["sha256"]
    assert plan[:4] == b"PAEP" and plan[8:72] == sha.encode()
    assert plan.count(b"fused_") == 3  # Linear+ELU, Linear+ELU, Linear+tanh-bound


def test_armv7_stub_gives_the_safe_action_on_nan(small_bundle):
    with StubSession(small_bundle, TARGET) as s:
        r = s.infer([np.nan, 0, 0])
        ok = s.infer([1.0, 0.0, 0.0])
    assert r.error == "nonfinite" and r.action.tolist() == [0.0]
    assert ok.error == ""


def test_tampered_armv7_library_is_refused(bundle_copy):
    bundle = bundle_copy
    lib = bundle / f"{TARGET}.so"
    data = bytearray(lib.read_bytes())
    data[100] ^= 0x40
    lib.write_bytes(bytes(data))
    with pytest.raises(StubFailed, match="refusing to load"):
        run_stub_batch(bundle, TARGET, np.zeros((1, 3), np.float32))


def test_tampered_onnx_gives_no_plan(bundle_copy):
    bundle = bundle_copy
    onnx_file = bundle / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")
    with pytest.raises(ExportError, match="model.onnx: sha256 does not match"):
        kernel_plan(bundle, TARGET)


def test_plan_made_for_another_library_is_refused_by_the_stub(small_bundle, tmp_path):
    extra = stage(small_bundle, TARGET, tmp_path)
    plan = bytearray((tmp_path / "plan.bin").read_bytes())
    plan[8:72] = b"f" * 64
    (tmp_path / "plan.bin").write_bytes(bytes(plan))
    r = runner_for(linux_target(TARGET)).run(
        tmp_path, ["./pae_stub", "info", "--bundle", "bundle", "--target", TARGET, *extra]
    )
    assert r.returncode == 4
    assert b"made for library sha256 ffff" in r.stderr


def test_armv7_runs_a_reference_sized_mlp_whose_kernels_need_the_workspace_allocator(pendulum, tmp_path):
    # 256-wide layers outgrow TVM's stack buffers: the kernels then allocate through function
    # pointers that only a runtime fills, so a runtime-free stub must fill them (it crashed before).
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Linear(3, 256), nn.ELU(), nn.Linear(256, 256), nn.ELU(), nn.Linear(256, 1), nn.Tanh()
    ).eval()
    manifest = export_bundle(model, pendulum, parse_target_list(TARGET), tmp_path / "b", n_parity=50)
    record = manifest.verifications()[TARGET]
    assert record["status"] == "verified", record["reason"]
    assert record["max_abs_err"] <= 1e-5


def test_armv7_runs_a_model_ending_in_an_onnx_clip(pendulum, tmp_path):
    # Clip's bounds are rank-0 constants: the plan used to record them as shape (1,), and the library's
    # kernel refused the rank ("row 0 got error 'inference'"). The scaled head saturates on some rows.
    class Clipped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(2)
            self.net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.clamp(10.0 * self.net(x), -2.0, 2.0)

    model = Clipped().eval()
    bundle = tmp_path / "b"
    manifest = export_bundle(model, pendulum, parse_target_list(TARGET), bundle, n_parity=20)
    assert "Clip" in [n.op_type for n in onnx.load(bundle / "model.onnx").graph.node]
    record = manifest.verifications()[TARGET]
    assert record["status"] == "verified", record["reason"]
    obs = pendulum.sample_observations(50, seed=3)
    got = run_stub_batch(bundle, TARGET, obs)
    want = model(torch.tensor(obs)).detach().numpy()
    assert np.abs(want).max() == 2.0  # some rows are clipped
    np.testing.assert_allclose(got, want, atol=1e-5)
