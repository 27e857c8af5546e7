"""Closed-loop return: fast plant and gymnasium judge agree; the bundled controller is good."""

import numpy as np
import pytest

from tools.controllers.load import load_controller
from tools.plant.evaluate import closed_loop_return
from tools.plant.expert import energy_shaping_expert
from tools.plant.policy import as_policy


def test_fast_and_gym_judges_agree_per_episode():
    fast = closed_loop_return(energy_shaping_expert, episodes=10, seed=3, judge="fast")
    gym = closed_loop_return(energy_shaping_expert, episodes=10, seed=3, judge="gym")
    assert fast.seeds == gym.seeds == list(range(3, 13))
    np.testing.assert_allclose(fast.returns, gym.returns, atol=1e-6)
    assert fast.mean == pytest.approx(np.mean(fast.returns))
    assert fast.min == pytest.approx(np.min(fast.returns))
    assert fast.std == pytest.approx(np.std(fast.returns))


def test_zero_torque_is_far_worse_than_the_expert():
    zero = closed_loop_return(lambda obs: np.zeros((len(obs), 1), np.float32), episodes=20, seed=0)
    expert = closed_loop_return(energy_shaping_expert, episodes=20, seed=0)
    assert zero.mean < -800 < -200 < expert.mean


def test_bundled_controller_reaches_minus_150_on_gymnasium_seeds_0_to_99():
    controller = load_controller()
    stats = closed_loop_return(as_policy(controller.module), episodes=100, seed=0, judge="gym")
    assert stats.mean >= -150.0, f"reference controller return {stats.mean:.1f} < -150"


def test_bundled_controller_is_two_hidden_layers_of_256_and_small():
    controller = load_controller()
    assert controller.architecture["hidden"] == [256, 256]
    assert controller.path.stat().st_size < 1_000_000


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="episodes"):
        closed_loop_return(energy_shaping_expert, episodes=0)
    with pytest.raises(ValueError, match="judge"):
        closed_loop_return(energy_shaping_expert, episodes=1, judge="mujoco")
