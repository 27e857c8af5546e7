"""export/bundle.py + export/pipeline.py: verified bundles, atomic writes, refused bad input, one manifest reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import tvm
from torch import nn

from export import ExportError, Manifest, export_bundle, load_bundle, ort_session, read_manifest, verify_bundle
from export import verify as verify_mod
from targets import get_target

SMALL_TARGETS = ("x86_64", "cortex-a72", "cortex-a7")  # what the shared small_bundle fixture exports


def _no_leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_export_writes_a_bundle_with_every_artifact_verified(small_bundle):
    m = read_manifest(small_bundle)
    assert isinstance(m, Manifest)
    assert sorted(p.name for p in small_bundle.iterdir()) == sorted(
        ["manifest.json", "model.onnx", *(f"{t}.so" for t in SMALL_TARGETS), *(f"{t}.plan" for t in SMALL_TARGETS)]
    )
    # every Linux stub calls the kernels from a plan (no Relax VM in the hot path): each target's plan is in the bundle
    assert m.format_version == 1
    assert m.inputs == [
        {"name": "obs", "shape": [1, 3], "dtype": "float32", "low": [-1.0, -1.0, -8.0], "high": [1.0, 1.0, 8.0]}
    ]
    assert m.outputs[0]["name"] == "action" and m.outputs[0]["high"] == [2.0]
    assert m.param_count == 3 * 32 + 32 + 32 * 32 + 32 + 32 + 1
    assert m.versions["apache-tvm"].startswith("0.27") and m.versions["onnx"]
    assert sorted(map(sorted, m.onnx["weight_shapes"])) == [[1, 32], [3, 32], [32, 32]]
    for name in SMALL_TARGETS:
        a = m.artifacts[name]
        assert a["file"] == f"{name}.so" and a["bytes"] == (small_bundle / a["file"]).stat().st_size
        assert a["tvm_target"] == get_target(name).tvm and a["kernels"] == 3 and a["compile_seconds"] > 0
        v = a["verification"]
        assert v["status"] == "verified" and v["n"] == 100 and v["max_abs_err"] <= 1e-5, v
    assert "firmware stub" in m.artifacts["cortex-a72"]["verification"]["method"]
    assert m.all_verified and _no_leftovers(small_bundle.parent) == []


def test_loaded_bundle_runs_like_onnxruntime(small_bundle, pendulum):
    vm = load_bundle(small_bundle, "x86_64")
    obs = pendulum.sample_observations(1, seed=11)
    got = vm["main"](tvm.runtime.tensor(obs)).numpy()
    ref = ort_session((small_bundle / "model.onnx").read_bytes()).run(None, {"obs": obs})[0]
    assert np.max(np.abs(got - ref)) <= 1e-5


def test_a_changed_library_is_refused_by_hash(bundle_copy):
    lib = bundle_copy / "x86_64.so"
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lib.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=r"x86_64\.so: sha256 .* does not match the manifest"):
        verify_bundle(bundle_copy)
    with pytest.raises(ExportError, match="does not match"):
        load_bundle(bundle_copy, "x86_64")


def test_a_changed_or_broken_manifest_is_refused(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["onnx"]["bytes"] += 1
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=r"model\.onnx: \d+ bytes, manifest says"):
        verify_bundle(bundle_copy)
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ExportError, match="malformed manifest"):
        verify_bundle(bundle_copy)
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(ExportError, match="not a bundle"):
        verify_bundle(bundle_copy)


def test_read_manifest_refuses_another_format_version_and_missing_keys(bundle_copy):
    path = bundle_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "format_version": 2}))
    with pytest.raises(ExportError, match=r"format_version 2, this tool reads 1"):
        read_manifest(bundle_copy)
    path.write_text(json.dumps({k: v for k, v in manifest.items() if k != "artifacts"}))
    with pytest.raises(ExportError, match=r"malformed manifest \(KeyError: 'artifacts'\)"):
        read_manifest(bundle_copy)


def test_an_op_tvm_rejects_fails_naming_it_and_leaves_nothing(tmp_path, pendulum):
    torch.manual_seed(0)
    celu = nn.Sequential(nn.Linear(3, 8), nn.CELU(), nn.Linear(8, 1))  # fine in ONNX and onnxruntime, not in TVM
    with pytest.raises(ExportError, match="TVM's ONNX importer does not support op 'Celu'"):
        export_bundle(celu, pendulum, [get_target("x86_64")], tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_a_model_whose_export_fails_leaves_nothing(tmp_path, pendulum):
    wrong = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    with pytest.raises(ExportError, match="torch.onnx.export failed"):
        export_bundle(wrong, pendulum, [get_target("x86_64")], tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_microcontroller_targets_get_a_verified_firmware_image_not_a_library(tmp_path, pendulum, make_mlp):
    m = export_bundle(make_mlp([4], "tanh"), pendulum, [get_target("cortex-m4")], tmp_path / "b", n_parity=20)
    art = m.artifacts["cortex-m4"]  # details in tests/export/test_mcu.py
    assert art["file"] == "cortex-m4.elf" and art["flash_bytes"] > 0 and art["verification"]["status"] == "verified"
    assert not list((tmp_path / "b").glob("*.so"))


def test_existing_bundle_needs_force_then_is_replaced_whole(tmp_path, pendulum, make_mlp):
    out = tmp_path / "b"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    module = make_mlp([8], "tanh")
    with pytest.raises(ExportError, match=r"not empty \(pass --force"):
        export_bundle(module, pendulum, [get_target("x86_64")], out, n_parity=20)
    assert (out / "stale.txt").exists()
    # dynamic batch: the ONNX graph takes any batch, the libraries still take batch 1 and are verified
    export_bundle(module, pendulum, [get_target("x86_64")], out, n_parity=200, force=True, dynamic_batch=True)
    assert not (out / "stale.txt").exists()
    m = verify_bundle(out)
    assert m.inputs[0]["shape"] == ["batch", 3] and m.onnx["dynamic_batch"]
    assert m.artifacts["x86_64"]["verification"]["status"] == "verified"
    assert _no_leftovers(tmp_path) == []


def test_a_library_that_cannot_run_here_is_kept_but_marked_not_verified(tmp_path, pendulum, make_mlp, monkeypatch):
    def no_board(*args, **kwargs):
        raise ExportError("no board answers")

    monkeypatch.setattr(verify_mod, "run_stub_batch", no_board)
    m = export_bundle(make_mlp([8], "tanh"), pendulum, [get_target("cortex-a53")], tmp_path / "b", n_parity=20)
    v = m.artifacts["cortex-a53"]["verification"]
    assert v["status"] == "not verified" and v["reason"] == "stub run failed: no board answers"
    assert v["max_abs_err"] is None and not m.all_verified
    assert (tmp_path / "b" / "cortex-a53.so").is_file()


def _wrong_once(monkeypatch, times: int):
    """Make the in-process run of the first ``times`` verifications off by 1e-3 (a miscompiled library)."""
    real = verify_mod.run_library_in_process
    calls = {"n": 0}

    def run(library, obs):
        calls["n"] += 1
        out = real(library, obs)
        return out + 1e-3 if calls["n"] <= times else out

    monkeypatch.setattr(verify_mod, "run_library_in_process", run)
    return calls


def test_a_library_that_disagrees_with_onnxruntime_fails_the_export_and_leaves_nothing(
    tmp_path, monkeypatch, pendulum, make_mlp
):
    calls = _wrong_once(monkeypatch, times=99)
    with pytest.raises(ExportError, match=r"'x86_64': x86_64\.so differs from onnxruntime by 0\.001"):
        export_bundle(make_mlp([8], "tanh"), pendulum, [get_target("x86_64")], tmp_path / "b", n_parity=20)
    assert calls["n"] == 2  # fast math, then exact math: both wrong
    assert list(tmp_path.iterdir()) == []


def test_fast_math_falls_back_to_exact_math_when_it_misses_the_tolerance(tmp_path, monkeypatch, pendulum, make_mlp):
    _wrong_once(monkeypatch, times=1)
    m = export_bundle(make_mlp([8], "tanh"), pendulum, [get_target("x86_64")], tmp_path / "b", n_parity=20)
    a = m.artifacts["x86_64"]
    assert a["verification"]["status"] == "verified"
    assert a["compile_flags"]["fast_math"] is False and "0.001" in a["compile_flags"]["fast_math_fallback"]
    verify_bundle(tmp_path / "b")  # the manifest's hashes are those of the recompiled library


def test_export_with_an_ssh_runner_runs_the_library_on_the_board(tmp_path, pendulum, make_mlp, sshd):
    # the "board" is this machine behind a real sshd: the stub and the bundle are copied there and run
    m = export_bundle(make_mlp([64, 48]), pendulum, [get_target("x86_64")], tmp_path / "b", n_parity=100, runner=sshd)
    v = m.artifacts["x86_64"]["verification"]
    assert v["status"] == "verified" and v["max_abs_err"] <= 1e-5 and v["n"] == 100
    assert v["method"].startswith("firmware stub (ssh://") and "identity" not in v["method"]
    assert verify_bundle(tmp_path / "b").artifacts["x86_64"]["verification"] == v


def test_a_bundle_copied_elsewhere_still_verifies(small_bundle, tmp_path):
    copy = Path(shutil.copytree(small_bundle, tmp_path / "moved"))
    assert verify_bundle(copy).artifacts.keys() == read_manifest(small_bundle).artifacts.keys()
