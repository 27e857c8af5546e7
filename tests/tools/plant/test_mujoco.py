"""A MuJoCo env through every command: a stable-baselines3 PPO trained briefly on InvertedPendulum-v5 with
VecNormalize, given as its zip (statistics beside it), is evaluated, pruned, exported and run in the loop."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tools.cli import main
from tools.controllers.load import load_controller

ENV = "InvertedPendulum-v5"


@pytest.fixture(scope="module")
def ppo_zip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, object]:
    """(zip, model, VecNormalize) of a PPO trained 2048 steps on InvertedPendulum-v5, its statistics saved beside it."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("mujoco")
    venv = VecNormalize(make_vec_env(ENV, n_envs=1, seed=0))
    model = PPO("MlpPolicy", venv, policy_kwargs={"net_arch": [32, 32]}, n_steps=512, seed=0, device="cpu")
    model.learn(2048)
    model.save(folder / "ppo.zip")
    venv.save(str(folder / "vecnormalize.pkl"))
    venv.training = False
    return folder / "ppo.zip", model, venv


def run_cli(capsys, *argv: str) -> dict:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_the_zip_runs_with_its_statistics_as_sb3_predicts(ppo_zip) -> None:
    path, model, venv = ppo_zip
    ctrl = load_controller(path, env=ENV)
    stats = path.parent / "vecnormalize.pkl"
    assert ctrl.architecture["obs_norm"] == {
        "source": str(stats),
        "how": "found beside the zip",
        "sha256": hashlib.sha256(stats.read_bytes()).hexdigest(),
    }
    obs = np.random.default_rng(0).normal(0.0, 0.5, size=(1000, 4)).astype(np.float32)
    expected = model.predict(venv.normalize_obs(obs), deterministic=True)[0]
    assert np.abs(ctrl.act(obs) - expected).max() <= 1e-5


def test_eval_prune_export_and_hil_take_a_mujoco_env(ppo_zip, tmp_path: Path, capsys) -> None:
    path, _, _ = ppo_zip
    flags = ["--controller", str(path), "--env", ENV]
    evaluated = run_cli(capsys, "eval", *flags, "--episodes", "2")
    assert evaluated["obs_norm"]["source"].endswith("vecnormalize.pkl") and len(evaluated["returns"]) == 2
    pruned = run_cli(
        capsys,
        "prune",
        *flags,
        "--keep",
        "0.25",
        "--tolerance",
        "0.1",
        "--method",
        "uniform-l1",
        "--search-episodes",
        "2",
        "--judge-episodes",
        "2",
        "--out",
        str(tmp_path / "pruned.pt"),
    )
    assert pruned["feasible"] and pruned["env_id"] == ENV and pruned["keep_fraction"] <= 0.25
    program = pruned["files"]["controller"]
    bundle = run_cli(
        capsys,
        "export",
        "--controller",
        program,
        "--targets",
        "x86_64,cortex-a7",
        "--parity-samples",
        "100",
        "--out",
        str(tmp_path / "bundle"),
    )
    assert bundle["unverified"] == []
    hil = run_cli(capsys, "hil", "--bundle", str(tmp_path / "bundle"), "--target", "cortex-a7", "--episodes", "3")
    assert hil["ok"] and len(hil["returns"]) == 3
    assert np.max(np.abs(np.subtract(hil["returns"], hil["host_returns"]))) <= 1e-3


def test_prune_stops_at_the_ceiling_and_says_why(ppo_zip, capsys) -> None:
    path, _, _ = ppo_zip
    flags = [
        "--controller",
        str(path),
        "--env",
        ENV,
        "--keep",
        "0.25",
        "--search-episodes",
        "2",
        "--judge-episodes",
        "0",
        "--max-evaluations",
        "12",
    ]
    automatic = run_cli(capsys, "prune", *flags)
    assert automatic["early_stop"]["ceiling"] == 1000.0  # 1000 steps x reward 1: the best return there is
    assert automatic["stopped"] in ("ceiling", "max_evaluations", "converged")
    low = run_cli(capsys, "prune", *flags, "--ceiling", "1")  # every balancing attempt scores above 1
    assert low["stopped"] == "ceiling" and low["evaluations"] < 12
    code = main(["prune", *flags, "--stop-within", "1000"])
    assert code == 0 and "objective within 1000 of the unpruned one" in capsys.readouterr().out


def test_the_bundle_names_its_statistics_and_hil_checks_them_before_reading(ppo_zip, tmp_path: Path, capsys) -> None:
    path, _, _ = ppo_zip
    for name in ("ppo.zip", "vecnormalize.pkl"):  # a copy: the statistics are altered below
        shutil.copy(path.parent / name, tmp_path / name)
    stats = tmp_path / "vecnormalize.pkl"
    bundle = run_cli(
        capsys,
        "export",
        "--controller",
        str(tmp_path / "ppo.zip"),
        "--env",
        ENV,
        "--targets",
        "x86_64",
        "--parity-samples",
        "100",
        "--out",
        str(tmp_path / "bundle"),
    )
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    record = manifest["source"]["architecture"]["obs_norm"]
    assert record["source"] == str(stats) and record["sha256"] == hashlib.sha256(stats.read_bytes()).hexdigest()
    assert bundle["unverified"] == []
    hil = run_cli(capsys, "hil", "--bundle", str(tmp_path / "bundle"), "--target", "x86_64", "--episodes", "1")
    assert hil["ok"]
    stats.write_bytes(stats.read_bytes() + b"\0")  # other statistics than the bundle's: refused before they are read
    for extra in ([], ["--controller", str(tmp_path / "ppo.zip"), "--env", ENV]):  # reloaded from the bundle, or named
        assert main(["hil", "--bundle", str(tmp_path / "bundle"), "--target", "x86_64", "--episodes", "1", *extra]) == 2
        assert "observation statistics the bundle was exported with" in capsys.readouterr().err


def test_bench_measures_a_mujoco_env(ppo_zip, tmp_path: Path, capsys) -> None:
    """bench on InvertedPendulum-v5: the PPO graph (normaliser inside) as the bench's controller.pt2, reward on the env."""
    path, _, _ = ppo_zip
    report = run_cli(
        capsys,
        "bench",
        "--controller",
        str(path),
        "--env",
        ENV,
        "--quick",
        "--episodes",
        "2",
        "--methods",
        "uniform-l1",
        "--out",
        str(tmp_path / "bench"),
    )
    assert report["ok"] and report["config"]["env_id"] == ENV
    assert report["config"]["controller"].endswith("controller.pt2")
    rows = {(r["model"], r["runtime"]): r for r in report["reward"]}
    assert set(rows) == {(m, rt) for m in ("unpruned", "uniform-l1@0.25") for rt in ("torch", "stub:x86_64")}
    unpruned = rows[("unpruned", "stub:x86_64")]
    assert unpruned["stats"]["upright_share"] is None and len(unpruned["stats"]["returns"]) == 2
    assert all(r["vs_torch_max_abs"] <= 1e-3 for r in report["reward"] if r["runtime"] != "torch")
    assert [m["label"] for m in report["models"]][0] == "unpruned"


def test_the_parity_gate_checks_visited_states_with_a_tolerance_relative_to_the_action_range(
    ppo_zip, tmp_path: Path, capsys
) -> None:
    path, _, _ = ppo_zip
    flags = ["--controller", str(path), "--env", ENV, "--targets", "x86_64", "--parity-samples", "50"]
    visited = run_cli(capsys, "export", *flags, "--parity-episodes", "2", "--out", str(tmp_path / "visited"))
    gate = visited["manifest"]["onnx"]["parity_gate"]
    assert (
        gate["visited_states"] > 0 and gate["box_samples"] == 0
    )  # every observation dimension of the env is unbounded
    assert gate["unbounded_dims"] == [0, 1, 2, 3]
    assert gate["tolerance"]["abs_per_action"] == pytest.approx([1e-5 * 6.0])  # InvertedPendulum's actions: [-3, 3]
    boxed = run_cli(
        capsys,
        "export",
        *flags,
        "--parity-episodes",
        "0",
        "--obs-bounds=-0.5,0.5",
        "--parity-tolerance",
        "1e-4",
        "--out",
        str(tmp_path / "boxed"),
    )
    gate = boxed["manifest"]["onnx"]["parity_gate"]
    assert (gate["visited_states"], gate["box_samples"]) == (0, 50) and gate["box"]["high"] == [0.5] * 4
    assert gate["tolerance"]["relative_to_action_range"] == 1e-4
    assert (
        main(
            [
                "export",
                *flags,
                "--parity-episodes",
                "1",
                "--parity-tolerance",
                "1e-12",
                "--out",
                str(tmp_path / "strict"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "visited state" in err and "--parity-tolerance" in err and "--obs-bounds" in err
    assert not (tmp_path / "strict").exists()
