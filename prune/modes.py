"""Train/eval switches that also take a ``torch.export`` module (which refuses them: its mode is fixed when exported)."""

from __future__ import annotations

from torch import nn


def set_mode(model: nn.Module, train: bool) -> nn.Module:
    """``model.train(train)``; a no-op for a torch.export module, whose mode was fixed at export."""
    try:
        model.train(train)
    except NotImplementedError:  # torch.export's module: "Calling train()/eval() is not supported yet"
        pass
    return model
