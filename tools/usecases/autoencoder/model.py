"""A dense autoencoder of handwritten digits, the non-control use case of prune/.

``Autoencoder`` has two top-level submodules, ``encoder`` and ``decoder``: they are the two
components whose soft coefficients the search chooses. The bottleneck code (the encoder's last
Linear) and the reconstruction are protected by default: :func:`autoencoder_groups` leaves the code
out unless ``prune_code=True``. Quality is PSNR on held-out images (pixels in [0, 1]).

File format (``torch.save`` of plain data, loads with ``weights_only=True``): a dict with
``format``, ``input_dim``, ``state_dict`` and free-form ``meta`` (data, training config, seed);
layer widths are read back from the weight shapes, so pruned autoencoders save and load the same way.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prune import Groups, find_groups
from tools.errors import ToolsError

FORMAT = "prune-and-export.autoencoder/1"
ENCODER_WIDTHS = (128, 64)
CODE = 16
DECODER_WIDTHS = (64, 128)
CODE_GROUP = "encoder.{last}"  # the Linear that writes the code is the encoder's last module


def default_autoencoder_path() -> Path:
    """The shipped autoencoder of scikit-learn's 8x8 digits (``tools/usecases/autoencoder/train.py`` made it)."""
    return Path(str(resources.files("tools") / "assets" / "digits_ae.pt"))


def _mlp(widths: Sequence[int], last_activation: nn.Module | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ELU())
    if last_activation is not None:
        layers.append(last_activation)
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """input -> encoder (Linear+ELU ..., Linear to the code) -> decoder (Linear+ELU ..., Linear, Sigmoid) -> input."""

    def __init__(
        self,
        input_dim: int = 64,
        encoder_widths: Sequence[int] = ENCODER_WIDTHS,
        code: int = CODE,
        decoder_widths: Sequence[int] = DECODER_WIDTHS,
    ) -> None:
        super().__init__()
        self.encoder = _mlp([input_dim, *encoder_widths, code], None)
        self.decoder = _mlp([code, *decoder_widths, input_dim], nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def linear_widths(model: Autoencoder) -> dict[str, list[int]]:
    """Output width of every Linear, per component (the last encoder width is the code)."""
    return {
        part: [m.out_features for m in getattr(model, part) if isinstance(m, nn.Linear)]
        for part in ("encoder", "decoder")
    }


def from_state_dict(state: dict[str, torch.Tensor], input_dim: int) -> Autoencoder:
    """Rebuild an autoencoder (pruned or not) from its state dict; widths come from the weight shapes."""
    try:
        enc = [
            state[k].shape[0]
            for k in sorted(
                (k for k in state if k.startswith("encoder.") and k.endswith(".weight")),
                key=lambda k: int(k.split(".")[1]),
            )
        ]
        dec = [
            state[k].shape[0]
            for k in sorted(
                (k for k in state if k.startswith("decoder.") and k.endswith(".weight")),
                key=lambda k: int(k.split(".")[1]),
            )
        ]
        model = Autoencoder(input_dim, enc[:-1], enc[-1], dec[:-1])
        model.load_state_dict(state)
    except (KeyError, IndexError, ValueError, RuntimeError) as e:
        raise ToolsError(f"state dict is not an autoencoder of {input_dim} inputs: {str(e).splitlines()[0]}") from e
    return model.eval()


def save_autoencoder(model: Autoencoder, path: str | Path, meta: dict | None = None) -> Path:
    """Write ``model`` atomically (temp file + rename) in the format of this module."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    input_dim = model.encoder[0].in_features
    payload = {
        "format": FORMAT,
        "input_dim": input_dim,
        "state_dict": {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
        "meta": meta or {},
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a model file is meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_autoencoder(path: str | Path | None = None) -> tuple[Autoencoder, dict]:
    """An autoencoder file (default: the shipped one) -> (model in eval mode, its meta)."""
    path = Path(path) if path is not None else default_autoencoder_path()
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise ToolsError(f"autoencoder file {path}: not found") from e
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        raise ToolsError(
            f"autoencoder file {path}: cannot load it with weights_only=True ({str(e).splitlines()[0]})"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ToolsError(f"autoencoder file {path}: not a {FORMAT} file")
    try:
        model = from_state_dict(payload["state_dict"], int(payload["input_dim"]))
    except ToolsError as e:
        raise ToolsError(f"autoencoder file {path}: {e}") from e
    return model, dict(payload.get("meta", {}))


def psnr(reference: torch.Tensor, reconstruction: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image (rows), 10 log10(range^2 / MSE); identical images cap at 100 dB."""
    if reference.shape != reconstruction.shape:
        raise ToolsError(f"psnr: shapes differ, {tuple(reference.shape)} vs {tuple(reconstruction.shape)}")
    ref, rec = reference.reshape(len(reference), -1).double(), reconstruction.reshape(len(reconstruction), -1).double()
    mse = (ref - rec).pow(2).mean(1).clamp_min(data_range**2 * 1e-10)
    return 10.0 * torch.log10(data_range**2 / mse)


@torch.no_grad()
def reconstruct_images(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's reconstructions (eval mode, no gradient)."""
    model.eval()
    return model(images)


def psnr_objective(images: torch.Tensor) -> Callable[[nn.Module], np.ndarray]:
    """Objective for prune.api.prune: PSNR of each image (higher is better), so the search's significance guard applies."""

    def objective(model: nn.Module) -> np.ndarray:
        return psnr(images, reconstruct_images(model, images)).numpy()

    return objective


def mean_psnr(model: nn.Module, images: torch.Tensor) -> float:
    """Mean per-image PSNR in dB."""
    value = float(psnr(images, reconstruct_images(model, images)).mean())
    return value if math.isfinite(value) else float("nan")


def autoencoder_groups(model: Autoencoder, prune_code: bool = False) -> Groups:
    """Pruning groups of ``model``: components encoder and decoder; the code is protected unless ``prune_code``."""
    first = model.encoder[0]
    assert isinstance(first, nn.Linear), "an Autoencoder's encoder starts with a Linear layer"
    groups = find_groups(model, torch.zeros(2, first.in_features))
    if prune_code:
        return groups
    code = CODE_GROUP.format(last=len(model.encoder) - 1)
    kept = [g for g in groups.groups if g.name != code]
    components: dict[str, list[str]] = {}
    for g in kept:
        components.setdefault(g.component, []).append(g.name)
    protected = {**groups.protected, code: "bottleneck code (pass prune_code=True to prune it)"}
    return Groups(kept, components, groups.excluded, protected, groups.modules, groups.total_params, groups.warnings)
