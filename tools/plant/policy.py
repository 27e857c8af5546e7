"""A policy as the closed loops call it: a numpy batch of observations in, a numpy batch of actions out."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

Policy = Callable[[np.ndarray], np.ndarray]


def as_policy(module: nn.Module) -> Policy:
    """Wrap a torch module as a numpy batch policy (float32 in, float32 out, no grad)."""

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    return policy
