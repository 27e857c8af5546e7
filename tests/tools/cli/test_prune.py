"""``prune-and-export prune`` end to end on a small controller: JSON fields, files written, errors."""

from __future__ import annotations

import json

import torch

from prune import load_program, load_state_dict
from tools.cli import main
from tools.controllers.load import load_controller
from tools.controllers.native import build_mlp, mlp_architecture, pendulum_spec, save_controller
from tools.plant.objectives import closed_loop_step, pendulum_stability

torch.set_num_threads(1)


def small_controller(path):
    torch.manual_seed(0)
    m = build_mlp(pendulum_spec(), [24, 24], "tanh")
    save_controller(path, m, pendulum_spec(), mlp_architecture(m, "tanh"))
    return path


def test_prune_writes_a_loadable_controller_and_reports_the_public_fields(tmp_path, capsys):
    src = small_controller(tmp_path / "c.pt")
    out = tmp_path / "out" / "small.pt"
    code = main(
        [
            "prune",
            "--controller",
            str(src),
            "--keep",
            "0.5",
            "--method",
            "gd",
            "--max-evaluations",
            "15",
            "--search-episodes",
            "4",
            "--judge-episodes",
            "2",
            "--seed",
            "3",
            "--out",
            str(out),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    d = json.loads(captured.out)
    for key in (
        "params_before",
        "params_after",
        "objective_before",
        "objective_after",
        "evaluations",
        "seconds",
        "coefficients",
        "widths",
        "seed",
    ):
        assert key in d
    assert d["seed"] == 3 and "seed 3" in captured.err
    loaded = load_controller(out)
    assert sum(p.numel() for p in loaded.module.parameters()) == d["params_after"] < d["params_before"]
    assert loaded.architecture["hidden"] == [d["widths"]["0"]["out"], d["widths"]["2"]["out"]]
    obs = torch.randn(5, 3)
    assert torch.allclose(load_program(tmp_path / "out" / "small.pt2")(obs), loaded.module(obs), atol=1e-6)
    assert set(load_state_dict(tmp_path / "out" / "small.state_dict.pt")) == set(loaded.module.state_dict())
    assert json.loads((tmp_path / "out" / "small.widths.json").read_text())["widths"] == d["widths"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "small.pt",
        "small.pt2",
        "small.state_dict.pt",
        "small.widths.json",
    ]


def test_baseline_with_a_conflicting_metric_is_a_one_line_error(tmp_path, capsys):
    src = small_controller(tmp_path / "c.pt")
    code = main(
        ["prune", "--controller", str(src), "--method", "uniform-l1", "--metric", "l2", "--judge-episodes", "0"]
    )
    assert code == 2
    assert "ranks units by l1" in capsys.readouterr().err


def test_pendulum_closed_loop_step_matches_the_plant_and_gives_a_radius():
    m = build_mlp(pendulum_spec(), [8], "tanh")
    x = torch.tensor([[0.1, -0.2]], dtype=torch.float64)
    nxt = closed_loop_step(x, m)
    assert nxt.shape == (1, 2) and nxt.dtype == torch.float64
    s = pendulum_stability(m)
    assert len(s.eigenvalues) == 2 and s.radius > 0


def test_a_keep_list_is_one_continuation_with_a_file_per_budget(tmp_path, capsys):
    src = small_controller(tmp_path / "c.pt")
    out = tmp_path / "out" / "small.pt"
    code = main(
        [
            "prune",
            "--controller",
            str(src),
            "--keep",
            "0.5,0.25",
            "--method",
            "cmaes",
            "--max-evaluations",
            "8",
            "--search-episodes",
            "2",
            "--judge-episodes",
            "0",
            "--stability",
            "off",
            "--out",
            str(out),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    d = json.loads(captured.out)
    assert code == (0 if d["ok"] else 1), captured.err
    assert d["keeps"] == [0.5, 0.25] and [b["keep"] for b in d["budgets"]] == [0.5, 0.25]
    for b in d["budgets"]:
        assert b["method"] == "cmaes" and b["stability_mode"] == "off"
        assert set(b["constraints"]) >= {"budget", "finite"} and "why_infeasible" in b and "finetune_kept" in b
        assert b["feasible"] == (not b["failed_constraints"])
    # the smaller budget started from the larger one's best points
    assert any(s["from"] == "previous" for s in d["budgets"][1]["starts"])
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    for b in d["budgets"]:
        stem = f"small.keep{b['keep']:g}"
        assert (f"{stem}.pt" in written) == b["feasible"]
        if b["feasible"]:
            assert load_controller(tmp_path / "out" / f"{stem}.pt").architecture["hidden"] == [
                b["widths"]["0"]["out"],
                b["widths"]["2"]["out"],
            ]
    assert "small.pt" not in written


def test_the_cli_offers_prune_s_stability_modes_and_methods():
    from prune import SEARCH_METHODS, STABILITY_MODES, STABILITY_TOLERANCE
    from tools.pipeline import choices

    assert choices.STABILITY_MODES == STABILITY_MODES and choices.STABILITY_TOLERANCE == STABILITY_TOLERANCE
    assert {plan[0] for plan in choices.METHOD_PLAN.values()} == set(SEARCH_METHODS)
    assert set(choices.METHOD_PLAN) == set(choices.METHODS)
