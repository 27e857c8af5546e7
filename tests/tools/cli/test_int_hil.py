"""The full-integer controller on the FPU-less Cortex-M3, end to end through the command line: export (calibrated on
visited states) and lockstep HIL under qemu against the bundle's exact host twin."""

from __future__ import annotations

import json

import torch

from tools.cli import main
from tools.controllers.native import build_mlp, mlp_architecture, pendulum_spec, save_controller

torch.set_num_threads(1)


def test_export_and_lockstep_hil_on_cortex_m3_match_the_host_twin_per_episode(tmp_path, capsys):
    torch.manual_seed(0)
    m = build_mlp(pendulum_spec(), [24, 16], "elu")
    save_controller(tmp_path / "c.pt", m, pendulum_spec(), mlp_architecture(m, "elu"))
    bundle = tmp_path / "bundle"
    code = main(
        ["export", "--controller", str(tmp_path / "c.pt"), "--targets", "cortex-m3", "--parity-episodes", "2"]
        + ["--parity-samples", "50", "--out", str(bundle), "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    exported = json.loads(captured.out)
    assert exported["parity"]["cortex-m3"] == 0.0 and exported["mcu_memory"]["cortex-m3"]["flash_bytes"] < 32 * 1024
    code = main(["hil", "--bundle", str(bundle), "--target", "cortex-m3", "--episodes", "2", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    d = json.loads(captured.out)
    assert "host twin" in captured.err
    assert len(d["returns"]) == 2 and d["max_return_diff"] <= 1e-3
    assert d["returns"] == d["host_returns"]  # the same integers on both sides
