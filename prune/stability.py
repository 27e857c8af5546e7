"""Stability of the closed loop, linearised at an equilibrium: spectral radius of its Jacobian.

For a discrete-time closed loop ``x' = step(x, policy)``, the equilibrium is locally asymptotically
stable when every eigenvalue of ``d step / d x`` there lies inside the unit circle (a quadratic
Lyapunov function then exists for the linearisation). The margin ``1 - radius`` is reported before
and after pruning; a pruned controller must keep it positive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from prune.errors import PruneError

ClosedLoopStep = Callable[[torch.Tensor, nn.Module], torch.Tensor]  # (N, state_dim) states -> next states


@dataclass
class Stability:
    """Spectral radius of the linearised closed loop and its margin to instability."""

    radius: float
    margin: float
    stable: bool
    eigenvalues: list[list[float]]  # [real, imag] pairs

    def to_dict(self) -> dict:
        return asdict(self)


def closed_loop_jacobian(step: ClosedLoopStep, model: nn.Module, equilibrium: torch.Tensor) -> torch.Tensor:
    """d step(x, model) / dx at ``equilibrium`` (a 1-D state), by autograd, in float64."""
    x0 = torch.as_tensor(equilibrium, dtype=torch.float64).reshape(-1)

    def f(x: torch.Tensor) -> torch.Tensor:
        out = step(x.reshape(1, -1), model)
        return out.reshape(-1).to(torch.float64)

    with torch.enable_grad():
        jac = torch.autograd.functional.jacobian(f, x0)
    if jac.shape != (x0.numel(), x0.numel()):
        raise PruneError(
            f"closed-loop step maps a state of size {x0.numel()} to shape {tuple(jac.shape[:1])}: it must return the next state"
        )
    return jac


def stability(step: ClosedLoopStep, model: nn.Module, equilibrium: torch.Tensor) -> Stability:
    """Spectral radius of the closed loop linearised at ``equilibrium``; stable when below 1."""
    jac = closed_loop_jacobian(step, model, equilibrium)
    eig = torch.linalg.eigvals(jac)
    radius = float(eig.abs().max())
    return Stability(radius, 1.0 - radius, radius < 1.0, [[float(e.real), float(e.imag)] for e in eig])
