"""Cortex-M4 firmware of kernels other than a dense + activation chain: each op family a small model, exported,
checked by the host build of the generated C and run under qemu-system-arm against onnxruntime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from export import ControllerSpec, export_bundle, read_manifest
from targets import parse_target_list

MEAN = torch.tensor([0.1, -0.2, 0.5])
STD = torch.tensor([0.7, 0.6, 2.0])


class Net(nn.Module):
    """3 -> 8 -> 8 -> 1 with a chosen body between the layers (weights seeded)."""

    def __init__(self, body: Callable[[Net, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.l1, self.l2, self.head = nn.Linear(3, 8), nn.Linear(8, 8), nn.Linear(8, 1)
        self.norm = nn.LayerNorm(8)
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self, x)


def normaliser(m: Net, x: torch.Tensor) -> torch.Tensor:
    """An observation normaliser (sub/div by constants, clipped) in front of a tanh MLP."""
    x = torch.clamp((x - MEAN) / STD, -5.0, 5.0)
    return m.head(torch.tanh(m.l2(torch.tanh(m.l1(x)))))


def min_max_clip(m: Net, x: torch.Tensor) -> torch.Tensor:
    """A plain head clipped to the action box with Min/Max."""
    return torch.minimum(
        torch.maximum(m.head(torch.relu(m.l2(torch.relu(m.l1(x))))), torch.tensor(-2.0)), torch.tensor(2.0)
    )


def layer_norm(m: Net, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm + Mish, as TD-MPC2's encoder does."""
    return m.head(nn.functional.mish(m.norm(m.l2(nn.functional.mish(m.norm(m.l1(x)))))))


def residual(m: Net, x: torch.Tensor) -> torch.Tensor:
    """A residual block (SimBa): h + W2 relu(W1 h)."""
    h = m.l1(x)
    return m.head(m.norm(h + m.l2(torch.relu(h))))


def smooth_activations(m: Net, x: torch.Tensor) -> torch.Tensor:
    """GELU then SiLU between the layers."""
    return m.head(nn.functional.silu(m.l2(nn.functional.gelu(m.l1(x)))))


BODIES = {f.__name__: f for f in (normaliser, min_max_clip, layer_norm, residual, smooth_activations)}


@pytest.mark.parametrize("name", BODIES)
def test_op_family_runs_in_cortex_m4_firmware(name: str, pendulum: ControllerSpec, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "bundle"
    export_bundle(Net(BODIES[name]).eval(), pendulum, parse_target_list("cortex-m4"), out, n_parity=50, seed=1)
    art = read_manifest(out).to_dict()["artifacts"]["cortex-m4"]
    assert art["verification"]["status"] == "verified", art["verification"]
    assert "qemu-system-arm" in art["verification"]["method"]
    assert art["host_check"]["n"] == art["firmware_check"]["n"] == 50
    assert art["host_check"]["max_abs_err"] <= 1e-4 and art["firmware_check"]["max_abs_err"] <= 1e-4
