"""The --quantize integer objective: each candidate calibrated on its own visited states as export calibrates it,
its full-integer twin played in the search's closed loop, cached by weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export import build_int_model
from tools.controllers.native import (
    Controller,
    build_mlp,
    load_native,
    mlp_architecture,
    pendulum_spec,
    save_controller,
)
from tools.errors import ToolsError
from tools.pipeline.export import visited_states
from tools.pipeline.integer_objective import IntegerObjective, check_integer
from tools.plant.episodes import episode_seeds
from tools.plant.objectives import return_objective
from tools.plant.rollouts import rollout_fast

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def controller(tmp_path_factory) -> Controller:
    torch.manual_seed(0)
    m = build_mlp(pendulum_spec(), [24, 16], "elu")
    path = tmp_path_factory.mktemp("int") / "c.pt"
    save_controller(path, m, pendulum_spec(), mlp_architecture(m, "elu"))
    return load_native(path)


def test_the_objective_is_the_integer_twin_built_on_exports_calibration_states(controller):
    objective = IntegerObjective(episodes=3, seed=2000)
    # the states export calibrates the cortex-m3 model on (its parity gate's visited states, same seeds)
    np.testing.assert_array_equal(objective.calibration(controller.module), visited_states(controller))
    twin = build_int_model(controller.module, visited_states(controller))
    expected = rollout_fast(twin.act, episode_seeds(3, 2000))[0]
    np.testing.assert_array_equal(objective(controller.module), expected)
    # and not the float model's return: the search optimises another number
    assert not np.array_equal(expected, return_objective(3, 2000)(controller.module))


def test_a_candidate_is_built_once_and_another_weight_rebuilds(controller):
    objective = IntegerObjective(episodes=2, seed=2000)
    first = objective(controller.module)
    again = objective(controller.module)
    assert objective.builds == 1 and objective.hits == 1
    np.testing.assert_array_equal(first, again)
    other = build_mlp(pendulum_spec(), [24, 16], "elu")
    other.load_state_dict(controller.module.state_dict())
    with torch.no_grad():
        other[0].weight[0, 0] += 0.5
    objective(other)
    assert objective.builds == 2
    assert objective.seconds_per_build is not None and objective.seconds_per_build > 0
    assert objective.to_dict()["calibration"]["seeds"] == [3000, 3003]


@pytest.mark.parametrize(
    ("flash_budget", "scenarios", "fragment"), [(65536, False, "--flash-budget"), (None, True, "--scenarios")]
)
def test_integer_refuses_a_flash_budget_and_scenarios(flash_budget, scenarios, fragment):
    with pytest.raises(ToolsError, match=fragment):
        check_integer("integer", flash_budget, scenarios)
    check_integer("auto", flash_budget, scenarios)  # the other precisions are not its business
