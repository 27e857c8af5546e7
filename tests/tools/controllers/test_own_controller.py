"""Bring your own controller: every input kind, built from one small untrained MLP, goes through
prune, export (x86_64 + cortex-a7) and a 3-episode HIL via the CLI; the common mistakes are errors that name the fix."""

import hashlib
import json
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from tools.cli import main
from tools.controllers.formats import detect_format, spec_from_env
from tools.controllers.load import load_controller

torch.set_num_threads(1)
SB3_ALGOS = ("SAC", "TD3", "DDPG", "PPO")
FACTORY_SOURCE = """
import torch
from torch import nn

def make():
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
"""


def small_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """kind -> (file, extra CLI flags), each made from the same 3-16-16-1 MLP (SB3: its own 16-16 policy)."""
    d = tmp_path_factory.mktemp("own")
    mlp, x = small_mlp(), torch.zeros(1, 3)
    out = {}
    torch.jit.save(torch.jit.script(mlp), d / "mlp.ts.pt")
    out["torchscript"] = (d / "mlp.ts.pt", [])
    torch.export.save(torch.export.export(mlp, (x,)), d / "mlp.pt2")
    out["torch-export"] = (d / "mlp.pt2", [])
    (d / "own_factory.py").write_text(textwrap.dedent(FACTORY_SOURCE))
    sys.path.insert(0, str(d))
    torch.save(mlp.state_dict(), d / "mlp.state_dict.pt")
    out["state-dict"] = (d / "mlp.state_dict.pt", ["--factory", "own_factory:make"])
    torch.onnx.export(mlp, (x,), str(d / "mlp.onnx"), dynamo=False, input_names=["obs"], output_names=["action"])
    out["onnx"] = (d / "mlp.onnx", [])
    import stable_baselines3 as sb3

    for algo in SB3_ALGOS:
        model = getattr(sb3, algo)(
            "MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu"
        )
        model.save(d / f"{algo.lower()}.zip")
        out[algo.lower()] = (d / f"{algo.lower()}.zip", [])
    yield out
    sys.path.remove(str(d))


def run_cli(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else None), captured.err


def observations(n: int = 64) -> np.ndarray:
    return spec_from_env("Pendulum-v1").sample_observations(n, seed=7)


@pytest.mark.parametrize("kind", ["torchscript", "torch-export", "state-dict", "onnx"])
def test_a_raw_policy_loads_as_the_same_function_clipped_to_the_env_bounds(files, kind):
    path, flags = files[kind]
    assert detect_format(path) == kind
    ctrl = load_controller(path, factory=flags[1] if flags else None)
    obs = observations()
    with torch.no_grad():
        expected = small_mlp()(torch.as_tensor(obs)).clamp(-2.0, 2.0).numpy()
    np.testing.assert_allclose(ctrl.act(obs), expected, atol=1e-5)
    assert ctrl.architecture["kind"] == "graph" and ctrl.architecture["hidden"] == [16, 16]
    assert isinstance(ctrl.module, torch.fx.GraphModule)
    assert {"minimum", "maximum"} <= set(ctrl.architecture["functions"])  # the clip to the box is in the graph
    assert ctrl.spec.env_id == "Pendulum-v1" and ctrl.spec.act_high == (2.0,)


@pytest.mark.parametrize("algo", SB3_ALGOS)
def test_an_sb3_zip_gives_the_deterministic_actor_sb3_predicts(files, algo):
    import stable_baselines3 as sb3

    path, _ = files[algo.lower()]
    assert detect_format(path) == "sb3"
    ctrl = load_controller(path)
    obs = observations()
    expected = getattr(sb3, algo).load(path, device="cpu").predict(obs, deterministic=True)[0]
    np.testing.assert_allclose(ctrl.act(obs), expected, atol=1e-5)
    assert isinstance(ctrl.module, torch.fx.GraphModule) and ctrl.architecture["sb3"]["algorithm"] == algo
    assert ctrl.architecture["hidden"] == [16, 16]  # the actor only: critics and log_std are not in the graph


@pytest.mark.parametrize("kind", ["torchscript", "torch-export", "state-dict", "onnx", "sac", "td3", "ddpg", "ppo"])
def test_prune_export_and_hil_take_each_input_kind(files, kind, tmp_path, capsys):
    path, flags = files[kind]
    code, pruned, err = run_cli(
        capsys,
        "prune",
        "--controller",
        str(path),
        *flags,
        "--keep",
        "0.5",
        "--method",
        "uniform-l1",
        "--tolerance",
        "0.1",
        "--search-episodes",
        "4",
        "--judge-episodes",
        "3",
        "--out",
        str(tmp_path / "pruned.pt"),
    )
    assert code == 0, err
    assert pruned["params_after"] < pruned["params_before"] and pruned["keep_fraction"] <= 0.5
    assert pruned["files"]["controller"] == str(tmp_path / "pruned.pt2") and not (tmp_path / "pruned.pt").exists()
    assert load_controller(tmp_path / "pruned.pt2").architecture["hidden"] != [16, 16]  # its env from the widths file
    code, bundle, err = run_cli(
        capsys,
        "export",
        "--controller",
        str(path),
        *flags,
        "--targets",
        "x86_64,cortex-a7",
        "--parity-samples",
        "100",
        "--out",
        str(tmp_path / "bundle"),
    )
    assert code == 0, err
    assert bundle["unverified"] == [] and set(bundle["parity"]) == {"onnx", "x86_64", "cortex-a7"}
    assert max(bundle["parity"].values()) < 1e-5
    code, hil, err = run_cli(
        capsys, "hil", "--bundle", str(tmp_path / "bundle"), "--target", "cortex-a7", "--episodes", "3", *flags
    )
    assert code == 0, err
    assert len(hil["returns"]) == 3 and hil["ok"]
    assert np.max(np.abs(np.subtract(hil["returns"], hil["host_returns"]))) <= 1e-3


# ---------------------------------------------------------------- the common mistakes, each named with its fix


def one_line_error(capsys, *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_an_observation_size_that_does_not_match_the_env_is_named_with_the_fix(files, capsys):
    path, _ = files["onnx"]
    err = one_line_error(
        capsys, "eval", "--controller", str(path), "--env", "MountainCarContinuous-v0", "--episodes", "1"
    )
    assert "takes 3 observations" in err and "MountainCarContinuous-v0 gives 2" in err and "--env" in err


def test_actions_out_of_bounds_are_refused_unless_clipping_is_asked_for(tmp_path, capsys):
    mlp = small_mlp()
    with torch.no_grad():
        mlp[-1].bias.fill_(5.0)  # torques around 5, the env takes [-2, 2]
    torch.jit.save(torch.jit.script(mlp), tmp_path / "loud.pt")
    err = one_line_error(capsys, "eval", "--controller", str(tmp_path / "loud.pt"), "--episodes", "1")
    assert "actions out of bounds" in err and "--clip-actions" in err and "[-2]..[2]" in err
    ctrl = load_controller(tmp_path / "loud.pt", clip_actions=True)
    assert np.all(ctrl.act(observations()) == 2.0)


class NoisyPolicy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = small_mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + 0.1 * torch.randn(x.shape[0], 1)


def test_a_stochastic_model_is_refused(tmp_path, capsys):
    torch.jit.save(torch.jit.script(NoisyPolicy()), tmp_path / "noisy.pt")
    err = one_line_error(capsys, "eval", "--controller", str(tmp_path / "noisy.pt"), "--episodes", "1")
    assert "stochastic" in err and "deterministic action" in err


def test_an_unsupported_layer_is_named_with_its_op(tmp_path, capsys):
    model = nn.Sequential(nn.Linear(3, 16), nn.Softmax(dim=-1), nn.Linear(16, 1))
    torch.jit.save(torch.jit.script(model), tmp_path / "soft.pt")
    err = one_line_error(capsys, "eval", "--controller", str(tmp_path / "soft.pt"), "--episodes", "1")
    assert "soft.pt" in err and "unsupported node" in err and "softmax" in err and "supported:" in err


def test_an_unsupported_onnx_op_is_named_with_node_and_op_type(tmp_path, capsys):
    model = nn.Sequential(nn.Linear(3, 16), nn.Softmax(dim=-1), nn.Linear(16, 1))
    torch.onnx.export(model, (torch.zeros(1, 3),), str(tmp_path / "soft.onnx"), dynamo=False)
    err = one_line_error(capsys, "eval", "--controller", str(tmp_path / "soft.onnx"), "--episodes", "1")
    assert "soft.onnx" in err and "unsupported node" in err and "softmax" in err.lower() and "supported:" in err


def test_a_state_dict_without_a_factory_asks_for_one(files, capsys):
    path, _ = files["state-dict"]
    err = one_line_error(capsys, "eval", "--controller", str(path), "--episodes", "1")
    assert "--factory package.module:function" in err


def test_a_format_override_that_does_not_fit_the_file_is_an_error(files, capsys):
    path, _ = files["onnx"]
    err = one_line_error(capsys, "eval", "--controller", str(path), "--format", "torchscript", "--episodes", "1")
    assert "not a TorchScript file" in err


def test_an_sb3_zip_loads_without_sb3_installed(files, monkeypatch):
    import stable_baselines3 as sb3

    expected = sb3.SAC.load(files["sac"][0], device="cpu").predict(observations(), deterministic=True)[0]
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # import raises ImportError, as when not installed
    ctrl = load_controller(files["sac"][0])  # read from the zip's JSON and weights: nothing of SB3 runs
    np.testing.assert_allclose(ctrl.act(observations()), expected, atol=1e-5)


def test_a_zip_that_is_not_a_controller_is_not_taken_for_one(tmp_path, capsys):
    with zipfile.ZipFile(tmp_path / "junk.zip", "w") as z:
        z.writestr("hello.txt", "hi")
    err = one_line_error(capsys, "eval", "--controller", str(tmp_path / "junk.zip"), "--episodes", "1")
    assert "junk.zip" in err


# ---------------------------------------------------------------- a run as one TOML file


def test_run_takes_a_config_file_flags_override_it_and_the_resolved_config_is_written(files, tmp_path, capsys):
    path, _ = files["ppo"]
    config = tmp_path / "run.toml"
    (tmp_path / "stats.json").write_text(json.dumps({"mean": [0.0, 0.0, 0.0], "var": [1.0, 1.0, 4.0]}))
    config.write_text(
        f'controller = "{path}"\nenv = "Pendulum-v1"\nepisodes = 2\nseed = 4\nquick = true\n'
        'obs-norm = "stats.json"\n[bench]\nkeep = [0.5]\nmethods = "uniform-l1"\n'
    )
    code, result, err = run_cli(capsys, "run", str(config), "--seed", "1", "--out", str(tmp_path / "out"))
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert notes and len(notes) == len(set(notes)), notes  # the controller is loaded once: each note said once
    assert result["bench"]["config"]["controller"].endswith("controller.pt2")  # the bench step has the statistics too
    assert result["seed"] == 1 and result["episodes"] == 2  # the flag beat the file; the file beat the default
    assert result["bench"]["config"]["keeps"] == [0.5] and result["bench"]["config"]["methods"] == ["uniform-l1"]
    assert result["bench"]["config"]["source_controller"] == str(path)
    written = (tmp_path / "out" / "run-config.toml").read_text()
    assert "seed = 1" in written and "episodes = 2" in written and "keep = [0.5]" in written
    import tomllib

    assert tomllib.loads(written)["controller"] == str(path)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("episodez = 3\n", "unknown key 'episodez'"),
        ("[bench]\ntargetz = ['x86_64']\n", "unknown key 'targetz' in [bench]"),
        ("episodes = 0\n", "key 'episodes': expected a positive integer"),
        ("format = 'keras'\n", "'keras' is not one of"),
        ("episodes = [1, 2\n", "not valid TOML"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_key_and_the_file(tmp_path, capsys, text, fragment):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    err = one_line_error(capsys, "run", str(config))
    assert fragment in err and str(config) in err


# ---------------------------------------------------------------- other gymnasium envs


def test_another_box_env_is_judged_searched_and_run_in_the_loop(tmp_path, capsys):
    """MountainCarContinuous-v0 (2 observations, 1 action in [-1, 1]): no batched plant, a vector env instead."""
    from tools.plant.evaluate import closed_loop_return

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1), nn.Tanh()).eval()
    torch.jit.save(torch.jit.script(mlp), tmp_path / "mc.pt")
    ctrl = load_controller(tmp_path / "mc.pt", env="MountainCarContinuous-v0")
    assert ctrl.spec.obs_dim == 2 and ctrl.spec.act_low == (-1.0,) and "tanh" in ctrl.architecture["functions"]
    fast = closed_loop_return(ctrl.module, 2, 0, "fast", "MountainCarContinuous-v0")
    gym = closed_loop_return(ctrl.module, 2, 0, "gym", "MountainCarContinuous-v0")
    np.testing.assert_allclose(fast.returns, gym.returns, atol=1e-5)
    assert fast.returns != closed_loop_return(ctrl.module, 2, 5, "fast", "MountainCarContinuous-v0").returns
    code, pruned, err = run_cli(
        capsys,
        "prune",
        "--controller",
        str(tmp_path / "mc.pt"),
        "--env",
        "MountainCarContinuous-v0",
        "--keep",
        "0.5",
        "--method",
        "uniform-l1",
        "--tolerance",
        "0.1",
        "--search-episodes",
        "2",
        "--judge-episodes",
        "1",
        "--out",
        str(tmp_path / "mc_pruned.pt"),
    )
    assert code == 0, err
    assert pruned["env_id"] == "MountainCarContinuous-v0" and "stability_before" not in pruned
    assert load_controller(tmp_path / "mc_pruned.pt2").spec.env_id == "MountainCarContinuous-v0"  # from the widths file
    code, _, err = run_cli(
        capsys, "export", "--controller", str(tmp_path / "mc_pruned.pt2"), "--out", str(tmp_path / "b")
    )
    assert code == 0, err
    code, hil, err = run_cli(capsys, "hil", "--bundle", str(tmp_path / "b"), "--target", "x86_64", "--episodes", "1")
    assert code == 0, err
    assert hil["ok"] and abs(hil["returns"][0] - hil["host_returns"][0]) <= 1e-3


@pytest.mark.parametrize("kind", ["sac", "ppo", "onnx"])
def test_a_plain_mlp_graph_has_a_native_copy_acting_the_same(files, kind, tmp_path):
    from tools.controllers.load import native_copy
    from tools.controllers.source import ControllerSource

    path, _ = files[kind]
    copy = native_copy(ControllerSource(path), tmp_path / "native.pt")
    assert copy == tmp_path / "native.pt"
    native, graph = load_controller(copy), load_controller(path)
    assert native.architecture["kind"] == "mlp" and native.architecture["hidden"] == [16, 16]
    np.testing.assert_allclose(native.act(observations()), graph.act(observations()), atol=1e-5)


def test_a_graph_that_is_not_a_plain_mlp_has_no_native_copy(tmp_path, capsys):
    from tools.controllers.load import native_copy
    from tools.controllers.source import ControllerSource
    from tools.errors import ControllerError

    model = nn.Sequential(nn.Linear(3, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 1)).eval()
    torch.jit.save(torch.jit.script(model), tmp_path / "ln.pt")
    with pytest.raises(ControllerError, match=r"ln\.pt: not a plain MLP"):
        native_copy(ControllerSource(tmp_path / "ln.pt"), tmp_path / "native.pt")
    assert not (tmp_path / "native.pt").exists()


def test_obs_norm_statistics_become_the_first_ops_of_any_foreign_graph(files, tmp_path, capsys):
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"mean": [0.1, -0.2, 0.5], "var": [0.5, 0.4, 4.0], "clip_obs": 5.0}))
    path, _ = files["onnx"]
    ctrl = load_controller(path, obs_norm=stats)
    obs = observations()
    normalised = np.clip((obs - [0.1, -0.2, 0.5]) / np.sqrt(np.array([0.5, 0.4, 4.0]) + 1e-8), -5.0, 5.0)
    with torch.no_grad():
        expected = small_mlp()(torch.as_tensor(normalised, dtype=torch.float32)).clamp(-2.0, 2.0).numpy()
    np.testing.assert_allclose(ctrl.act(obs), expected, atol=1e-5)
    assert ctrl.architecture["obs_norm"] == {
        "source": str(stats),
        "how": "--obs-norm",
        "sha256": hashlib.sha256(stats.read_bytes()).hexdigest(),
    }
    err = one_line_error(capsys, "eval", "--obs-norm", str(stats), "--episodes", "1")  # the bundled native controller
    assert "--obs-norm applies to a controller trained elsewhere" in err


@pytest.mark.parametrize("kind", ["sac", "torch-export", "torchscript", "state-dict"])
def test_a_truncated_file_is_named_as_cut_short(files, kind, tmp_path, capsys):
    path, extra = files[kind]
    cut = tmp_path / path.name
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    err = one_line_error(capsys, "eval", "--controller", str(cut), *extra, "--episodes", "1")
    assert str(cut) in err and "truncated or corrupt" in err, err
