"""export/verify.py: a library is "verified" only when it ran here and matched onnxruntime; wrong numbers fail, named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from export import ExportError, export_onnx, ort_actions, ort_session
from export import verify as verify_mod
from export.tvm_compile import compile_library
from export.verification import FAILED, NOT_VERIFIED, TOLERANCE, VERIFIED
from export.verify import run_library_in_process, verify_library
from targets import get_target, make_target

IN_PROCESS = "relax.VirtualMachine (in-process)"


def _model(pendulum, make_mlp, seed: int) -> onnx.ModelProto:
    model, _ = export_onnx(make_mlp([16, 8], "tanh", seed=seed), pendulum, n_parity=50)
    return model


@pytest.fixture(scope="module")
def case(pendulum, make_mlp, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A folder with x86_64.so compiled from one model, observations, and onnxruntime's actions for them."""
    folder = tmp_path_factory.mktemp("verify")
    model = _model(pendulum, make_mlp, seed=1)
    compile_library(model, pendulum, get_target("x86_64"), folder / "x86_64.so")
    obs = pendulum.sample_observations(64, seed=3)
    return folder, obs, ort_actions(ort_session(model), pendulum, obs, batch_one=True)


def test_the_right_library_is_verified_with_its_error(case):
    folder, obs, reference = case
    v = verify_library(folder, get_target("x86_64"), obs, reference)
    assert (v.status, v.method, v.n, v.tolerance, v.reason) == (VERIFIED, IN_PROCESS, 64, TOLERANCE, "")
    got = run_library_in_process(folder / "x86_64.so", obs)
    assert v.max_abs_err == pytest.approx(float(np.max(np.abs(got.astype(np.float64) - reference))), abs=1e-9)
    assert v.max_abs_err <= TOLERANCE


def test_a_wrong_library_fails_naming_its_max_error(case, pendulum, make_mlp, tmp_path):
    folder, obs, reference = case
    other = _model(pendulum, make_mlp, seed=2)  # same shapes, other weights: a library that computes the wrong thing
    compile_library(other, pendulum, get_target("x86_64"), tmp_path / "x86_64.so")
    want_err = float(np.max(np.abs(ort_actions(ort_session(other), pendulum, obs, batch_one=True) - reference)))
    v = verify_library(tmp_path, get_target("x86_64"), obs, reference)
    assert v.status == FAILED and v.n == 64
    assert want_err > 1e-2 and v.max_abs_err == pytest.approx(want_err, abs=1e-5)
    assert v.reason == (
        f"differs from onnxruntime by {v.max_abs_err:.3g} on action 0 at observation {v.worst_row} (> {TOLERANCE:g})"
    )
    diff = np.abs(ort_actions(ort_session(other), pendulum, obs, batch_one=True) - reference)[:, 0]
    assert v.worst_action == 0 and diff[v.worst_row] == pytest.approx(want_err, abs=1e-5)


def test_an_error_just_over_the_tolerance_fails(case):
    folder, obs, reference = case
    v = verify_library(folder, get_target("x86_64"), obs, reference + 3e-5)
    assert v.status == FAILED and 2e-5 <= v.max_abs_err <= 4e-5


def test_a_non_finite_or_misshapen_output_fails(case):
    folder, obs, reference = case
    poisoned = reference.copy()
    poisoned[5, 0] = np.nan
    v = verify_library(folder, get_target("x86_64"), obs, poisoned)
    assert v.status == FAILED and "differs from onnxruntime by nan" in v.reason
    v = verify_library(folder, get_target("x86_64"), obs, np.zeros((64, 2), np.float32))
    assert v.status == FAILED and v.max_abs_err is None
    assert v.reason == "output shape [64, 1] differs from onnxruntime's [64, 2]"


def test_a_host_library_this_cpu_cannot_run_is_not_verified_and_says_why(case):
    folder, obs, reference = case
    future = make_target(
        name="x86_64",
        arch="x86_64",
        host_flags=["no_such_cpu_flag"],
        tvm={"kind": "llvm", "mtriple": "x86_64-linux-gnu"},
    )
    v = verify_library(folder, future, obs, reference)
    assert (v.status, v.max_abs_err, v.n) == (NOT_VERIFIED, None, 0)
    assert v.reason == "this CPU lacks no_such_cpu_flag"


def test_another_architecture_goes_through_the_stub_and_a_failed_run_is_not_verified(case, monkeypatch):
    folder, obs, reference = case
    seen = {}

    def stub(bundle_dir, target_name, observations, runner=None):
        seen.update(bundle=bundle_dir, target=target_name, rows=len(observations), runner=runner)
        raise ExportError("qemu-aarch64 not found")

    monkeypatch.setattr(verify_mod, "run_stub_batch", stub)
    v = verify_library(folder, get_target("cortex-a53"), obs, reference)
    assert seen == {"bundle": folder, "target": "cortex-a53", "rows": 64, "runner": None}
    assert (v.status, v.method, v.max_abs_err) == (NOT_VERIFIED, "firmware stub (qemu-user)", None)
    assert v.reason == "stub run failed: qemu-aarch64 not found"


def test_the_stub_answer_is_compared_like_an_in_process_run(case, monkeypatch):
    folder, obs, reference = case
    monkeypatch.setattr(verify_mod, "run_stub_batch", lambda *a, **k: reference.reshape(-1) + 0.5)
    v = verify_library(folder, get_target("cortex-a53"), obs, reference)
    assert v.status == FAILED and v.max_abs_err == pytest.approx(0.5)
