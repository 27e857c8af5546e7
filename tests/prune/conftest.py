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
    return nn.Sequential(
        nn.Linear(3, 16), nn.LayerNorm(16), nn.ELU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1)
    ).eval()


@pytest.fixture
def four_layer(tanh_mlp) -> nn.Sequential:
    """A seeded 3-16-16-16-16-1 tanh MLP: four groups, room for the budget to be spread unevenly."""
    return tanh_mlp(16, 16, 16, 16)


@pytest.fixture
def fidelity(states) -> Callable[..., Callable[[nn.Module], float]]:
    """fidelity(teacher, log=None): objective = minus the output error against ``teacher`` on the states.

    Cheap and analytic (higher is better, 0 for the unpruned model). If ``log`` is a list, every
    call appends the hidden widths of the model judged: the evaluation log, in order.
    """

    def make(teacher: nn.Module, log: list | None = None) -> Callable[[nn.Module], float]:
        with torch.no_grad():
            target = teacher(states)

        def objective(model: nn.Module) -> float:
            if log is not None:
                log.append(hidden_widths(model))
            with torch.no_grad():
                return -float((model(states) - target).pow(2).mean())

        return objective

    return make


def hidden_widths(model: nn.Module) -> tuple[int, ...]:
    """out_features of every Linear but the last: the widths pruning chose."""
    return tuple(m.out_features for m in model.modules() if isinstance(m, nn.Linear))[:-1]


@pytest.fixture(name="hidden_widths")
def hidden_widths_fixture() -> Callable[[nn.Module], tuple[int, ...]]:
    """hidden_widths(model): out_features of every Linear but the last."""
    return hidden_widths
