"""export/bundle.py + `prune-and-export export`: verified bundles, atomic writes, refused bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from export import verify as verify_mod
from export.bundle import export_bundle, load_bundle, verify_bundle
from export.errors import ExportError
from export.onnx_export import ort_session
from targets import get_target
from ssh_support import sshd  # noqa: F401  (pytest fixture)
from targets.registry import USER_DIR_ENV
from tools.cli import main
from tools.controller import build_mlp, load_controller, mlp_architecture, pendulum_spec, save_controller

ARM = "cortex-a53"


@pytest.fixture(scope="module")
def controller(tmp_path_factory) -> Path:
    """A small "pruned" controller file (3-64-48-1) with seeded random weights."""
    spec = pendulum_spec()
    torch.manual_seed(0)
    module = build_mlp(spec, [64, 48], "elu")
    path = tmp_path_factory.mktemp("ctrl") / "pruned.pt"
    save_controller(path, module, spec, mlp_architecture(module, "elu"))
    return path


@pytest.fixture(scope="module")
def exported(controller, tmp_path_factory):
    """One CLI export for x86_64 and one ARM target, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("bundles") / "b"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(["export", "--controller", str(controller), "--targets", f"x86_64,{ARM}", "--out", str(out),
                     "--json", "--seed", "7"])
    return code, json.loads(buf.getvalue()), out


def _no_leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_export_writes_a_bundle_with_every_artifact_verified(exported, controller):
    code, result, out = exported
    assert code == 0 and result["ok"] and result["unverified"] == []
    m = result["manifest"]
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.json", "model.onnx", "x86_64.so", f"{ARM}.so"])
    assert m["format_version"] == 1 and m["source"]["sha256"] == load_controller(controller).sha256
    assert m["inputs"] == [{"name": "obs", "shape": [1, 3], "dtype": "float32", "low": [-1.0, -1.0, -8.0],
                            "high": [1.0, 1.0, 8.0]}]
    assert m["outputs"][0]["name"] == "action" and m["outputs"][0]["high"] == [2.0]
    assert m["param_count"] == 3 * 64 + 64 + 64 * 48 + 48 + 48 + 1
    assert m["versions"]["apache-tvm"].startswith("0.27") and m["versions"]["onnx"]
    assert sorted(map(sorted, m["onnx"]["weight_shapes"])) == [[1, 48], [3, 64], [48, 64]]
    for name in ("x86_64", ARM):
        a = m["artifacts"][name]
        assert a["file"] == f"{name}.so" and a["bytes"] == (out / a["file"]).stat().st_size
        assert a["tvm_target"] == get_target(name).tvm and a["kernels"] == 3 and a["compile_seconds"] > 0
        v = a["verification"]
        assert v["status"] == "verified" and v["n"] == 1000 and v["max_abs_err"] <= 1e-5, v
    assert "firmware stub" in m["artifacts"][ARM]["verification"]["method"]
    assert result["parity"]["onnx"] <= 1e-5 and result["parity"][ARM] <= 1e-5
    assert _no_leftovers(out.parent) == []


def test_loaded_bundle_runs_like_onnxruntime(exported):
    import tvm

    _, _, out = exported
    vm = load_bundle(out, "x86_64")
    obs = pendulum_spec().sample_observations(1, seed=11)
    got = vm["main"](tvm.runtime.tensor(obs)).numpy()
    ref = ort_session((out / "model.onnx").read_bytes()).run(None, {"obs": obs})[0]
    assert np.max(np.abs(got - ref)) <= 1e-5


def test_a_changed_library_is_refused_by_hash(exported, tmp_path):
    _, _, out = exported
    copy = tmp_path / "b"
    shutil.copytree(out, copy)
    lib = copy / "x86_64.so"
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lib.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=r"x86_64\.so: sha256 .* does not match the manifest"):
        verify_bundle(copy)
    with pytest.raises(ExportError, match="does not match"):
        load_bundle(copy, "x86_64")


def test_a_changed_or_broken_manifest_is_refused(exported, tmp_path):
    _, _, out = exported
    copy = tmp_path / "b"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["onnx"]["bytes"] += 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=r"model\.onnx: \d+ bytes, manifest says"):
        verify_bundle(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ExportError, match="malformed manifest"):
        verify_bundle(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(ExportError, match="not a bundle"):
        verify_bundle(copy)


def _cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def test_unknown_target_is_one_line_and_no_bundle(controller, tmp_path, capsys):
    code, err = _cli(["export", "--controller", str(controller), "--targets", "x86_64,cortex-z9",
                      "--out", str(tmp_path / "b")], capsys)
    assert code == 2 and err.count("\n") == 0 and "unknown target 'cortex-z9'" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_cross_compiler_is_one_line_and_no_bundle(controller, tmp_path, capsys, monkeypatch):
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "board.toml").write_text('name = "board"\narch = "aarch64"\ncc = "aarch64-nowhere-gcc"\n'
                                     '[tvm]\nkind = "llvm"\nmtriple = "aarch64-linux-gnu"\n')
    monkeypatch.setenv(USER_DIR_ENV, str(defs))
    code, err = _cli(["export", "--controller", str(controller), "--targets", "x86_64,board",
                      "--out", str(tmp_path / "out" / "b")], capsys)
    assert code == 2 and "cross compiler 'aarch64-nowhere-gcc' not found" in err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_an_op_tvm_rejects_fails_naming_it_and_leaves_nothing(tmp_path):
    spec = pendulum_spec()
    torch.manual_seed(0)
    celu = nn.Sequential(nn.Linear(3, 8), nn.CELU(), nn.Linear(8, 1))  # fine in ONNX and onnxruntime, not in TVM
    with pytest.raises(ExportError, match="TVM's ONNX importer does not support op 'Celu'"):
        export_bundle(celu, spec, [get_target("x86_64")], tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_a_model_whose_export_fails_leaves_nothing(tmp_path):
    wrong = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    with pytest.raises(ExportError, match="torch.onnx.export failed"):
        export_bundle(wrong, pendulum_spec(), [get_target("x86_64")], tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_microcontroller_targets_get_a_verified_firmware_image_not_a_library(tmp_path):
    m = export_bundle(build_mlp(pendulum_spec(), [4], "tanh"), pendulum_spec(), [get_target("cortex-m4")],
                      tmp_path / "b", n_parity=20)
    art = m.artifacts["cortex-m4"]  # details in tests/test_mcu.py
    assert art["file"] == "cortex-m4.elf" and art["flash_bytes"] > 0 and art["verification"]["status"] == "verified"
    assert not list((tmp_path / "b").glob("*.so"))


def test_existing_bundle_needs_force_then_is_replaced_whole(controller, tmp_path, capsys, monkeypatch):
    out = tmp_path / "b"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    code, err = _cli(["export", "--controller", str(controller), "--targets", "x86_64", "--out", str(out)], capsys)
    assert code == 2 and "not empty (pass --force" in err and (out / "stale.txt").exists()
    # --dynamic-batch: the ONNX graph takes any batch, the libraries still take batch 1 and are verified
    code, _ = _cli(["export", "--controller", str(controller), "--targets", "x86_64", "--out", str(out),
                    "--force", "--dynamic-batch", "--parity-samples", "200"], capsys)
    assert code == 0 and not (out / "stale.txt").exists()
    m = verify_bundle(out)
    assert m.inputs[0]["shape"] == ["batch", 3] and m.onnx["dynamic_batch"]
    assert m.artifacts["x86_64"]["verification"]["status"] == "verified"
    assert _no_leftovers(tmp_path) == []


def test_a_library_that_cannot_run_here_is_marked_not_verified_and_fails_the_command(controller, tmp_path, capsys,
                                                                                      monkeypatch):
    monkeypatch.setattr(verify_mod, "_device_runner", lambda: None)  # as if export/device.py did not exist
    argv = ["export", "--controller", str(controller), "--targets", ARM, "--out", str(tmp_path / "b"),
            "--parity-samples", "50"]
    code, err = _cli(argv, capsys)
    assert code == 1
    m = verify_bundle(tmp_path / "b")
    v = m.artifacts[ARM]["verification"]
    assert v["status"] == "not verified" and "run_stub_batch" in v["reason"] and v["max_abs_err"] is None
    code, _ = _cli(argv + ["--force", "--allow-unverified"], capsys)
    assert code == 0


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


def test_a_library_that_disagrees_with_onnxruntime_fails_the_export_and_leaves_nothing(tmp_path, monkeypatch):
    calls = _wrong_once(monkeypatch, times=99)
    spec = pendulum_spec()
    with pytest.raises(ExportError, match=r"'x86_64': x86_64\.so differs from onnxruntime by 0\.001"):
        export_bundle(build_mlp(spec, [8], "tanh"), spec, [get_target("x86_64")], tmp_path / "b", n_parity=20)
    assert calls["n"] == 2  # fast math, then exact math: both wrong
    assert list(tmp_path.iterdir()) == []


def test_fast_math_falls_back_to_exact_math_when_it_misses_the_tolerance(tmp_path, monkeypatch):
    _wrong_once(monkeypatch, times=1)
    spec = pendulum_spec()
    m = export_bundle(build_mlp(spec, [8], "tanh"), spec, [get_target("x86_64")], tmp_path / "b", n_parity=20)
    a = m.artifacts["x86_64"]
    assert a["verification"]["status"] == "verified"
    assert a["compile_flags"]["fast_math"] is False and "0.001" in a["compile_flags"]["fast_math_fallback"]
    verify_bundle(tmp_path / "b")  # the manifest's hashes are those of the recompiled library


def test_export_with_an_ssh_runner_runs_the_library_on_the_board(controller, tmp_path, capsys, sshd):
    # the "board" is this machine behind a real sshd: the stub and the bundle are copied there and run
    code, err = _cli(["export", "--controller", str(controller), "--targets", "x86_64", "--out", str(tmp_path / "b"),
                      "--runner", sshd, "--parity-samples", "100"], capsys)
    assert code == 0, err
    v = verify_bundle(tmp_path / "b").artifacts["x86_64"]["verification"]
    assert v["status"] == "verified" and v["max_abs_err"] <= 1e-5 and v["n"] == 100
    assert v["method"].startswith("firmware stub (ssh://") and "identity" not in v["method"]
