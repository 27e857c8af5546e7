"""How per-scenario mean returns become one number: :class:`Aggregate` (``mean`` | ``worst`` | ``cvar:ALPHA``).

numpy only, so the command line can check ``--robust-objective`` without importing torch.
``cvar:ALPHA`` is the average of the worst ALPHA fraction of the scenarios, the fraction counted
exactly (with S scenarios, k = ALPHA * S of them: the floor(k) worst in full, the next one in part),
so ``cvar:1`` is the mean and ``cvar:ALPHA`` with ALPHA <= 1/S is the worst case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tools.errors import ToolsError

AGGREGATES = ("mean", "worst", "cvar:ALPHA")


@dataclass(frozen=True)
class Aggregate:
    """How per-scenario mean returns become one number: mean, worst, or cvar (tail mean of the worst alpha)."""

    kind: str = "mean"
    alpha: float = 1.0  # cvar only: the fraction of scenarios in the tail, in (0, 1]

    @classmethod
    def parse(cls, text: str) -> Aggregate:
        """'mean', 'worst' or 'cvar:ALPHA' with 0 < ALPHA <= 1."""
        if text in ("mean", "worst"):
            return cls(text)
        if text.startswith("cvar:"):
            try:
                alpha = float(text[5:])
            except ValueError:
                alpha = float("nan")
            if not 0.0 < alpha <= 1.0:
                raise ToolsError(f"aggregate {text!r}: ALPHA must be a number in (0, 1]")
            return cls("cvar", alpha)
        raise ToolsError(f"aggregate must be one of {AGGREGATES}, got {text!r}")

    def weights(self, means: Sequence[float] | np.ndarray) -> np.ndarray:
        """Weight of each scenario (summing to 1) in the aggregate of these scenario means."""
        m = np.asarray(means, dtype=np.float64)
        if m.ndim != 1 or m.size == 0:
            raise ToolsError(f"aggregate: expected a 1-D array of scenario means, got shape {m.shape}")
        if self.kind == "mean":
            return np.full(m.size, 1.0 / m.size)
        alpha = 1.0 / m.size if self.kind == "worst" else self.alpha
        k = alpha * m.size  # scenarios in the tail, fractional
        w = np.zeros(m.size)
        left = 1.0
        for i in np.argsort(m, kind="stable"):  # worst first; ties broken by scenario order
            share = min(1.0 / k, left)
            w[i] = share
            left -= share
            if left <= 1e-15:
                break
        return w / w.sum()

    def __call__(self, means: Sequence[float] | np.ndarray) -> float:
        """The aggregate of these scenario means."""
        return float(self.weights(means) @ np.asarray(means, dtype=np.float64))

    def __str__(self) -> str:
        return f"cvar:{self.alpha:g}" if self.kind == "cvar" else self.kind


def as_aggregate(how: str | Aggregate) -> Aggregate:
    """An Aggregate from its text form, or itself."""
    return how if isinstance(how, Aggregate) else Aggregate.parse(how)
