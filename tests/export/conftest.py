"""Fixtures of the export tests: pendulum-shaped torch MLPs built here, so these tests need nothing from tools/."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from export import ControllerSpec

ACTIVATIONS: dict[str, type[nn.Module]] = {"elu": nn.ELU, "tanh": nn.Tanh, "relu": nn.ReLU}


class BoundedOutput(nn.Module):
    """Squash to the action box: ``low + (tanh(x) + 1) / 2 * (high - low)`` (as the reference controllers do)."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32).clone())
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.low + (torch.tanh(x) + 1.0) * 0.5 * (self.high - self.low)


def mlp(spec: ControllerSpec, hidden: list[int], activation: str = "elu") -> nn.Sequential:
    """Linear/activation pairs, a Linear head and the bounded output, for ``spec`` (weights from torch's RNG)."""
    layers: list[nn.Module] = []
    width = spec.obs_dim
    for w in hidden:
        layers += [nn.Linear(width, w), ACTIVATIONS[activation]()]
        width = w
    layers += [nn.Linear(width, spec.act_dim), BoundedOutput(torch.tensor(spec.act_low), torch.tensor(spec.act_high))]
    return nn.Sequential(*layers)


@pytest.fixture(scope="session")
def make_mlp(pendulum: ControllerSpec) -> Callable[..., nn.Sequential]:
    """``make_mlp(hidden, activation="elu", seed=0)``: a seeded pendulum MLP in eval mode."""

    def make(hidden: list[int], activation: str = "elu", seed: int = 0) -> nn.Sequential:
        torch.manual_seed(seed)
        return mlp(pendulum, hidden, activation).eval()

    return make
