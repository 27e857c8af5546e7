"""``prune-and-export hil``: the public --json fields and the plot; a folder that is not a bundle is one line."""

import copy
import json

import torch

from tools.cli import main
from tools.controllers.native import mlp_architecture, pendulum_spec, save_controller


def test_cli_hil_json_has_the_public_fields(tmp_path, capsys, small_bundle, small_controller):
    path = tmp_path / "c.pt"
    save_controller(path, small_controller, pendulum_spec(), mlp_architecture(small_controller, "elu"))
    code = main(
        [
            "hil",
            "--bundle",
            str(small_bundle),
            "--target",
            "x86_64",
            "--episodes",
            "2",
            "--seed",
            "5",
            "--mode",
            "lockstep",
            "--controller",
            str(path),
            "--compare-other-controller",
            "--plot",
            str(tmp_path / "hil.png"),
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (tmp_path / "hil.png").stat().st_size > 10_000
    for key in ("returns", "host_returns", "latency_us", "period_ms", "deadline_misses", "crc_errors"):
        assert key in out
    assert out["fidelity_failed"] == [] and out["max_abs_action_diff"] <= out["action_fidelity_tolerance"] == 1e-4
    assert out["seeds"] == [5, 6] and len(out["returns"]) == 2


def test_cli_hil_names_a_missing_bundle(tmp_path, capsys):
    code = main(["hil", "--bundle", str(tmp_path / "nope"), "--target", "x86_64", "--json"])
    assert code == 2
    assert "not a bundle" in capsys.readouterr().err


def test_cli_hil_judges_the_actions_of_another_controller_and_refuses_it_unasked(
    tmp_path, capsys, small_bundle, small_controller
):
    other = copy.deepcopy(small_controller)
    with torch.no_grad():
        other[-2].bias += 0.05  # the head moves every action a little: returns may barely notice, actions do
    path = tmp_path / "other.pt"
    save_controller(path, other, pendulum_spec(), mlp_architecture(other, "elu"))
    argv = [
        "hil",
        "--bundle",
        str(small_bundle),
        "--target",
        "x86_64",
        "--episodes",
        "1",
        "--controller",
        str(path),
        "--json",
    ]
    assert main(argv) == 2
    assert "--compare-other-controller" in capsys.readouterr().err
    code = main([*argv, "--compare-other-controller"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["ok"] is False
    assert "actions" in out["fidelity_failed"] and out["max_abs_action_diff"] > out["action_fidelity_tolerance"]
