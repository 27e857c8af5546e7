"""The early stop a search on an env gets: a ceiling only where the return is provably bounded, else the noise margin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tools.pipeline.prune import search_early_stop
from tools.plant.stopping import choose, needs_scores, reward_ceiling, standard_error


def test_inverted_pendulum_has_its_maximum_return_as_ceiling() -> None:
    ceiling, why = reward_ceiling("InvertedPendulum-v5")
    assert ceiling == 1000.0 and "1000 steps" in why
    stop = choose("InvertedPendulum-v5")
    assert (stop.ceiling, stop.stop_within) == (1000.0, None)


def test_pendulum_never_stops_early_unless_asked() -> None:
    assert choose("Pendulum-v1", unpruned_scores=[1.0, 2.0, 3.0]).to_dict() == {
        "ceiling": None,
        "stop_within": None,
        "why": "no early stop",
    }
    assert not needs_scores("Pendulum-v1", None, None, True)
    assert choose("Pendulum-v1", ceiling=-100.0).ceiling == -100.0


def test_an_env_without_a_known_ceiling_stops_within_the_standard_error() -> None:
    scores = [10.0, 12.0, 14.0, 16.0]
    assert reward_ceiling("MountainCarContinuous-v0") is None
    assert needs_scores("MountainCarContinuous-v0", None, None, True)
    stop = choose("MountainCarContinuous-v0", unpruned_scores=scores)
    assert stop.ceiling is None and stop.stop_within == pytest.approx(np.std(scores, ddof=1) / 2.0)
    assert "standard error over 4 search episodes" in stop.why


def test_user_values_win_and_no_early_stop_turns_the_automatic_ones_off() -> None:
    assert choose("InvertedPendulum-v5", stop_within=3.0).to_dict()["ceiling"] is None
    assert choose("InvertedPendulum-v5", auto=False).ceiling is None
    assert not needs_scores("MountainCarContinuous-v0", None, None, False)
    assert standard_error([5.0]) == 0.0


def test_the_noise_margin_costs_no_extra_evaluation_of_the_unpruned_model() -> None:
    model, calls = torch.nn.Linear(2, 1), []

    def objective(m: torch.nn.Module) -> np.ndarray:
        calls.append(m)
        return np.array([1.0, 3.0])

    stop, searched = search_early_stop("MountainCarContinuous-v0", model, objective, None, None, True)
    assert stop.stop_within == pytest.approx(1.0) and len(calls) == 1
    assert list(searched(model)) == [1.0, 3.0] and len(calls) == 1  # prune's own first call: answered from the scores
    searched(torch.nn.Linear(2, 1))
    assert len(calls) == 2
