"""bench on the FPU-less Cortex-M3: the pruned controller's full-integer firmware is built (calibrated on visited
states), run in the loop, and compared with its exact host twin, while the torch row stays the float controller's."""

from __future__ import annotations

import json

from tools.cli import main


def test_bench_runs_the_integer_firmware_against_its_twin_and_keeps_torch_float(tmp_path, capsys):
    out = tmp_path / "report"
    code = main(
        ["bench", "--quick", "--keep", "0.1", "--methods", "gd", "--targets", "cortex-m3", "--episodes", "2"]
        + ["--out", str(out), "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    d = json.loads(captured.out)
    fits = {m["model"]: m["fits"] for m in d["mcu_memory"]}
    assert fits == {"unpruned": False, "gd@0.1": True}  # 64 KB part: the unpruned integer model does not fit
    rows = {(r["model"], r["runtime"]): r for r in d["reward"]}
    device = rows[("gd@0.1", "firmware:cortex-m3")]
    assert device["vs_torch_max_abs"] == 0.0  # the device's returns are its twin's, exactly
    torch_row = rows[("gd@0.1", "torch")]
    assert torch_row["stats"]["returns"] != device["stats"]["returns"]  # torch is the float controller, not the twin
