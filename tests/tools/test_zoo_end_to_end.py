"""The zoo end to end: each family of controllers people train, in one format each, goes through the command
line as a user's file would: loaded (equal to the original on 1000 observations), pruned to 25%, the pruned
graph exported to x86_64, cortex-a7 and cortex-m4 and run for 3 lockstep
HIL episodes whose returns equal the host's. The rest of the format matrix is covered by the readers' parity
tests (tests/tools/controllers/test_graph_import.py); models are small (widths 16-64) and untrained."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from tools.cli import main
from tools.controllers.load import load_controller

torch.set_num_threads(1)
HIL_TOL = 1e-3


@dataclass(frozen=True)
class Family:
    """One row of the zoo: the file it is given as and the flags the CLI needs to read it."""

    name: str
    fmt: str


FAMILIES = (
    Family("sb3_sac", "sb3"),  # tanh rescaled to the box: no clip, no normaliser
    Family("sb3_ppo_vecnormalize", "sb3"),
    Family("cleanrl_agent", "state-dict"),
    Family("rsl_rl_actor_critic", "torch-export"),
    Family("simba", "torchscript"),
    Family("tdmpc2", "onnx"),  # tanh(mu) stays in [-2, 2]: no clip is added
    Family("sac_actor", "torch-export"),  # 2 * tanh stays in [-2, 2]: the clip is provably a no-op, not added
)


@dataclass
class ZooFile:
    """A family's file, the extra CLI flags it needs, and the original's deterministic action."""

    path: Path
    flags: list[str]
    action: object  # numpy observations -> numpy actions of the original


@pytest.fixture(scope="module")
def zoo_files(zoo, sb3_models, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ZooFile]:
    """Each family as its file (the SB3 PPO with a vecnormalize.pkl beside its zip)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    files: dict[str, ZooFile] = {}
    path, sac = sb3_models("sac")
    files["sb3_sac"] = ZooFile(path, [], lambda obs: sac.predict(obs, deterministic=True)[0])
    folder = tmp_path_factory.mktemp("ppo_vecnormalize")
    ppo_path, ppo = sb3_models("ppo")
    (folder / "ppo.zip").write_bytes(ppo_path.read_bytes())
    venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1, seed=0), clip_obs=5.0)
    rms = venv.obs_rms
    assert not isinstance(rms, dict)  # a flat Box observation: one RunningMeanStd
    rms.mean = np.array([0.1, -0.2, 0.5])
    rms.var = np.array([0.5, 0.4, 4.0])
    venv.save(str(folder / "vecnormalize.pkl"))
    venv.training = False
    files["sb3_ppo_vecnormalize"] = ZooFile(
        folder / "ppo.zip", [], lambda obs: ppo.predict(venv.normalize_obs(obs), deterministic=True)[0]
    )
    for family in FAMILIES[2:]:
        entry = zoo[family.name]
        flags = ["--factory", entry.factory] if family.fmt == "state-dict" else []

        def action(obs: np.ndarray, entry=entry) -> np.ndarray:
            return entry.action(torch.as_tensor(obs)).clamp(-2.0, 2.0).numpy()

        files[family.name] = ZooFile(entry.files[family.fmt], flags, action)
    return files


def run_cli(capsys, *argv: str) -> dict:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def observations(n: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(0)
    high = np.array([1.0, 1.0, 8.0], dtype=np.float32)
    return rng.uniform(-high, high, size=(n, 3)).astype(np.float32)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_family_loads_prunes_exports_and_runs_in_the_loop(zoo_files, family: Family, tmp_path: Path, capsys) -> None:
    file = zoo_files[family.name]
    factory = file.flags[1] if file.flags else None
    ctrl = load_controller(file.path, factory=factory)  # what every command's --controller reads
    obs = observations()
    assert np.abs(ctrl.act(obs) - file.action(obs)).max() <= 1e-5
    assert isinstance(ctrl.module, torch.fx.GraphModule)

    pruned = run_cli(
        capsys,
        "prune",
        "--controller",
        str(file.path),
        *file.flags,
        "--keep",
        "0.25",
        "--tolerance",
        "0.1",
        "--method",
        "uniform-l1",
        "--no-stability",
        "--search-episodes",
        "2",
        "--judge-episodes",
        "0",
        "--out",
        str(tmp_path / "pruned.pt"),
    )
    assert pruned["feasible"] and pruned["keep_fraction"] <= 0.25
    assert pruned["params_after"] < pruned["params_before"]
    program = Path(pruned["files"]["controller"])
    assert program == tmp_path / "pruned.pt2" and load_controller(program).spec.env_id == "Pendulum-v1"

    targets = "x86_64,cortex-a7,cortex-m4"
    bundle = run_cli(
        capsys,
        "export",
        "--controller",
        str(program),
        "--targets",
        targets,
        "--parity-samples",
        "100",
        "--out",
        str(tmp_path / "bundle"),
    )
    assert bundle["unverified"] == [] and set(bundle["parity"]) == {"onnx", *targets.split(",")}
    assert max(bundle["parity"].values()) < 1e-4

    hil = run_cli(capsys, "hil", "--bundle", str(tmp_path / "bundle"), "--target", "cortex-a7", "--episodes", "3")
    assert hil["ok"] and len(hil["returns"]) == 3
    assert np.max(np.abs(np.subtract(hil["returns"], hil["host_returns"]))) <= HIL_TOL


def test_a_ppo_zip_without_statistics_says_it_runs_on_raw_observations(sb3_models, tmp_path: Path, capsys) -> None:
    path, _ = sb3_models("ppo")
    lonely = tmp_path / "alone" / "ppo.zip"
    lonely.parent.mkdir()
    lonely.write_bytes(path.read_bytes())
    code = main(["eval", "--controller", str(lonely), "--episodes", "1", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    assert json.loads(captured.out)["obs_norm"] is None
    note = [line for line in captured.err.splitlines() if "raw observations" in line]
    assert len(note) == 1 and "--obs-norm" in note[0] and "ppo.zip" in note[0]
