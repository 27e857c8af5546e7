"""Shared by the stub and HIL tests: one small exported bundle per test process (built once)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import torch

from tools.controller import build_mlp, pendulum_spec


@functools.lru_cache(maxsize=1)
def small_controller() -> torch.nn.Module:
    """A 3-32-32-1 ELU MLP with seeded random weights: small, so export and qemu stay fast."""
    torch.manual_seed(0)
    return build_mlp(pendulum_spec(), [32, 32], "elu").eval()


@functools.lru_cache(maxsize=1)
def small_bundle() -> Path:
    """export_bundle of small_controller() for x86_64, cortex-a72 and cortex-a7 (the ARM ones verified through the stub)."""
    from export.bundle import export_bundle
    from targets import parse_target_list

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="pae_test_bundle."))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    out = root / "bundle"
    export_bundle(small_controller(), pendulum_spec(), parse_target_list("x86_64,cortex-a72,cortex-a7"), out, n_parity=100)
    return out


def copy_bundle(dest: Path) -> Path:
    """A private copy of the bundle that a test may damage."""
    return Path(shutil.copytree(small_bundle(), dest / "bundle"))
