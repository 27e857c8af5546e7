"""--scenarios / --robust-objective: the search optimises the aggregate, the judge shows nominal and robust side by side,
bad names and alphas are one-line errors naming the flag, and without the flags nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tools.cli import main as cli_main
from tools.controllers.native import mlp_architecture, pendulum_spec, save_controller
from tools.plant.evaluate import closed_loop_return
from tools.plant.objectives import return_objective
from tools.plant.robust import robust_objective
from tools.plant.scenarios import ROBUST_PENDULUM, select_scenarios

SEARCH = (
    "--max-evaluations",
    "4",
    "--search-episodes",
    "4",
    "--judge-episodes",
    "3",
    "--keep",
    "0.5",
    "--tolerance",
    "0.1",
    "--json",
)


@pytest.fixture(scope="module")
def controller_file(small_controller: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("robust") / "c.pt"
    save_controller(path, small_controller, pendulum_spec(), mlp_architecture(small_controller, "elu"))
    return path


def _run(capsys, *argv: str) -> tuple[int, dict | None, str]:
    try:
        code = cli_main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_select_scenarios_takes_the_set_or_names_in_the_sets_order_and_names_what_is_unknown():
    assert select_scenarios("robust") is ROBUST_PENDULUM
    picked = select_scenarios("delay, push")
    assert picked.names() == ["push", "delay"] and [s.seed for s in picked] == [2, 8]  # the set's own rows
    with pytest.raises(Exception, match="unknown scenario\\(s\\) windy for Pendulum-v1.*reset_wide, push"):
        select_scenarios("push,windy")
    with pytest.raises(Exception, match="empty scenario name in 'push,,heavy'"):
        select_scenarios("push,,heavy")


def test_eval_shows_nominal_and_every_scenario_and_the_aggregate(capsys, controller_file):
    code, out, err = _run(
        capsys, "eval", "--controller", str(controller_file), "--episodes", "3", "--judge", "fast",
        "--scenarios", "push,heavy", "--robust-objective", "worst", "--json",
    )  # fmt: skip
    assert code == 0, err
    robust = out["robust"]
    assert list(robust["mean"]) == ["nominal", "push", "heavy"] and robust["aggregate"] == "worst"
    assert robust["value"] == min(robust["mean"]["push"], robust["mean"]["heavy"])
    assert robust["mean"]["nominal"] == pytest.approx(out["mean"])  # the fast judge's own figure, same seeds
    assert robust["mean"]["heavy"] != robust["mean"]["nominal"]  # the scenario changed the plant
    assert "closed-loop return under scenario set push,heavy" in err and "worst over the set" in err


def test_prune_searches_the_aggregate_and_reports_robust_figures_before_and_after(
    capsys, controller_file, small_controller
):
    code, out, err = _run(
        capsys, "prune", "--controller", str(controller_file), "--scenarios", "push,delay",
        "--robust-objective", "cvar:0.5", *SEARCH,
    )  # fmt: skip
    assert code == 0, err
    searched = robust_objective(select_scenarios("push,delay"), "cvar:0.5", 4)(small_controller)
    assert out["objective_before"] == pytest.approx(float(np.mean(searched)))  # the aggregate is what was searched
    assert out["objective_before"] != pytest.approx(float(np.mean(return_objective(4)(small_controller))))
    robust = out["robust"]
    assert robust["objective"] == {"scenarios": ["push", "delay"], "set": "push,delay", "aggregate": "cvar:0.5"}
    for side in ("before", "after"):
        assert list(robust[side]["mean"]) == ["nominal", "push", "delay"] and robust[side]["seeds"] == [0, 2]
    worst2 = sorted([robust["before"]["mean"]["push"], robust["before"]["mean"]["delay"]])[0]
    assert robust["before"]["value"] == pytest.approx(worst2)  # cvar:0.5 over two scenarios is the worse one
    assert robust["before"]["mean"]["nominal"] == pytest.approx(closed_loop_return(small_controller, 3).mean)
    assert "objective (cvar:0.5 over push,delay, fast, 4 ep.)" in err and "return under delay" in err


def test_without_scenarios_prune_searches_the_nominal_return_as_before(capsys, controller_file, small_controller):
    code, out, err = _run(capsys, "prune", "--controller", str(controller_file), *SEARCH)
    assert code == 0, err
    assert "robust" not in out
    assert out["objective_before"] == pytest.approx(float(np.mean(return_objective(4)(small_controller))))


@pytest.mark.parametrize(
    "command, args, fragments",
    [
        ("eval", ["--scenarios", "push,windy"], ["--scenarios push,windy", "unknown scenario(s) windy", "heavy"]),
        ("prune", ["--scenarios", "robust,push"], ["--scenarios robust,push", "unknown scenario(s) robust"]),
        ("prune", ["--scenarios", "robust", "--robust-objective", "cvar:0"], ["--robust-objective", "(0, 1]"]),
        ("eval", ["--scenarios", "robust", "--robust-objective", "median"], ["--robust-objective", "median"]),
        ("prune", ["--robust-objective", "worst"], ["--robust-objective worst: needs --scenarios"]),
        ("bench", ["--scenarios", "push,windy"], ["--scenarios push,windy", "windy"]),
        ("bench", ["--robust-objective", "worst"], ["--robust-objective worst: needs --scenarios"]),
        ("bench", ["--model", "autoencoder", "--scenarios", "robust"], ["--scenarios", "the controller bench only"]),
    ],
)
def test_bad_scenarios_or_aggregate_is_one_line_exit_2_naming_the_flag(
    capsys, tmp_path, controller_file, command, args, fragments
):
    argv = [command, *args] + (["--out", str(tmp_path / "r")] if command == "bench" else [])
    if "--model" not in args:
        argv += ["--controller", str(controller_file)]
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out is None, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert all(f in err for f in fragments), err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bench_with_scenarios_adds_a_robustness_table_beside_the_nominal_reward(cli, controller_file, tmp_path):
    out = tmp_path / "report"
    proc = cli(
        "bench", "--quick", "--controller", str(controller_file), "--episodes", "2", "--methods", "gd",
        "--keep", "0.5", "--scenarios", "push,heavy", "--robust-objective", "worst", "--out", str(out), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    rows = {r["model"]: r for r in report["robust"]}
    assert list(rows) == ["unpruned", "gd@0.5"]
    for r in rows.values():
        assert list(r["mean"]) == ["nominal", "push", "heavy"] and r["aggregate"] == "worst"
        assert r["value"] == min(r["mean"]["push"], r["mean"]["heavy"])
    assert rows["unpruned"]["value_vs_unpruned"] is None
    assert rows["gd@0.5"]["value_vs_unpruned"] == pytest.approx(rows["gd@0.5"]["value"] - rows["unpruned"]["value"])
    torch_rows = {r["model"]: r for r in report["reward"] if r["runtime"] == "torch"}  # the nominal table stays
    assert rows["unpruned"]["mean"]["nominal"] == pytest.approx(torch_rows["unpruned"]["stats"]["mean"], abs=1e-3)
    assert report["config"]["scenarios"] == "push,heavy" and report["config"]["robust_objective"] == "worst"
    assert "## Robustness" in (out / "report.md").read_text() and "## Reward" in (out / "report.md").read_text()


@pytest.fixture(scope="module")
def mujoco_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained 4-8-1 policy for InvertedPendulum-v5, as a torch.export program."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).eval()
    path = tmp_path_factory.mktemp("mujoco") / "policy.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 4),)), path)
    return path


def test_scenarios_off_pendulum_are_labelled_with_the_plant_they_ran_on(capsys, mujoco_program):
    env = ("--controller", str(mujoco_program), "--env", "InvertedPendulum-v5", "--scenarios", "push")
    code, _, err = _run(capsys, "eval", *env, "--episodes", "2", "--json")
    assert code == 0, err
    assert "under scenario set push (gymnasium, seeds 0..1)" in err and "(fast" not in err
    code, _, err = _run(
        capsys, "prune", *env, "--max-evaluations", "2", "--search-episodes", "2", "--judge-episodes", "2",
        "--keep", "0.5", "--tolerance", "0.2", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert "objective (mean over push, gymnasium, 2 ep.)" in err and "return under push (gymnasium" in err, err
    assert "fast" not in err
