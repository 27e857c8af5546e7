"""Small torch models and visited states for the prune/ tests (pure torch: prune knows no plant and no exporter)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

torch.set_num_threads(1)


@pytest.fixture
def states() -> torch.Tensor:
    """256 seeded three-dimensional observations, standing in for the states a controller visits."""
    return torch.randn(256, 3, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def tanh_mlp() -> Callable[..., nn.Sequential]:
    """tanh_mlp(*hidden, seed=0): a seeded 3-...-1 tanh MLP in eval mode (default hidden widths 16, 16)."""

    def make(*hidden: int, seed: int = 0) -> nn.Sequential:
        torch.manual_seed(seed)
        widths = [3, *(hidden or (16, 16))]
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Linear(a, b), nn.Tanh()]
        return nn.Sequential(*layers, nn.Linear(widths[-1], 1)).eval()

    return make


@pytest.fixture
def layernorm_mlp() -> nn.Sequential:
    """A seeded 3-16-LayerNorm-ELU-8-ReLU-1 MLP in eval mode: Linear and LayerNorm slices in one group."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(3, 16), nn.LayerNorm(16), nn.ELU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1)).eval()
