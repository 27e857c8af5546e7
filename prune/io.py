"""Saving a pruned model so it loads back without its Python class and without ``weights_only=False``.

Three files side by side, written to a temporary directory and renamed into place together:

- ``<stem>.pt2``: ``torch.export`` program (batch dimension dynamic); ``load_program`` runs it;
- ``<stem>.state_dict.pt``: the plain state dict (tensors only), loads with ``weights_only=True``;
- ``<stem>.widths.json``: the new feature sizes per layer, to rebuild the model from one's own class.

(TorchScript is deprecated in torch 2.13, so the class-free form is torch.export's .pt2.)
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from prune.errors import PruneError
from prune.modes import set_mode


@dataclass
class SavedModel:
    """Paths of the files :func:`save_pruned` wrote."""

    program: str
    state_dict: str
    widths: str

    def to_dict(self) -> dict:
        return asdict(self)


def sidecar_paths(stem_path: Path) -> SavedModel:
    """Where the files for ``stem_path`` (suffix ignored) go."""
    p = Path(stem_path)
    base = p.with_suffix("") if p.suffix else p
    return SavedModel(str(base) + ".pt2", str(base) + ".state_dict.pt", str(base) + ".widths.json")


def save_pruned(
    model: nn.Module,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    stem_path: Path,
    widths: dict,
    extra: dict | None = None,
) -> SavedModel:
    """Write the .pt2 program, the state dict and the widths JSON beside ``stem_path`` atomically."""
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    target = sidecar_paths(stem_path)
    parent = Path(target.program).parent
    parent.mkdir(parents=True, exist_ok=True)
    model = set_mode(model, False)
    try:
        program = torch.export.export(model, inputs, dynamic_shapes=tuple({0: torch.export.Dim.AUTO} for _ in inputs))
    except Exception as e:
        raise PruneError(f"torch.export of the pruned {type(model).__name__} failed: {str(e).splitlines()[0]}") from e
    tmp = Path(tempfile.mkdtemp(prefix=".prune-", dir=parent))
    try:
        names = {k: Path(v).name for k, v in target.to_dict().items()}
        torch.export.save(program, tmp / names["program"])
        torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, tmp / names["state_dict"])
        (tmp / names["widths"]).write_text(json.dumps({"widths": widths, **(extra or {})}, indent=2) + "\n")
        for key, name in names.items():
            (tmp / name).replace(getattr(target, key))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_program(path: str | Path) -> nn.Module:
    """Load a saved .pt2 as a callable module (no Python class of the original needed)."""
    path = Path(path)
    if not path.exists():
        raise PruneError(f"{path}: no such file")
    try:
        return torch.export.load(path).module()
    except Exception as e:
        raise PruneError(f"{path}: not a torch.export program ({str(e).splitlines()[0]})") from e


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a saved state dict with ``weights_only=True``."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise PruneError(
            f"{path}: not a state dict that loads with weights_only=True ({str(e).splitlines()[0]})"
        ) from e
