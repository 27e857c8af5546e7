"""VecNormalize statistics read by an allow-list unpickler or from npz/json; the normalised actor equals SB3's."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tools.controllers.obs_norm import (
    ObsNorm,
    find_vecnormalize,
    read_obs_norm_file,
    read_vecnormalize_pkl,
)
from tools.controllers.sb3_zip import read_sb3_zip
from tools.errors import ControllerError

TOL = 1e-5


@pytest.fixture(scope="module")
def trained_vecnormalize(tmp_path_factory: pytest.TempPathFactory):
    """A PPO trained 256 steps inside VecNormalize on Pendulum-v1: (folder, model, vec_normalize)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("vecnormalize")
    venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1, seed=0), clip_obs=5.0)
    model = PPO(
        "MlpPolicy", venv, n_steps=128, batch_size=64, n_epochs=1, policy_kwargs=dict(net_arch=[32, 32]), seed=0
    )
    model.learn(256)
    model.save(folder / "ppo.zip")
    venv.save(str(folder / "vecnormalize.pkl"))
    return folder, model, venv


def test_statistics_equal_the_running_mean_and_variance(trained_vecnormalize):
    folder, _, venv = trained_vecnormalize
    norm = read_vecnormalize_pkl(folder / "vecnormalize.pkl")
    assert norm is not None
    np.testing.assert_array_equal(norm.mean, venv.obs_rms.mean)
    np.testing.assert_array_equal(norm.var, venv.obs_rms.var)
    assert (norm.clip_obs, norm.epsilon) == (5.0, venv.epsilon)
    assert not np.allclose(norm.mean, 0.0), "a few hundred steps should have moved the statistics"


def test_normalised_actor_equals_sb3_on_raw_observations(trained_vecnormalize, pendulum_obs):
    folder, model, venv = trained_vecnormalize
    norm = read_vecnormalize_pkl(folder / "vecnormalize.pkl")
    actor = read_sb3_zip(folder / "ppo.zip").with_obs_norm(norm)
    expected, _ = model.predict(venv.normalize_obs(pendulum_obs), deterministic=True)
    with torch.no_grad():
        got = actor(torch.from_numpy(pendulum_obs)).numpy()
    assert np.abs(got - expected).max() <= TOL
    with torch.no_grad():  # and it does differ from the actor run on raw observations
        raw = read_sb3_zip(folder / "ppo.zip").actor(torch.from_numpy(pendulum_obs)).numpy()
    assert np.abs(raw - expected).max() > 1e-3


def test_module_and_numpy_normalise_as_vecnormalize_does(trained_vecnormalize, pendulum_obs):
    folder, _, venv = trained_vecnormalize
    norm = read_vecnormalize_pkl(folder / "vecnormalize.pkl")
    assert norm is not None
    expected = venv.normalize_obs(pendulum_obs * 3)  # some beyond the clip
    np.testing.assert_array_equal(norm.normalize(pendulum_obs * 3), expected)
    with torch.no_grad():
        got = norm.as_module()(torch.from_numpy(pendulum_obs * 3)).numpy()
    assert np.abs(got - expected).max() <= 1e-5
    assert np.abs(expected).max() == 5.0
    traced = torch.fx.symbolic_trace(norm.as_module())
    assert any(n.op == "get_attr" and n.target == "mean" for n in traced.graph.nodes)


def test_shape_mismatch_with_the_policy_is_refused(trained_vecnormalize):
    folder, _, _ = trained_vecnormalize
    policy = read_sb3_zip(folder / "ppo.zip")
    with pytest.raises(ControllerError, match="stats.npz: mean has shape"):
        policy.with_obs_norm(ObsNorm(np.zeros(4), np.ones(4), source="stats.npz"))


def test_reward_only_vecnormalize_gives_none(tmp_path):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1, seed=0), norm_obs=False)
    venv.save(str(tmp_path / "vecnormalize.pkl"))
    assert read_vecnormalize_pkl(tmp_path / "vecnormalize.pkl") is None


# ---------------------------------------------------------------- pickles that would run code


def test_payload_pickle_is_refused_naming_the_global_and_runs_nothing(payload, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "vecnormalize.pkl"
    path.write_bytes(payload(marker))
    with pytest.raises(ControllerError, match=r"vecnormalize\.pkl: refused to unpickle global (io|builtins)\.open"):
        read_vecnormalize_pkl(path)
    assert not marker.exists()


def test_payload_hidden_inside_a_real_vecnormalize_is_refused(trained_vecnormalize, creates_file, tmp_path):
    folder, _, venv = trained_vecnormalize
    marker = tmp_path / "pwned"
    copy = pickle.loads(pickle.dumps(venv))  # VecNormalize pickles without its env ...
    copy.venv, copy.class_attributes, copy.returns = None, {}, None  # ... and wants these back to pickle again
    copy.obs_rms.note = creates_file(marker)  # nested two objects deep, before mean/var are built
    path = tmp_path / "vecnormalize.pkl"
    path.write_bytes(pickle.dumps(copy))
    with pytest.raises(ControllerError, match=r"vecnormalize\.pkl: refused to unpickle global (io|builtins)\.open"):
        read_vecnormalize_pkl(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes()).obs_rms.note.close()  # control: a plain unpickle of the file runs the payload
    assert marker.exists()


@pytest.mark.parametrize(
    "module, name",
    [("os", "system"), ("builtins", "eval"), ("subprocess", "Popen"), ("numpy", "load"), ("torch", "load")],
)
def test_any_other_global_is_refused(tmp_path, module, name):
    path = tmp_path / "stats.pkl"
    path.write_bytes(b"\x80\x04c" + f"{module}\n{name}\n".encode() + b"N\x85R.")  # GLOBAL, (None,), REDUCE
    with pytest.raises(ControllerError, match=rf"stats\.pkl: refused to unpickle global {module}\.{name}"):
        read_vecnormalize_pkl(path)


def test_truncated_pickle_is_refused(trained_vecnormalize, tmp_path):
    folder, _, _ = trained_vecnormalize
    path = tmp_path / "vecnormalize.pkl"
    path.write_bytes((folder / "vecnormalize.pkl").read_bytes()[:200])
    with pytest.raises(ControllerError, match=r"vecnormalize\.pkl: not a VecNormalize pickle"):
        read_vecnormalize_pkl(path)


# ---------------------------------------------------------------- explicit npz / json files


def test_npz_and_json_files_round_trip(tmp_path):
    np.savez(tmp_path / "stats.npz", mean=np.array([0.1, -0.2]), var=np.array([1.5, 0.25]), clip_obs=np.array(4.0))
    (tmp_path / "stats.json").write_text(json.dumps({"mean": [0.1, -0.2], "var": [1.5, 0.25], "epsilon": 1e-6}))
    npz = read_obs_norm_file(tmp_path / "stats.npz")
    js = read_obs_norm_file(tmp_path / "stats.json")
    np.testing.assert_array_equal(npz.mean, js.mean)
    assert (npz.clip_obs, npz.epsilon, js.clip_obs, js.epsilon) == (4.0, 1e-8, 10.0, 1e-6)
    np.testing.assert_allclose(js.normalize(np.array([[1.1, -0.2]])), [[1.0 / np.sqrt(1.5 + 1e-6), 0.0]], rtol=1e-6)


def test_pkl_passed_explicitly_is_read_by_the_allow_list_unpickler(trained_vecnormalize):
    folder, _, venv = trained_vecnormalize
    np.testing.assert_array_equal(read_obs_norm_file(folder / "vecnormalize.pkl").var, venv.obs_rms.var)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"mean": [0.0, 1.0], "var": [1.0]}, "must be flat and of one length"),
        ({"mean": [0.0, float("nan")], "var": [1.0, 1.0]}, "finite"),
        ({"mean": [0.0, 1.0], "var": [1.0, -1.0]}, "negative"),
        ({"mean": [0.0], "var": [1.0], "clip_obs": 0}, "clip_obs"),
        ({"mean": [0.0], "var": [0.0], "epsilon": 0}, "division by zero"),
        ({"mean": [0.0]}, "missing key"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_json_statistics_are_refused(tmp_path, content, message):
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ControllerError, match=rf"stats\.json: .*{message}"):
        read_obs_norm_file(path)


def test_npz_with_pickled_arrays_is_refused(tmp_path):
    np.savez(tmp_path / "stats.npz", mean=np.array([object()], dtype=object), var=np.ones(1))
    with pytest.raises(ControllerError, match=r"stats\.npz: cannot read"):
        read_obs_norm_file(tmp_path / "stats.npz")


def test_unknown_suffix_is_refused(tmp_path):
    (tmp_path / "stats.txt").write_text("1 2 3")
    with pytest.raises(ControllerError, match=r"stats\.txt: .*\.npz, \.json"):
        read_obs_norm_file(tmp_path / "stats.txt")


# ---------------------------------------------------------------- where the statistics are kept


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_find_beside_the_zip(tmp_path):
    stats = _touch(tmp_path / "vecnormalize.pkl")
    assert find_vecnormalize(tmp_path / "model.zip") == stats


def test_find_hugging_face_name(tmp_path):
    stats = _touch(tmp_path / "vec_normalize.pkl")
    assert find_vecnormalize(tmp_path / "ppo-Pendulum-v1.zip") == stats


def test_find_zoo_layout(tmp_path):
    run = tmp_path / "logs" / "ppo" / "Pendulum-v1_1"
    stats = _touch(run / "Pendulum-v1" / "vecnormalize.pkl")
    assert find_vecnormalize(run / "Pendulum-v1.zip") == stats
    assert find_vecnormalize(run / "best_model.zip", env_id="Pendulum-v1") == stats
    assert find_vecnormalize(run / "best_model.zip") == stats  # the only <env>/vecnormalize.pkl there


def test_find_checkpoint_statistics(tmp_path):
    stats = _touch(tmp_path / "rl_model_vecnormalize_5000_steps.pkl")
    _touch(tmp_path / "rl_model_vecnormalize_9000_steps.pkl")
    assert find_vecnormalize(tmp_path / "rl_model_5000_steps.zip") == stats


def test_find_nothing_gives_none(tmp_path):
    _touch(tmp_path / "a" / "vecnormalize.pkl")
    _touch(tmp_path / "b" / "vecnormalize.pkl")  # two candidates: ambiguous, not guessed
    assert find_vecnormalize(tmp_path / "model.zip") is None


def test_a_zoo_config_saying_normalize_is_named_when_the_statistics_are_missing(tmp_path):
    from tools.controllers.formats import choose_obs_norm, zoo_config_says_normalize

    run = tmp_path / "logs" / "sac" / "Pendulum-v1_1"
    config = run / "Pendulum-v1" / "config.yml"
    config.parent.mkdir(parents=True)
    config.write_text(
        "!!python/object/apply:collections.OrderedDict\n- - - batch_size\n    - 256\n  - - normalize\n    - true\n"
    )
    assert zoo_config_says_normalize(run / "Pendulum-v1.zip", "Pendulum-v1") == config
    choice = choose_obs_norm(run / "Pendulum-v1.zip", "sb3", "Pendulum-v1", None, "SAC")
    assert choice.norm is None and choice.record is None
    assert "config.yml says it was trained with VecNormalize" in choice.notes[0] and "--obs-norm" in choice.notes[0]
    config.write_text("!!python/object/apply:collections.OrderedDict\n- - - normalize\n    - false\n")
    assert zoo_config_says_normalize(run / "Pendulum-v1.zip", "Pendulum-v1") is None
