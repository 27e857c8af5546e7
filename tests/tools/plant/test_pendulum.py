"""The batched plant must be gymnasium's Pendulum-v1, step for step."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from tools.plant.pendulum import BatchedPendulum, torch_observation, torch_step

SEEDS = list(range(25))


def _gym_trajectories(seeds, actions):
    """Observations (T+1, N, 3) and rewards (T, N) from gymnasium's own env."""
    env = gym.make("Pendulum-v1")
    obs_all, rew_all = [], []
    for i, s in enumerate(seeds):
        obs, _ = env.reset(seed=s)
        obs_i, rew_i = [obs], []
        for t in range(actions.shape[0]):
            obs, reward, terminated, truncated, _ = env.step(actions[t, i])
            obs_i.append(obs)
            rew_i.append(reward)
        assert truncated and not terminated, "Pendulum-v1 episodes end by the 200-step time limit"
        obs_all.append(obs_i)
        rew_all.append(rew_i)
    env.close()
    return np.array(obs_all).transpose(1, 0, 2), np.array(rew_all).T


@pytest.mark.parametrize("kind", ["random", "saturating", "float64"])
def test_plant_matches_gymnasium_step_for_step(kind):
    rng = np.random.default_rng(123)
    steps = 200
    if kind == "random":
        actions = rng.uniform(-2, 2, size=(steps, len(SEEDS), 1)).astype(np.float32)
    elif kind == "saturating":
        # Beyond the torque limit, flipping every 10 steps (near resonance), so both the torque
        # clip and the max-speed clip are exercised.
        sign = np.where((np.arange(steps) // 10) % 2 == 0, 1.0, -1.0)
        actions = np.broadcast_to(7.5 * sign[:, None, None], (steps, len(SEEDS), 1)).astype(np.float32)
    else:
        actions = rng.uniform(-3, 3, size=(steps, len(SEEDS), 1))
    gym_obs, gym_rew = _gym_trajectories(SEEDS, actions)

    plant = BatchedPendulum()
    obs = plant.reset(SEEDS)
    assert obs.dtype == np.float32
    np.testing.assert_allclose(obs, gym_obs[0], atol=1e-6, rtol=0)
    top_speed = 0.0
    for t in range(steps):
        obs, reward = plant.step(actions[t])
        top_speed = max(top_speed, float(np.abs(plant.state[:, 1]).max()))
        np.testing.assert_allclose(obs, gym_obs[t + 1], atol=1e-6, rtol=0, err_msg=f"observation at step {t}")
        np.testing.assert_allclose(reward, gym_rew[t], atol=1e-6, rtol=0, err_msg=f"reward at step {t}")
    if kind == "saturating":
        assert top_speed == pytest.approx(8.0), "max speed is reached and clipped"


def test_torch_step_matches_numpy_plant():
    plant = BatchedPendulum()
    obs = plant.reset(SEEDS)
    state = torch.tensor(plant.state)
    rng = np.random.default_rng(0)
    for _ in range(50):
        u = rng.uniform(-3, 3, size=len(SEEDS))
        obs, reward = plant.step(u)
        state, t_reward = torch_step(state, torch.tensor(u))
        np.testing.assert_allclose(state.numpy(), plant.state, atol=1e-9)
        np.testing.assert_allclose(t_reward.numpy(), reward, atol=1e-9)
        np.testing.assert_allclose(torch_observation(state).numpy(), obs, atol=1e-6)


def test_reset_rejects_nothing_but_gives_distinct_starts():
    starts = BatchedPendulum().reset(list(range(100)))
    assert len(np.unique(starts[:, 2])) == 100
    assert np.all(np.abs(starts[:, 2]) <= 1.0)
