"""Which controller file to read and how: the formats the tool reads and :class:`ControllerSource`.

Plain Python, no torch: the command line lists the formats in --help and records its flags here
before any heavy import; ``tools.controllers.load`` turns a source into a loaded controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FORMATS = ("controller", "torchscript", "torch-export", "state-dict", "onnx", "sb3")


@dataclass
class ControllerSource:
    """Where a controller comes from: a file (None: the bundled reference) and how to read it."""

    path: Path | None = None
    format: str | None = None  # one of FORMATS; None: detected from the file
    env: str | None = None  # gymnasium env id giving a foreign file its sizes and bounds
    factory: str | None = None  # "package.module:function" building the module a state dict fits
    clip_actions: bool = False  # accept a foreign controller whose actions leave the env's bounds: clip them
    obs_norm: Path | None = (
        None  # observation statistics (.npz/.json/VecNormalize .pkl) a foreign controller was trained with
    )
