"""The parity gate: which observations every artifact is checked on, and how far from its reference it may be.

Observations: the states the controller visits in its env (``parity_observations``, given by the caller)
plus samples from the observation box. The box is sampled where the observation space is bounded; in
dimensions the spec marks unbounded (``ControllerSpec.obs_unbounded``) the box is ``obs_bounds``
(``--obs-bounds``) when given, else the spec's stand-in bounds, and only when no visited states were
given: a balancing policy never sees +-10 in every dimension at once, and float32 error grows there.

Tolerance: ``|device - reference| <= parity_tolerance * (act_high - act_low)`` on every action dimension
(``--parity-tolerance``), or an absolute value for callers that pass one (``tolerance``). The absolute
error is always recorded too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from export.errors import ExportError
from export.spec import ControllerSpec

PARITY_TOLERANCE = 1e-5
"""Default ``parity_tolerance``: a fraction of each action's range (4e-5 on Pendulum's [-2, 2], 6e-5 on
InvertedPendulum's [-3, 3]). Wherever the action range is at least 1 it is no stricter than the absolute 1e-5
the gate used before, so every bundle that passed then passes now; a wrong library misses it by orders of
magnitude (its error is a fraction of the range, not of a float32 ulp)."""

OPTIONS_HINT = (
    "if the device is right and the gate too strict, loosen it with --parity-tolerance "
    "(a fraction of the action range) or sample the states the controller visits / narrow the box "
    "of unbounded dimensions with --obs-bounds LOW,HIGH"
)


@dataclass(frozen=True)
class Comparison:
    """The worst disagreement between outputs and their reference, and whether it is within the thresholds."""

    ok: bool
    max_abs_err: float  # inf for a shape mismatch, nan when an output was not finite
    action: int  # the action dimension of the worst error relative to its threshold (-1: shapes differ)
    row: int  # the observation it was found on (-1: shapes differ)
    threshold: float  # the allowed error on that action dimension


def thresholds_for(spec: ControllerSpec, parity_tolerance: float | None, tolerance: float | None) -> np.ndarray:
    """Allowed |error| per action dimension: ``parity_tolerance`` x action range, or the absolute ``tolerance``.

    An action dimension whose range is not a positive finite number takes ``parity_tolerance`` as absolute.
    """
    if parity_tolerance is not None and tolerance is not None:
        raise ExportError(
            "give parity_tolerance (a fraction of the action range, --parity-tolerance) or an "
            "absolute tolerance, not both"
        )
    if tolerance is not None:
        if not (np.isfinite(tolerance) and tolerance > 0):
            raise ExportError(f"the absolute parity tolerance must be a positive number, got {tolerance!r}")
        return np.full(spec.act_dim, float(tolerance))
    rel = PARITY_TOLERANCE if parity_tolerance is None else float(parity_tolerance)
    if not (np.isfinite(rel) and rel > 0):
        raise ExportError(
            f"--parity-tolerance must be a positive fraction of the action range, got {parity_tolerance!r}"
        )
    span = np.asarray(spec.act_high, np.float64) - np.asarray(spec.act_low, np.float64)
    span = np.where(np.isfinite(span) & (span > 0), span, 1.0)
    return rel * span


def compare(got: np.ndarray, reference: np.ndarray, thresholds: float | np.ndarray) -> Comparison:
    """Compare outputs with the reference, per action dimension against ``thresholds`` (scalar: every dimension)."""
    got, reference = np.asarray(got), np.asarray(reference)
    if got.shape != reference.shape or reference.ndim != 2:
        return Comparison(False, float("inf"), -1, -1, float(np.min(thresholds)))
    diff = np.abs(got.astype(np.float64) - reference.astype(np.float64))
    limit = np.broadcast_to(np.asarray(thresholds, np.float64), (reference.shape[1],))
    if diff.size == 0:
        return Comparison(True, 0.0, 0, 0, float(limit[0]) if limit.size else 0.0)
    bad = ~np.isfinite(diff)
    if bad.any():
        row, action = (int(i) for i in np.argwhere(bad)[0])
        return Comparison(False, float("nan"), action, row, float(limit[action]))
    ratio = diff / limit
    row, action = (int(i) for i in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
    return Comparison(bool(ratio[row, action] <= 1.0), float(diff.max()), action, row, float(limit[action]))


def _as_bounds(value, dim: int, what: str) -> np.ndarray:
    arr = np.asarray(value, np.float64)
    if arr.ndim == 0:
        arr = np.full(dim, float(arr))
    if arr.shape != (dim,) or not np.all(np.isfinite(arr)):
        raise ExportError(f"--obs-bounds: {what} must be a finite number or {dim} finite numbers, got {value!r}")
    return arr


@dataclass
class ParityGate:
    """The observations every artifact is checked on and the error allowed per action dimension."""

    observations: np.ndarray  # float32 [n_visited + n_box, obs_dim]: visited states first, then box samples
    n_visited: int
    n_box: int
    box_low: list[float] | None  # the box sampled (None: no box samples)
    box_high: list[float] | None
    seed: int
    unbounded_dims: list[int]  # observation dimensions the spec marks unbounded
    obs_bounds_given: bool
    relative: float | None  # parity_tolerance, or None when an absolute tolerance was given
    thresholds: np.ndarray  # float64 [act_dim]: allowed |error| per action dimension

    @property
    def n(self) -> int:
        """How many observations the gate checks."""
        return len(self.observations)

    @property
    def tolerance(self) -> float | list[float]:
        """The allowed absolute error: one number when the same on every action dimension, else one per dimension."""
        values = [float(v) for v in self.thresholds]
        return values[0] if len(set(values)) == 1 else values

    def where(self, row: int) -> str:
        """Which observation ``row`` is, for an error message: a visited state or a box sample, and its values."""
        if row < 0 or row >= self.n:
            return "the output's shape"
        what = (
            f"visited state {row}" if row < self.n_visited else f"box sample {row - self.n_visited} of seed {self.seed}"
        )
        values = ", ".join(f"{v:.4g}" for v in self.observations[row][:8]) + (
            ", ..." if self.observations.shape[1] > 8 else ""
        )
        return f"{what} [{values}]"

    def failure(self, what: str, row: int | None) -> str:
        """An error message: ``what`` failed (measured error included), on which observation, how the gate was set.

        ``row`` None: the failure was not a numerical disagreement (stack, arena, shape); ``what`` alone.
        """
        if row is None:
            return what
        how = f"{self.relative:g} x the action range" if self.relative is not None else "absolute"
        at = f"; observation {row} is {self.where(row)}" if row >= 0 else ""
        return (
            f"{what}{at}; the gate: {self.n_visited} visited states + {self.n_box} box samples, "
            f"tolerance {how}; {OPTIONS_HINT}"
        )

    def to_dict(self) -> dict:
        """How the gate was sampled and its tolerance (the manifest's ``onnx.parity_gate``)."""
        return {
            "visited_states": self.n_visited,
            "box_samples": self.n_box,
            "box": None if self.box_low is None else {"low": self.box_low, "high": self.box_high},
            "seed": self.seed,
            "unbounded_dims": self.unbounded_dims,
            "obs_bounds": self.obs_bounds_given,
            "tolerance": {
                "relative_to_action_range": self.relative,
                "abs_per_action": [float(v) for v in self.thresholds],
            },
        }


def parity_gate(
    spec: ControllerSpec,
    n_parity: int,
    seed: int,
    *,
    parity_observations: np.ndarray | None = None,
    obs_bounds: tuple | None = None,
    parity_tolerance: float | None = None,
    tolerance: float | None = None,
) -> ParityGate:
    """The gate for one export: visited states plus ``n_parity`` box samples where a box applies (see the module doc)."""
    thresholds = thresholds_for(spec, parity_tolerance, tolerance)
    unbounded = sorted({int(i) for i in spec.obs_unbounded})
    visited = np.zeros((0, spec.obs_dim), np.float32)
    if parity_observations is not None:
        visited = np.asarray(parity_observations, dtype=np.float32)
        if visited.ndim != 2 or visited.shape[1] != spec.obs_dim or len(visited) == 0:
            raise ExportError(
                f"parity observations must be a non-empty [n, {spec.obs_dim}] array, got shape {list(visited.shape)}"
            )
        if not np.all(np.isfinite(visited)):
            raise ExportError("parity observations hold a non-finite value")
    low, high = np.array(spec.obs_low, np.float64), np.array(spec.obs_high, np.float64)
    if obs_bounds is not None:
        if not unbounded:
            raise ExportError(
                f"--obs-bounds: the observation space of {spec.env_id} is bounded in every dimension; "
                "there is no unbounded dimension to give bounds for"
            )
        if len(obs_bounds) != 2:
            raise ExportError(f"--obs-bounds takes LOW,HIGH, got {obs_bounds!r}")
        o_low, o_high = _as_bounds(obs_bounds[0], spec.obs_dim, "LOW"), _as_bounds(obs_bounds[1], spec.obs_dim, "HIGH")
        if np.any(o_low[unbounded] >= o_high[unbounded]):
            raise ExportError(f"--obs-bounds: LOW must be below HIGH, got {obs_bounds!r}")
        low[unbounded], high[unbounded] = o_low[unbounded], o_high[unbounded]
    use_box = not unbounded or obs_bounds is not None or len(visited) == 0
    if n_parity < (0 if len(visited) else 1):
        raise ExportError(f"n_parity must be >= 1, got {n_parity}")
    n_box = n_parity if use_box else 0
    box = np.random.default_rng(seed).uniform(low, high, size=(n_box, spec.obs_dim)).astype(np.float32)
    return ParityGate(
        np.concatenate([visited, box]),
        len(visited),
        n_box,
        [float(v) for v in low] if n_box else None,
        [float(v) for v in high] if n_box else None,
        seed,
        unbounded,
        obs_bounds is not None,
        None if tolerance is not None else (PARITY_TOLERANCE if parity_tolerance is None else float(parity_tolerance)),
        thresholds,
    )
