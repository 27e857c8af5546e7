"""prune --quantize integer -> export --targets cortex-m3 -> lockstep HIL: the device's return on the search's seeds
is the return the search optimised and reported for the chosen model (within 1e-3 per episode)."""

from __future__ import annotations

import json

import torch

from tools.cli import main
from tools.controllers.native import build_mlp, mlp_architecture, pendulum_spec, save_controller

torch.set_num_threads(1)


def test_the_device_gets_the_return_the_integer_search_reported(tmp_path, capsys):
    torch.manual_seed(0)
    m = build_mlp(pendulum_spec(), [24, 16], "elu")
    save_controller(tmp_path / "c.pt", m, pendulum_spec(), mlp_architecture(m, "elu"))
    pruned = tmp_path / "p.pt"
    code = main(
        ["prune", "--controller", str(tmp_path / "c.pt"), "--keep", "0.5", "--tolerance", "0.1", "--method", "gd"]
        + ["--quantize", "integer", "--max-evaluations", "6", "--search-episodes", "3", "--judge-episodes", "2"]
        + ["--out", str(pruned), "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    s = json.loads(captured.out)
    twin = s["integer_twin"]
    assert s["quantize"] == "integer" and twin["of"] == "integer twin" and twin["target"] == "cortex-m3"
    assert s["objective_after"] == twin["objective_after"]  # what the search maximised is the twin's return
    assert len(twin["search_returns_after"]) == 3 and twin["search_seeds"] == [2000, 2002]
    widths = json.loads((tmp_path / "p.widths.json").read_text())
    assert widths["summary"]["integer_twin"]["search_returns_after"] == twin["search_returns_after"]

    bundle = tmp_path / "bundle"
    code = main(
        ["export", "--controller", str(pruned), "--targets", "cortex-m3", "--parity-samples", "50"]
        + ["--out", str(bundle), "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    code = main(
        ["hil", "--bundle", str(bundle), "--target", "cortex-m3", "--episodes", "3", "--seed", "2000", "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    hil = json.loads(captured.out)
    diffs = [abs(d - r) for d, r in zip(hil["returns"], twin["search_returns_after"])]
    assert len(diffs) == 3 and max(diffs) <= 1e-3, (hil["returns"], twin["search_returns_after"])


def test_integer_with_a_flash_budget_is_one_line(cli, assert_one_line_error):
    proc = cli("prune", "--quantize", "integer", "--flash-budget", "64k")
    assert_one_line_error(proc, "--quantize integer", "--flash-budget")


def test_run_integer_refuses_a_float_target(cli, assert_one_line_error, tmp_path):
    proc = cli("run", "--quantize", "integer", "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, "--quantize integer", "x86_64", "cortex-m3")
    assert not (tmp_path / "r").exists()
