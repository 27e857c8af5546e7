"""prune/stability.py: the spectral radius of a linearised closed loop, checked against numpy's eigenvalues."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prune import PruneError, stability


def linear_policy(k: np.ndarray) -> nn.Linear:
    """u = K x as a bias-free nn.Linear."""
    lin = nn.Linear(k.shape[1], k.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(k, dtype=torch.float32))
    return lin


def plant(a: np.ndarray, b: np.ndarray):
    """The closed-loop step x' = A x + B policy(x), batched over rows."""
    at, bt = torch.tensor(a.T), torch.tensor(b.T)

    def step(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
        return x @ at + model(x.float()).double() @ bt

    return step


def sorted_eigenvalues(values) -> list[complex]:
    return sorted((complex(v) for v in values), key=lambda z: (round(z.real, 6), round(z.imag, 6)))


CASES = {
    "real": (np.array([[0.5, 0.1], [0.0, 1.0]]), np.array([[0.0], [1.0]]), np.array([[0.0, -0.2]])),
    "complex pair": (np.array([[0.9, -0.4], [0.4, 0.9]]), np.array([[0.0], [1.0]]), np.array([[0.1, -0.05]])),
    "three states": (
        np.array([[1.0, 0.05, 0.0], [0.0, 1.0, 0.05], [0.1, -0.2, 0.95]]),
        np.array([[0.0], [0.0], [0.05]]),
        np.array([[-1.0, -2.0, -1.5]]),
    ),
    "unstable": (np.array([[1.2, 0.0], [0.0, 0.5]]), np.array([[0.0], [1.0]]), np.array([[0.0, 0.3]])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_radius_and_eigenvalues_match_numpy_for_a_linear_closed_loop(case):
    a, b, k = CASES[case]
    expected = np.linalg.eigvals(a + b @ k.astype(np.float32).astype(np.float64))
    s = stability(plant(a, b), linear_policy(k), torch.zeros(a.shape[0]))
    radius = float(np.abs(expected).max())
    assert s.radius == pytest.approx(radius, abs=1e-6)
    assert s.stable == (radius < 1.0) and s.margin == pytest.approx(1.0 - radius, abs=1e-6)
    got = sorted_eigenvalues(complex(re, im) for re, im in s.eigenvalues)
    assert got == pytest.approx(sorted_eigenvalues(expected), abs=1e-6)


def test_an_unstable_loop_is_reported_unstable_with_a_negative_margin():
    a, b, k = CASES["unstable"]
    s = stability(plant(a, b), linear_policy(k), torch.zeros(2))
    assert not s.stable and s.radius == pytest.approx(1.2) and s.margin == pytest.approx(-0.2)
    assert s.to_dict()["stable"] is False


def test_an_mlp_policy_is_linearised_at_the_equilibrium():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(2, 8, bias=False), nn.Tanh(), nn.Linear(8, 1, bias=False))
    a, b = np.array([[1.0, 0.05], [0.0, 1.0]]), np.array([[0.0], [0.05]])
    gain = (mlp[2].weight @ mlp[0].weight).detach().double().numpy()  # d policy / dx at 0 (tanh'(0) = 1)
    s = stability(plant(a, b), mlp, torch.zeros(2))
    assert s.radius == pytest.approx(float(np.abs(np.linalg.eigvals(a + b @ gain)).max()), abs=1e-6)


def test_a_step_that_does_not_return_the_next_state_is_refused():
    def wrong(x, model):
        return model(x.float()).double()  # the action, not the next state

    with pytest.raises(PruneError, match="closed-loop step maps a state of size 2 to shape \\(1,\\)"):
        stability(wrong, linear_policy(np.array([[0.0, 1.0]])), torch.zeros(2))
