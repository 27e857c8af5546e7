"""`prune-and-export export` end to end: the CLI, controller files, verification records, HIL with the firmware."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from export import verify as verify_mod
from export.bundle import verify_bundle
from export.errors import ExportError
from export.pipeline import export_bundle
from targets import get_target, parse_target_list
from targets.registry import USER_DIR_ENV
from tools.cli import main
from tools.controllers.load import load_controller
from tools.controllers.native import build_mlp, mlp_architecture, pendulum_spec, save_controller
from tools.pipeline.hil import run_hil
from tools.plant.policy import as_policy

ARM = "cortex-a53"
# test_mcu's controller: a 260-wide layer (wider than the reference's 256), whose accumulators go
# through TVM's workspace allocator
HIDDEN = [16, 260]


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
        code = main(
            [
                "export",
                "--controller",
                str(controller),
                "--targets",
                f"x86_64,{ARM}",
                "--out",
                str(out),
                "--json",
                "--seed",
                "7",
            ]
        )
    return code, json.loads(buf.getvalue()), out


def _no_leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_export_writes_a_bundle_with_every_artifact_verified(exported, controller):
    code, result, out = exported
    assert code == 0 and result["ok"] and result["unverified"] == []
    m = result["manifest"]
    assert sorted(p.name for p in out.iterdir()) == sorted(  # each Linux stub runs the kernels from its plan
        ["manifest.json", "model.onnx", "x86_64.so", f"{ARM}.so", "x86_64.plan", f"{ARM}.plan"]
    )
    assert m["format_version"] == 1 and m["source"]["sha256"] == load_controller(controller).sha256
    assert m["inputs"] == [
        {"name": "obs", "shape": [1, 3], "dtype": "float32", "low": [-1.0, -1.0, -8.0], "high": [1.0, 1.0, 8.0]}
    ]
    assert m["outputs"][0]["name"] == "action" and m["outputs"][0]["high"] == [2.0]
    assert m["param_count"] == 3 * 64 + 64 + 64 * 48 + 48 + 48 + 1
    assert m["versions"]["apache-tvm"].startswith("0.27") and m["versions"]["onnx"]
    assert sorted(map(sorted, m["onnx"]["weight_shapes"])) == [[1, 48], [3, 64], [48, 64]]
    for name in ("x86_64", ARM):
        a = m["artifacts"][name]
        assert a["file"] == f"{name}.so" and a["bytes"] == (out / a["file"]).stat().st_size
        assert a["tvm_target"] == get_target(name).tvm and a["kernels"] == 3 and a["compile_seconds"] > 0
        v = a["verification"]
        gate = m["onnx"]["parity_gate"]  # states the controller visits in its env, plus 1000 samples of the box
        assert gate["box_samples"] == 1000 and gate["visited_states"] > 0
        assert v["status"] == "verified" and v["n"] == gate["visited_states"] + 1000 and v["max_abs_err"] <= 1e-5, v
    assert "firmware stub" in m["artifacts"][ARM]["verification"]["method"]
    assert result["parity"]["onnx"] <= 1e-5 and result["parity"][ARM] <= 1e-5
    assert _no_leftovers(out.parent) == []


def _cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def test_unknown_target_is_one_line_and_no_bundle(controller, tmp_path, capsys):
    code, err = _cli(
        ["export", "--controller", str(controller), "--targets", "x86_64,cortex-z9", "--out", str(tmp_path / "b")],
        capsys,
    )
    assert code == 2 and err.count("\n") == 0 and "unknown target 'cortex-z9'" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_cross_compiler_is_one_line_and_no_bundle(controller, tmp_path, capsys, monkeypatch):
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "board.toml").write_text(
        'name = "board"\narch = "aarch64"\ncc = "aarch64-nowhere-gcc"\n'
        '[tvm]\nkind = "llvm"\nmtriple = "aarch64-linux-gnu"\n'
    )
    monkeypatch.setenv(USER_DIR_ENV, str(defs))
    code, err = _cli(
        ["export", "--controller", str(controller), "--targets", "x86_64,board", "--out", str(tmp_path / "out" / "b")],
        capsys,
    )
    assert code == 2 and "cross compiler 'aarch64-nowhere-gcc' not found" in err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_existing_bundle_needs_force_then_is_replaced_whole(controller, tmp_path, capsys, monkeypatch):
    out = tmp_path / "b"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    code, err = _cli(["export", "--controller", str(controller), "--targets", "x86_64", "--out", str(out)], capsys)
    assert code == 2 and "not empty (pass --force" in err and (out / "stale.txt").exists()
    # --dynamic-batch: the ONNX graph takes any batch, the libraries still take batch 1 and are verified
    code, _ = _cli(
        [
            "export",
            "--controller",
            str(controller),
            "--targets",
            "x86_64",
            "--out",
            str(out),
            "--force",
            "--dynamic-batch",
            "--parity-samples",
            "200",
        ],
        capsys,
    )
    assert code == 0 and not (out / "stale.txt").exists()
    m = verify_bundle(out)
    assert m.inputs[0]["shape"] == ["batch", 3] and m.onnx["dynamic_batch"]
    assert m.artifacts["x86_64"]["verification"]["status"] == "verified"
    assert _no_leftovers(tmp_path) == []


def test_a_library_that_cannot_run_here_is_marked_not_verified_and_fails_the_command(
    controller, tmp_path, capsys, monkeypatch
):
    def no_stub(*args, **kwargs):
        raise ExportError("run_stub_batch is not available")

    monkeypatch.setattr(verify_mod, "run_stub_batch", no_stub)  # as if the stub could not run here
    argv = [
        "export",
        "--controller",
        str(controller),
        "--targets",
        ARM,
        "--out",
        str(tmp_path / "b"),
        "--parity-samples",
        "50",
    ]
    code, err = _cli(argv, capsys)
    assert code == 1
    m = verify_bundle(tmp_path / "b")
    v = m.artifacts[ARM]["verification"]
    assert v["status"] == "not verified" and "run_stub_batch" in v["reason"] and v["max_abs_err"] is None
    code, _ = _cli(argv + ["--force", "--allow-unverified"], capsys)
    assert code == 0


@pytest.fixture(scope="module")
def mcu_controller() -> torch.nn.Module:
    torch.manual_seed(3)
    torch.set_num_threads(1)
    return build_mlp(pendulum_spec(), HIDDEN, "elu").eval()


@pytest.fixture(scope="module")
def mcu_bundle(mcu_controller, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mcu") / "bundle"
    export_bundle(mcu_controller, pendulum_spec(), parse_target_list("cortex-m4"), out, n_parity=100, seed=4)
    return out


def test_hil_lockstep_with_the_firmware_reproduces_the_host_return(mcu_bundle, mcu_controller):
    report = run_hil(mcu_bundle, "cortex-m4", as_policy(mcu_controller), episodes=1, seed=7)
    assert "qemu-system-arm" in report.runner
    assert report.fidelity_ok and report.max_return_diff <= 1e-3
    assert report.episodes[0].max_abs_action_diff <= 1e-4


def test_export_json_names_flash_and_ram_per_microcontroller_target(tmp_path, capsys, monkeypatch):
    import json

    from tools.cli import main
    from tools.controllers.native import mlp_architecture, save_controller

    torch.manual_seed(1)
    module = build_mlp(pendulum_spec(), [8, 8], "tanh")
    path = tmp_path / "c.pt"
    save_controller(path, module, pendulum_spec(), mlp_architecture(module, "tanh"))
    monkeypatch.chdir(tmp_path)  # a relative --out, as users type it (the firmware is built by make elsewhere)
    code = main(
        [
            "export",
            "--controller",
            str(path),
            "--targets",
            "cortex-m4-256k",
            "--out",
            "b",
            "--parity-samples",
            "20",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"]
    mem = out["mcu_memory"]["cortex-m4-256k"]
    art = out["manifest"]["artifacts"]["cortex-m4-256k"]
    assert mem["flash_bytes"] == art["flash_bytes"] > 0 and mem["ram_bytes"] == art["ram_bytes"] > 0
    assert (mem["flash_budget_bytes"], mem["ram_budget_bytes"]) == (256 * 1024, 64 * 1024)
    assert (tmp_path / "b" / "cortex-m4-256k.elf").is_file() and not list(tmp_path.glob(".b.*"))


def test_a_library_built_for_this_cpu_is_said_to_need_its_flags(controller, tmp_path, capsys):
    code = main(
        ["export", "--controller", str(controller), "--targets", "x86_64,x86_64-sse2", "--out", str(tmp_path / "b")]
    )
    out = capsys.readouterr().out
    flags = verify_bundle(tmp_path / "b").artifacts["x86_64"]["compile_flags"]["cpu_flags"].split()
    assert code == 0 and bool(flags) == ("note: x86_64 is built for CPU" in out), out  # this machine's CPU has flags
    assert "note: x86_64-sse2 is built" not in out  # the portable baseline needs none
