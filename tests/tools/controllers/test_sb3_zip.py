"""SB3 zips read without unpickling: the rebuilt actor equals SB3's predict(deterministic=True); payloads run nothing."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tools.controllers.sb3_zip import ClipToBox, SquashToBox, read_sb3_zip
from tools.errors import ControllerError

TOL = 1e-5


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes | None]) -> Path:
    """A copy of the zip src with members replaced (bytes) or dropped (None)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            if item.filename in replace:
                new = replace[item.filename]
                if new is not None:
                    zout.writestr(item.filename, new)
            else:
                zout.writestr(item, zin.read(item.filename))
    return dst


def _data(path: Path) -> dict:
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("data"))


def _actions(module: torch.nn.Module, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(obs)).numpy()


# (model, algorithm, activation, hidden sizes, output)
CASES = [
    ("sac", "SAC", "ReLU", [32, 32], "squash"),
    ("sac_elu", "SAC", "ELU", [32, 24], "squash"),
    ("sac_gsde", "SAC", "ReLU", [32, 32], "squash"),
    ("td3", "TD3", "ReLU", [32, 32], "squash"),
    ("td3_tanh", "TD3", "Tanh", [16], "squash"),
    ("ddpg", "DDPG", "ReLU", [32, 32], "squash"),
    ("ppo", "PPO", "Tanh", [64, 64], "clip"),
    ("ppo_pi_vf", "PPO", "GELU", [16, 24], "clip"),
    ("ppo_gsde", "PPO", "Tanh", [32], "clip"),
    ("ppo_gsde_squash", "PPO", "Tanh", [32], "squash"),
    ("a2c", "A2C", "SiLU", [32, 32], "clip"),
]


@pytest.mark.parametrize("name, algorithm, activation, hidden, output", CASES, ids=[c[0] for c in CASES])
def test_actor_equals_sb3_predict_deterministic(sb3_models, pendulum_obs, name, algorithm, activation, hidden, output):
    path, model = sb3_models(name)
    policy = read_sb3_zip(path)
    expected, _ = model.predict(pendulum_obs, deterministic=True)
    got = _actions(policy.actor, pendulum_obs)
    assert got.shape == expected.shape == (1000, 1)
    assert np.abs(got - expected).max() <= TOL
    assert (policy.algorithm, policy.activation, policy.net_arch, policy.output) == (
        algorithm,
        activation,
        hidden,
        output,
    )
    assert (policy.obs_dim, policy.act_dim) == (3, 1)
    np.testing.assert_array_equal(policy.act_low, [-2.0])
    np.testing.assert_array_equal(policy.obs_high, [1.0, 1.0, 8.0])
    assert policy.deterministic_action


def test_ppo_actor_clips_to_the_action_box_as_predict_does(sb3_models, pendulum_obs):
    path, _ = sb3_models("ppo")
    actor = read_sb3_zip(path).actor
    raw = _actions(torch.nn.Sequential(*list(actor)[:-1]), pendulum_obs)
    assert isinstance(actor[-1], ClipToBox)
    assert (np.abs(raw) > 2.0).any(), "the fixture's head should reach past the box"
    assert np.abs(_actions(actor, pendulum_obs)).max() <= 2.0


def test_stochastic_policies_drop_log_std_and_value_heads(sb3_models):
    sac = read_sb3_zip(sb3_models("sac")[0])
    ppo = read_sb3_zip(sb3_models("ppo_pi_vf")[0])
    td3 = read_sb3_zip(sb3_models("td3")[0])
    assert sac.stochastic and ppo.stochastic and not td3.stochastic
    assert "log_std" in sac.deterministic_action and "mean" in ppo.deterministic_action
    assert isinstance(sac.actor[-1], SquashToBox)
    # 3-16-24-1 policy path only: the 8-unit value net is not in the actor
    assert [m.out_features for m in ppo.actor if isinstance(m, torch.nn.Linear)] == [16, 24, 1]


def test_assumed_default_activation_is_said_in_notes(sb3_models):
    assert any("assumed ReLU" in n for n in read_sb3_zip(sb3_models("td3")[0]).notes)
    assert any("assumed Tanh" in n for n in read_sb3_zip(sb3_models("ppo")[0]).notes)
    assert not any("assumed" in n for n in read_sb3_zip(sb3_models("sac_elu")[0]).notes)


def test_actor_traces_with_fx_and_exports_to_onnx(sb3_models, pendulum_obs, tmp_path):
    import onnxruntime

    actor = read_sb3_zip(sb3_models("sac_gsde")[0]).actor
    traced = torch.fx.symbolic_trace(actor)
    assert not any(n.op == "get_attr" and "_tensor_constant" in str(n.target) for n in traced.graph.nodes)
    np.testing.assert_allclose(_actions(traced, pendulum_obs), _actions(actor, pendulum_obs), atol=0)
    onnx_path = tmp_path / "actor.onnx"
    torch.onnx.export(
        actor,
        (torch.zeros(1, 3),),
        str(onnx_path),
        input_names=["obs"],
        output_names=["action"],
        dynamic_axes={"obs": {0: "n"}},
        dynamo=False,
    )
    session = onnxruntime.InferenceSession(str(onnx_path))
    got = session.run(None, {"obs": pendulum_obs})[0]
    assert np.abs(got - _actions(actor, pendulum_obs)).max() <= TOL


def test_summary_is_json(sb3_models):
    summary = json.loads(json.dumps(read_sb3_zip(sb3_models("ppo_pi_vf")[0]).summary()))
    assert (summary["algorithm"], summary["net_arch"], summary["act_high"]) == ("PPO", [16, 24], [2.0])
    assert summary["policy_class"] == "stable_baselines3.common.policies.ActorCriticPolicy"


def test_spec_carries_sizes_and_bounds(sb3_models):
    spec = read_sb3_zip(sb3_models("td3")[0]).spec("Pendulum-v1")
    assert (spec.obs_dim, spec.act_dim, spec.act_low, spec.act_high) == (3, 1, (-2.0,), (2.0,))
    assert spec.obs_high == (1.0, 1.0, 8.0)


def test_env_spaces_give_exact_bounds_and_a_different_action_box_is_refused(sb3_models):
    import gymnasium as gym

    path, _ = sb3_models("sac")
    obs_space = gym.spaces.Box(-np.array([1, 1, 8], np.float32), np.array([1, 1, 8], np.float32))
    policy = read_sb3_zip(path, env_spaces=(obs_space, gym.spaces.Box(-2.0, 2.0, (1,), np.float32)))
    np.testing.assert_array_equal(policy.act_high, [2.0])
    with pytest.raises(ControllerError, match="action high .* differs"):
        read_sb3_zip(path, env_spaces=(obs_space, gym.spaces.Box(-2.0, 3.0, (1,), np.float32)))
    with pytest.raises(ControllerError, match="shape"):
        read_sb3_zip(path, env_spaces=(gym.spaces.Box(-1.0, 1.0, (4,)), gym.spaces.Box(-2.0, 2.0, (1,))))


# ---------------------------------------------------------------- payloads run nothing


def test_payload_in_data_serialized_fields_runs_nothing(sb3_models, payload_b64, pendulum_obs, tmp_path):
    path, model = sb3_models("sac_elu")
    marker = tmp_path / "pwned"
    data = _data(path)
    for key in ("policy_class", "policy_kwargs", "observation_space", "action_space", "lr_schedule"):
        data[key][":serialized:"] = payload_b64(marker)
    bad = _rewrite(path, tmp_path / "bad.zip", {"data": json.dumps(data).encode()})
    policy = read_sb3_zip(bad)
    assert not marker.exists()
    expected, _ = model.predict(pendulum_obs, deterministic=True)
    assert np.abs(_actions(policy.actor, pendulum_obs) - expected).max() <= TOL


def test_payload_as_policy_pth_is_refused_and_runs_nothing(sb3_models, payload, tmp_path):
    path, _ = sb3_models("sac")
    marker = tmp_path / "pwned"
    bad = _rewrite(path, tmp_path / "bad.zip", {"policy.pth": payload(marker)})
    with pytest.raises(ControllerError, match=r"bad\.zip: zip member 'policy.pth' .*weights_only"):
        read_sb3_zip(bad)
    assert not marker.exists()


def test_payload_inside_a_torch_saved_policy_pth_is_refused(sb3_models, payload, tmp_path):
    path, _ = sb3_models("td3")
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"actor.mu.0.weight": torch.zeros(2, 3)}, buffer)  # a real torch.save zip
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as z:  # swap its data.pkl for the payload
        members = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in members if n.endswith("data.pkl"))
    members[pkl] = payload(marker)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    bad = _rewrite(path, tmp_path / "bad.zip", {"policy.pth": out.getvalue()})
    with pytest.raises(ControllerError, match="policy.pth"):
        read_sb3_zip(bad)
    assert not marker.exists()


# ---------------------------------------------------------------- bad input


def test_non_zip_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "model.zip"
    path.write_text("not a zip")
    with pytest.raises(ControllerError, match=r"model\.zip: not a stable-baselines3 zip"):
        read_sb3_zip(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ControllerError, match="no such file"):
        read_sb3_zip(tmp_path / "absent.zip")


@pytest.mark.parametrize("member", ["policy.pth", "data"])
def test_zip_without_a_member_is_refused_naming_it(sb3_models, tmp_path, member):
    bad = _rewrite(sb3_models("sac")[0], tmp_path / "bad.zip", {member: None})
    with pytest.raises(ControllerError, match=rf"bad\.zip: zip member '{member}' is missing"):
        read_sb3_zip(bad)


def test_truncated_zip_is_refused(sb3_models, tmp_path):
    raw = sb3_models("sac")[0].read_bytes()
    bad = tmp_path / "truncated.zip"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ControllerError, match=r"truncated\.zip"):
        read_sb3_zip(bad)


def test_corrupt_member_is_refused_naming_it(sb3_models, tmp_path):
    path, _ = sb3_models("sac")
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("data")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + 10] ^= 0xFF  # flip a byte inside the compressed data: CRC or inflate error
    bad = tmp_path / "corrupt.zip"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ControllerError, match=r"corrupt\.zip: zip member 'data'"):
        read_sb3_zip(bad)


def test_data_that_is_not_json_is_refused(sb3_models, tmp_path):
    bad = _rewrite(sb3_models("sac")[0], tmp_path / "bad.zip", {"data": b"\x80\x04not json"})
    with pytest.raises(ControllerError, match="zip member 'data' is not JSON"):
        read_sb3_zip(bad)


def test_discrete_action_algorithm_is_refused_naming_what_is_supported(tmp_path):
    from stable_baselines3 import DQN

    path = tmp_path / "dqn.zip"
    DQN("MlpPolicy", "CartPole-v1", buffer_size=100, seed=0).save(path)
    with pytest.raises(
        ControllerError, match=r"dqn\.zip: .*DQNPolicy \(discrete actions\) is not supported; supported: .*SAC"
    ):
        read_sb3_zip(path)


def test_discrete_action_space_with_ppo_is_refused(tmp_path):
    from stable_baselines3 import PPO

    path = tmp_path / "ppo_cartpole.zip"
    PPO("MlpPolicy", "CartPole-v1", n_steps=64, seed=0).save(path)
    with pytest.raises(ControllerError, match=r"ppo_cartpole\.zip: .*action_space is Discrete \(discrete space\)"):
        read_sb3_zip(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda d: d["policy_kwargs"].update(activation_fn="<class 'mypackage.Swish'>"),
            "activation_fn .* is not supported",
        ),
        (
            lambda d: d["policy_class"].update(__init__="<function CnnPolicy.__init__ at 0x0>"),
            r"CnnPolicy \(image or Dict",
        ),
        (
            lambda d: d["policy_kwargs"].update(features_extractor_class="<class 'my.Extractor'>"),
            "features_extractor_class",
        ),
        (lambda d: d["action_space"].update(high="[inf]"), "not finite"),
        (
            lambda d: d["action_space"].update({":type:": "<class 'gymnasium.spaces.dict.Dict'>"}),
            r"Dict \(Dict space\)",
        ),
    ],
)
def test_unsupported_configurations_are_refused(sb3_models, tmp_path, edit: Callable[[dict], None], message):
    path, _ = sb3_models("sac_elu")
    data = _data(path)
    edit(data)
    bad = _rewrite(path, tmp_path / "bad.zip", {"data": json.dumps(data).encode()})
    with pytest.raises(ControllerError, match=rf"bad\.zip: .*{message}"):
        read_sb3_zip(bad)


def test_weights_of_another_architecture_are_refused(sb3_models, tmp_path):
    path, _ = sb3_models("sac")
    with zipfile.ZipFile(path) as z:
        state = torch.load(io.BytesIO(z.read("policy.pth")), weights_only=True)
    state["actor.latent_pi.1.weight"] = torch.ones(32)  # a LayerNorm-like layer between Linear and activation
    buffer = io.BytesIO()
    torch.save(state, buffer)
    bad = _rewrite(path, tmp_path / "bad.zip", {"policy.pth": buffer.getvalue()})
    with pytest.raises(ControllerError, match=r"bad\.zip: zip member 'policy.pth': actor.latent_pi.1"):
        read_sb3_zip(bad)


def test_bounds_printed_at_full_precision_are_said_to_be_maybe_rounded(sb3_models, tmp_path):
    path, _ = sb3_models("sac")
    assert not any("precision" in n for n in read_sb3_zip(path).notes)  # Pendulum's bounds print exactly
    data = _data(path)
    data["observation_space"]["low"] = "[-1.12345678 -1.         -8.        ]"
    policy = read_sb3_zip(_rewrite(path, tmp_path / "odd.zip", {"data": json.dumps(data).encode()}))
    assert np.float32(policy.obs_low[0]) == np.float32(-1.12345678)
    assert any("observation_space.low printed at numpy's 8-decimal precision" in n for n in policy.notes)
