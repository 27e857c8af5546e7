"""Fixtures for the foreign-controller readers: SB3 models saved as zips, and pickles that would run code."""

from __future__ import annotations

import base64
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


class _CreatesFile:
    """Unpickling an instance opens (so creates) a file: a payload as harmless as it is detectable."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self) -> tuple:
        return (open, (self.target, "w"))


@pytest.fixture
def creates_file() -> Callable[[Path], object]:
    """creates_file(target): an object whose unpickling creates target (to hide inside a real pickle)."""
    return _CreatesFile


@pytest.fixture
def payload() -> Callable[[Path], bytes]:
    """payload(target): pickle bytes that create target when unpickled; checked live on a control file first."""

    def make(target: Path) -> bytes:
        control = target.with_name(target.name + ".control")
        pickle.loads(pickle.dumps(_CreatesFile(control))).close()  # the payload works: it creates a file
        assert control.exists()
        control.unlink()
        return pickle.dumps(_CreatesFile(target))

    return make


@pytest.fixture
def payload_b64(payload: Callable[[Path], bytes]) -> Callable[[Path], str]:
    """The payload as SB3 stores a cloudpickled value in ``data`` (``":serialized:"``: base64)."""
    return lambda target: base64.b64encode(payload(target)).decode()


@pytest.fixture(scope="session")
def sb3_models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, object]]:
    """sb3_models(name) -> (zip path, the SB3 model it was saved from); untrained Pendulum-v1 models, built once."""
    import torch
    from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3

    torch.set_num_threads(1)
    small = lambda: dict(net_arch=[32, 32])  # fresh each time: SB3 adds keys (use_sde) to the dict it is given
    recipes: dict[str, Callable[[], object]] = {
        "sac": lambda: SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=small(), seed=0),
        "sac_elu": lambda: SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 24], activation_fn=torch.nn.ELU), seed=0),
        "sac_gsde": lambda: SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=small(), use_sde=True, seed=0),
        "td3": lambda: TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=small(), seed=0),
        "td3_tanh": lambda: TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16], activation_fn=torch.nn.Tanh), seed=0),
        "ddpg": lambda: DDPG("MlpPolicy", "Pendulum-v1", policy_kwargs=small(), seed=0),
        "ppo": lambda: PPO("MlpPolicy", "Pendulum-v1", seed=0),
        "ppo_pi_vf": lambda: PPO("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=dict(pi=[16, 24], vf=[8]), activation_fn=torch.nn.GELU), seed=0),
        "ppo_gsde": lambda: PPO("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32]), use_sde=True, seed=0),
        "ppo_gsde_squash": lambda: PPO("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32], squash_output=True), use_sde=True, seed=0),
        "a2c": lambda: A2C("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32], activation_fn=torch.nn.SiLU), seed=0),
    }
    folder = tmp_path_factory.mktemp("sb3_models")
    built: dict[str, tuple[Path, object]] = {}

    def get(name: str) -> tuple[Path, object]:
        if name not in built:
            model = recipes[name]()
            path = folder / f"{name}.zip"
            model.save(path)  # type: ignore[attr-defined]
            if "ppo" in name or "a2c" in name:  # an untrained Gaussian mean sits near 0: make it reach the clip
                _spread_head(model)
                model.save(path)  # type: ignore[attr-defined]
            built[name] = (path, model)
        return built[name]

    return get


def _spread_head(model: object) -> None:
    """Scale the action head so the mean leaves [-2, 2] for some observations (the clip is then exercised)."""
    import torch

    head = model.policy.action_net  # type: ignore[attr-defined]
    with torch.no_grad():
        head.weight.copy_(3.0 * torch.sign(head.weight))  # ortho_init gives the head gain 0.01: means stay near 0
        head.bias.fill_(0.5)


@pytest.fixture
def pendulum_obs() -> np.ndarray:
    """1000 float32 observations sampled from Pendulum-v1's observation box (seeded)."""
    rng = np.random.default_rng(0)
    high = np.array([1.0, 1.0, 8.0], dtype=np.float32)
    return rng.uniform(-high, high, size=(1000, 3)).astype(np.float32)
