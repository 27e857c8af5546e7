"""Fixtures for the foreign-controller readers: pickles that would run code, and observations to compare on (the SB3
models and the zoo of controllers are shared with the zoo end to end: tests/tools/conftest.py)."""

from __future__ import annotations

import base64
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


class _CreatesFile:
    """Unpickling an instance opens (so creates) a file: a payload as harmless as it is detectable."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self) -> tuple:
        return (open, (self.target, "w"))


@pytest.fixture
def creates_file() -> Callable[[Path], object]:
    """creates_file(target): an object whose unpickling creates target (to hide inside a real pickle)."""
    return _CreatesFile


@pytest.fixture
def payload() -> Callable[[Path], bytes]:
    """payload(target): pickle bytes that create target when unpickled; checked live on a control file first."""

    def make(target: Path) -> bytes:
        control = target.with_name(target.name + ".control")
        pickle.loads(pickle.dumps(_CreatesFile(control))).close()  # the payload works: it creates a file
        assert control.exists()
        control.unlink()
        return pickle.dumps(_CreatesFile(target))

    return make


@pytest.fixture
def payload_b64(payload: Callable[[Path], bytes]) -> Callable[[Path], str]:
    """The payload as SB3 stores a cloudpickled value in ``data`` (``":serialized:"``: base64)."""
    return lambda target: base64.b64encode(payload(target)).decode()


@pytest.fixture
def pendulum_obs() -> np.ndarray:
    """1000 float32 observations sampled from Pendulum-v1's observation box (seeded)."""
    rng = np.random.default_rng(0)
    high = np.array([1.0, 1.0, 8.0], dtype=np.float32)
    return rng.uniform(-high, high, size=(1000, 3)).astype(np.float32)
