"""Scenarios change the plant as documented, are seeded, aggregate as stated, and make a valid prune objective."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from prune import find_groups, prune
from tools.errors import ToolsError
from tools.plant.evaluate import closed_loop_return
from tools.plant.expert import energy_shaping_expert
from tools.plant.objectives import return_objective
from tools.plant.pendulum import BatchedPendulum
from tools.plant.robust import Aggregate, combine, robust_objective, robust_returns
from tools.plant.rollouts import rollout_fast, rollout_vector
from tools.plant.scenarios import (
    ROBUST_MUJOCO,
    ROBUST_PENDULUM,
    Scenario,
    ScenarioSet,
    _perturb_model,
    _reset_noise_kwargs,
    rollout_pendulum,
    rollout_vector_scenario,
    scenario_set,
)

SEEDS = list(range(20))
DT = BatchedPendulum.dt


def constant(u: float):
    """An open-loop policy: the same torque whatever it sees."""
    return lambda obs: np.full((len(obs), 1), u, dtype=np.float32)


def schedule():
    """An open-loop policy whose torque at its t-th call is 1.5 sin(t) for every episode."""
    calls = [0]

    def policy(obs: np.ndarray) -> np.ndarray:
        u = 1.5 * np.sin(calls[0])
        calls[0] += 1
        return np.full((len(obs), 1), u, dtype=np.float32)

    return policy


def expert(obs: np.ndarray) -> np.ndarray:
    """The hand-designed swing-up controller: a closed loop that needs no torch."""
    return energy_shaping_expert(obs)


def test_the_nominal_scenario_is_the_fast_judge_bit_for_bit() -> None:
    played = rollout_pendulum(expert, Scenario("nominal"), SEEDS)
    assert np.array_equal(played.returns, rollout_fast(expert, SEEDS)[0])
    judged = robust_returns(expert, ROBUST_PENDULUM, episodes=5, seed=0)
    assert judged.nominal.returns.returns == closed_loop_return(expert, episodes=5, seed=0).returns
    assert list(judged.returns()) == ["nominal", *ROBUST_PENDULUM.names()]


def test_a_push_changes_theta_dot_by_the_kick_at_its_step_and_nothing_before() -> None:
    kick, step = 0.5, 3
    base = rollout_pendulum(constant(0.0), Scenario("n"), SEEDS, record=True)
    pushed = rollout_pendulum(constant(0.0), Scenario("p", push=kick, push_step=step), SEEDS, record=True)
    assert base.states is not None and pushed.states is not None
    assert np.array_equal(base.states[: step + 1], pushed.states[: step + 1])
    jump = pushed.states[step + 1, :, 1] - base.states[step + 1, :, 1]
    assert np.allclose(np.abs(jump), kick, atol=1e-12)
    assert {-1.0, 1.0} <= set(np.sign(jump))  # the sign is drawn per episode
    assert np.allclose(pushed.states[step + 1, :, 0] - base.states[step + 1, :, 0], jump * DT, atol=1e-12)


def test_one_step_of_delay_applies_the_previous_action_and_zero_first() -> None:
    played = rollout_pendulum(schedule(), Scenario("d", delay=1), SEEDS, record=True)
    wanted = np.array([0.0] + [np.float32(1.5 * np.sin(t)) for t in range(BatchedPendulum.max_episode_steps - 1)])
    assert played.actions is not None and played.states is not None
    assert np.array_equal(played.actions, np.repeat(wanted[:, None], len(SEEDS), axis=1))
    replay = BatchedPendulum()
    replay.reset(SEEDS)
    for t in range(5):
        replay.step(played.actions[t].astype(np.float32))
    assert np.array_equal(replay.state, played.states[5])


def test_sensor_noise_changes_what_is_seen_not_the_physics() -> None:
    sigma = 0.05
    base = rollout_pendulum(constant(0.3), Scenario("n"), SEEDS, record=True)
    noisy = rollout_pendulum(constant(0.3), Scenario("s", sensor_noise=sigma), SEEDS, record=True)
    assert (
        base.states is not None
        and noisy.states is not None
        and base.observations is not None
        and noisy.observations is not None
    )
    assert np.array_equal(base.states, noisy.states)  # open loop: the true trajectory is untouched
    error = noisy.observations - base.observations
    assert abs(error.std() - sigma) < 0.005 and abs(error.mean()) < 0.005
    closed = rollout_pendulum(expert, Scenario("s", sensor_noise=sigma), SEEDS, record=True)
    assert closed.states is not None and np.array_equal(closed.states[0], base.states[0])  # the start is the seed's


@pytest.mark.parametrize("mass,length,damping", [(1.3, 1.0, 0.0), (1.0, 1.2, 0.0), (1.0, 1.0, 0.5), (0.8, 1.1, 0.2)])
def test_plant_parameters_match_the_analytic_one_step_update(mass: float, length: float, damping: float) -> None:
    u = 1.0
    played = rollout_pendulum(constant(u), Scenario("p", mass=mass, length=length, damping=damping), SEEDS, record=True)
    assert played.states is not None
    th, thdot = played.states[0, :, 0], played.states[0, :, 1]
    accel = 3 * 10.0 / (2 * length) * np.sin(th) + 3.0 / (mass * length**2) * u - damping * thdot
    new_thdot = np.clip(thdot + accel * DT, -8, 8)
    assert np.allclose(played.states[1, :, 1], new_thdot, atol=1e-12)
    assert np.allclose(played.states[1, :, 0], th + new_thdot * DT, atol=1e-12)


def test_reset_scale_widens_the_start_speed_and_keeps_the_angle() -> None:
    base = rollout_pendulum(constant(0.0), Scenario("n"), SEEDS, record=True)
    wide = rollout_pendulum(constant(0.0), Scenario("w", reset_scale=4.0), SEEDS, record=True)
    assert base.states is not None and wide.states is not None
    assert np.array_equal(wide.states[0, :, 0], base.states[0, :, 0])
    assert np.allclose(wide.states[0, :, 1], 4.0 * base.states[0, :, 1], rtol=0, atol=1e-15)


def test_noise_is_seeded_per_episode_and_scenario() -> None:
    sc = Scenario("s", sensor_noise=0.1, push=1.0, push_step=50, seed=3)
    a = rollout_pendulum(expert, sc, SEEDS).returns
    assert np.array_equal(a, rollout_pendulum(expert, sc, SEEDS).returns)
    assert np.array_equal(a[5:], rollout_pendulum(expert, sc, SEEDS[5:]).returns)  # batch company does not matter
    other = Scenario("s", sensor_noise=0.1, push=1.0, push_step=50, seed=4)
    assert not np.array_equal(a, rollout_pendulum(expert, other, SEEDS).returns)


def test_aggregates_on_known_numbers() -> None:
    means = [-300.0, -100.0, -500.0, -200.0, -400.0]
    assert Aggregate.parse("mean")(means) == pytest.approx(-300.0)
    assert Aggregate.parse("worst")(means) == pytest.approx(-500.0)
    assert Aggregate.parse("cvar:0.2")(means) == pytest.approx(-500.0)
    assert Aggregate.parse("cvar:0.4")(means) == pytest.approx(-450.0)
    assert Aggregate.parse("cvar:0.3")(means) == pytest.approx(
        -500.0 * 2 / 3 - 400.0 / 3
    )  # 1.5 scenarios: 1 and a half
    assert Aggregate.parse("cvar:1")(means) == pytest.approx(-300.0)
    assert Aggregate.parse("cvar:0.01")(means) == pytest.approx(-500.0)
    assert str(Aggregate.parse("cvar:0.25")) == "cvar:0.25"
    for bad in ("median", "cvar:0", "cvar:1.5", "cvar:x"):
        with pytest.raises(ToolsError):
            Aggregate.parse(bad)


def test_combined_per_episode_scores_average_to_the_aggregate() -> None:
    returns = np.random.default_rng(0).normal(-200, 50, size=(4, 16)) + np.arange(4)[:, None] * 30
    for how in ("mean", "worst", "cvar:0.5", "cvar:0.3"):
        v = combine(returns, how)
        assert v.shape == (16,)
        assert v.mean() == pytest.approx(Aggregate.parse(how)(returns.mean(axis=1)))


def test_the_standard_sets_and_their_validation() -> None:
    assert scenario_set("robust") is ROBUST_PENDULUM
    assert scenario_set("robust", "InvertedPendulum-v5") is ROBUST_MUJOCO
    assert not any(s.nominal for s in ROBUST_PENDULUM) and Scenario("n").nominal
    with pytest.raises(ToolsError, match="scenario set must be one of"):
        scenario_set("fragile")
    with pytest.raises(ToolsError, match="delay"):
        Scenario("d", delay=2)
    with pytest.raises(ToolsError, match="repeat"):
        ScenarioSet("x", (Scenario("a"), Scenario("a", mass=2.0)))


def test_the_robust_objective_is_a_prune_objective(small_controller: torch.nn.Module) -> None:
    scenarios = ScenarioSet("two", (Scenario("heavy", mass=1.3), Scenario("delay", delay=1)))
    objective: Any = robust_objective(scenarios, "cvar:0.5", episodes=4, seed=2000)
    groups = find_groups(small_controller, torch.zeros(1, 3))
    result = prune(small_controller, groups, keep=0.5, objective=objective, method="uniform")
    assert result.search.objective == pytest.approx(float(np.mean(objective(result.model))))
    again = prune(small_controller, groups, keep=0.5, objective=objective, method="uniform")
    assert (again.search.kept, again.search.objective) == (result.search.kept, result.search.objective)


def test_mujoco_scenarios_edit_the_model_and_kick_the_hinge() -> None:
    env = "InvertedPendulum-v5"
    assert _reset_noise_kwargs(env, 10.0) == {"reset_noise_scale": pytest.approx(0.1)}
    seeds = [0, 1, 2]
    zero = constant(0.0)
    nominal = rollout_vector_scenario(zero, Scenario("n"), seeds, env)
    assert np.array_equal(nominal.returns, rollout_vector(zero, seeds, env)[0])
    kicked = rollout_vector_scenario(zero, Scenario("p", push=2.0, push_step=1), seeds, env)
    assert (kicked.returns < nominal.returns).all()  # a kicked pole falls sooner
    with pytest.raises(ToolsError, match="length"):
        rollout_vector_scenario(zero, Scenario("l", length=1.2), seeds, env)
    one: Any = gym.make(env).unwrapped
    mass, damping = one.model.body_mass.copy(), one.model.dof_damping.copy()
    _perturb_model(one, Scenario("h", mass=1.3, damping=0.5), env)
    assert np.allclose(one.model.body_mass, 1.3 * mass) and np.allclose(one.model.dof_damping, damping + 0.5)


def test_a_set_of_the_nominal_scenario_alone_is_the_nominal_objective(small_controller: torch.nn.Module) -> None:
    nominal = ScenarioSet("nominal", (Scenario("nominal"),))
    for how in ("mean", "worst", "cvar:0.2"):
        robust = robust_objective(nominal, how, episodes=6, seed=2000)(small_controller)
        assert np.array_equal(robust, return_objective(6, 2000)(small_controller))
