"""Full-integer inference of an MLP controller, for a microcontroller without an FPU: the model and its exact host twin.

What the device computes, and :meth:`IntModel.act` computes the same way on the host (integers only,
so the two agree bit for bit):

- **Input** (float32 observations from the frame): each feature ``i`` is read as its IEEE-754 bits and
  turned into an int8 code ``q = clamp(round(x * r_i), -127, 127)`` by integer arithmetic only
  (:func:`quantize_input`): mantissa times a fixed-point multiplier ``r_i = M_i * 2^-n_i`` (``r_i`` =
  127 / the largest ``|x_i|`` among the calibration states), one 64-bit product, a shift with rounding
  half away from zero. The scale is per input feature (folded into the first layer's weights): an
  angle's sine and a velocity differ by a factor 8 in range, and one int8 scale for both would give
  the angle 1/16 of a step's resolution.
- **Linear layers**: int8 weights (per output channel, the previous activation's scale folded in),
  int32 bias in the accumulator's scale, int32 accumulation of int8 x int8 products.
- **Activation through a lookup table**: the accumulator is rescaled to a pre-activation index
  ``p = clamp(round_half_up(acc * M_j * 2^-n_j), -L, L)`` (per output channel fixed-point multiplier,
  one 64-bit product and a shift) on a grid of step ``h`` (per layer: 1.25 x the largest |pre-activation|
  of the calibration states over L, or less where the activation is flat beyond: :func:`saturation`); the table gives the activation's int8 code ``round(f(p h) / s)``
  with one per-tensor scale ``s`` per layer (a percentile of |activation| on the calibration states / 127:
  the percentile whose integer model tracks the float one best there, :func:`build_int_model`).
- **Output**: the last layer's index reads a table of the head (its activation and the action box) as
  fixed point, ``round(g(p h) * 2^Q)`` in int32, which becomes a float32 action by integer bit
  assembly (exact: ``|value| < 2^24``).

Calibration: the float model on the given observations (the caller passes states the controller
visits in closed loop, seeded); every scale, multiplier and table is fixed at export.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.errors import ExportError

QMAX = 127
LUT_HALF = 512  # the table index runs over [-LUT_HALF, LUT_HALF]
MARGIN = 1.25  # the pre-activation grid covers this much beyond the calibration states' largest value
CLIP_PERCENTILES = (100.0, 99.99, 99.9, 99.5, 99.0, 98.0)  # tried for the activation scales (build_int_model)
OUT_Q_MAX = 16  # fractional bits of the output's fixed point (fewer if the action range needs them)


@dataclass
class IntLayer:
    """One Linear and its activation table: int8 weights [out, in], int32 bias, per-channel multipliers, int table."""

    weight: np.ndarray  # int8 [out, in]
    bias: np.ndarray  # int32 [out]
    mult: np.ndarray  # int32 [out]: acc * mult * 2^-shift is the pre-activation in grid steps
    shift: np.ndarray  # int32 [out]
    table: np.ndarray  # hidden: int8 [2L+1]; output: int32 [out, 2L+1] (fixed point, 2^-out_q)
    step: float  # the pre-activation grid step (for the record)
    scale: float  # hidden: the activation codes' scale; output: 2^-out_q


@dataclass
class IntModel:
    """The integer controller: input multipliers, layers, output fixed point; :meth:`act` is the exact host twin."""

    in_mult: np.ndarray  # int32 [obs_dim]
    in_shift: np.ndarray  # int32 [obs_dim]
    layers: list[IntLayer]
    out_q: int
    lut_half: int = LUT_HALF
    clip_percentile: float = (
        100.0  # the activation scales cover this percentile of |activation| on the calibration states
    )

    @property
    def obs_dim(self) -> int:
        return int(self.in_mult.shape[0])

    @property
    def act_dim(self) -> int:
        return int(self.layers[-1].weight.shape[0])

    def weight_bytes(self) -> int:
        """Flash the tables take: int8 weights, int32 biases and multipliers, int8 shifts, the lookup tables."""
        total = self.obs_dim * 5
        for layer in self.layers:
            total += layer.weight.size + layer.bias.size * 4 + layer.mult.size * 4 + layer.shift.size
            total += layer.table.size * layer.table.itemsize
        return int(total)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions [n, act_dim] (float32) for observations [n, obs_dim], computed exactly as the device does."""
        x = np.ascontiguousarray(np.asarray(obs, dtype=np.float32).reshape(-1, self.obs_dim))
        a = quantize_input(x, self.in_mult, self.in_shift)
        for i, layer in enumerate(self.layers):
            acc = a.astype(np.int64) @ layer.weight.astype(np.int64).T + layer.bias.astype(np.int64)
            p = requantize(acc, layer.mult, layer.shift, self.lut_half) + self.lut_half
            if i < len(self.layers) - 1:
                a = layer.table[p].astype(np.int64)
            else:
                fixed = np.take_along_axis(layer.table.T, p, axis=0) if p.size else p
                return fixed.astype(np.float32) / np.float32(2**self.out_q)
        raise ExportError("an integer model needs at least one layer")

    def to_json(self) -> dict:
        """Every integer of the model (what the device's C holds), JSON-ready."""
        return {
            "format": "prune-and-export.int-model",
            "version": 1,
            "in_mult": self.in_mult.tolist(),
            "in_shift": self.in_shift.tolist(),
            "out_q": self.out_q,
            "lut_half": self.lut_half,
            "clip_percentile": self.clip_percentile,
            "layers": [
                {
                    "weight": layer.weight.tolist(),
                    "bias": layer.bias.tolist(),
                    "mult": layer.mult.tolist(),
                    "shift": layer.shift.tolist(),
                    "table": layer.table.tolist(),
                    "step": layer.step,
                    "scale": layer.scale,
                }
                for layer in self.layers
            ],
        }

    @classmethod
    def from_json(cls, d: dict) -> IntModel:
        """The model :meth:`to_json` wrote."""
        if d.get("format") != "prune-and-export.int-model":
            raise ExportError("not an integer model file (format prune-and-export.int-model)")
        n = len(d["layers"])
        layers = [
            IntLayer(
                np.asarray(x["weight"], np.int8),
                np.asarray(x["bias"], np.int32),
                np.asarray(x["mult"], np.int32),
                np.asarray(x["shift"], np.int32),
                np.asarray(x["table"], np.int8 if i < n - 1 else np.int32),
                float(x["step"]),
                float(x["scale"]),
            )
            for i, x in enumerate(d["layers"])
        ]
        return cls(
            np.asarray(d["in_mult"], np.int32),
            np.asarray(d["in_shift"], np.int32),
            layers,
            int(d["out_q"]),
            int(d["lut_half"]),
            float(d.get("clip_percentile", 100.0)),
        )

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()) + "\n")

    @classmethod
    def load(cls, path: Path) -> IntModel:
        """The integer model of a bundle (``<target>_int_model.json``): the host twin of its firmware."""
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as e:
            raise ExportError(f"{path}: not a readable integer model ({e})") from e


def fixed_multiplier(r: float) -> tuple[int, int]:
    """(M, n) with M in [2^30, 2^31) and ``M * 2^-n`` the closest such number to ``r`` > 0 ((0, 1) for r = 0)."""
    if not r > 0 or not math.isfinite(r):
        return 0, 1
    n = 30 - math.floor(math.log2(r))
    m = round(r * 2.0**n)
    if m >= 2**31:
        m, n = m // 2, n - 1
    if n < 1:
        raise ExportError(f"integer model: a rescaling factor {r:g} is too large for a 31-bit multiplier")
    if n > 62:
        return 0, 1  # below 2^-32: the product rounds to 0 anyway
    return int(m), int(n)


def requantize(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, limit: int) -> np.ndarray:
    """``clamp(floor(acc * mult / 2^shift + 1/2), -limit, limit)`` in int64 (per output channel mult, shift)."""
    m = mult.astype(np.int64)
    n = shift.astype(np.int64)
    out = (acc.astype(np.int64) * m + np.left_shift(np.int64(1), n - 1)) >> n
    return np.clip(out, -limit, limit)


def quantize_input(x: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """int8 codes (as int64) of float32 ``x`` [n, d]: ``clamp(round_half_away(x * mult * 2^-shift), -127, 127)`` from the bits."""
    bits = x.view(np.uint32).astype(np.int64)
    negative = (bits >> 31) & 1
    e = (bits >> 23) & 0xFF
    frac = bits & 0x7FFFFF
    mant = np.where(e == 0, frac, frac | 0x800000)
    e = np.where(e == 0, 1, e)
    prod = mant * mult.astype(np.int64)  # < 2^24 * 2^31
    t = 150 + shift.astype(np.int64) - e  # x * r = prod * 2^-t
    safe_t = np.clip(t, 1, 62)
    mag = (prod + np.left_shift(np.int64(1), safe_t - 1)) >> safe_t
    mag = np.where(t <= 0, QMAX, np.where(t > 62, 0, mag))
    mag = np.where(prod == 0, 0, mag)
    mag = np.where(e == 0xFF, QMAX, np.minimum(mag, QMAX))
    return np.where(negative == 1, -mag, mag)


def _round_even(x: np.ndarray) -> np.ndarray:
    return np.rint(x)


def _split(module: nn.Module) -> list[tuple[nn.Module, list[nn.Module]]]:
    """(Linear, the elementwise modules after it) pairs of a Sequential MLP."""
    if not isinstance(module, nn.Sequential):
        raise ExportError(
            f"integer export: the controller is a {type(module).__name__}; full-integer inference takes an "
            "nn.Sequential MLP (Linear / activation layers and an elementwise output)"
        )
    pairs: list[tuple[nn.Module, list[nn.Module]]] = []
    for m in module:
        if isinstance(m, nn.Linear) or hasattr(m, "weight_q"):
            pairs.append((m, []))
        elif not pairs:
            raise ExportError(f"integer export: {type(m).__name__} before the first Linear is not supported")
        else:
            pairs[-1][1].append(m)
    if not pairs:
        raise ExportError("integer export: the controller has no Linear layer")
    return pairs


def _float_weight(linear: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(weight [out, in], bias [out]) in float64; a weight-only int8 Linear's codes times its scales."""
    get = lambda name: torch.as_tensor(getattr(linear, name)).detach().to(torch.float64)  # noqa: E731
    w = get("weight_q") * get("scale")[:, None] if hasattr(linear, "weight_q") else get("weight")
    b = get("bias") if getattr(linear, "bias", None) is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    return w.numpy(), b.numpy()


def _elementwise(mods: list[nn.Module], z: np.ndarray) -> np.ndarray:
    """The modules after a Linear applied to ``z`` [k, out] in float64 (they act per feature)."""
    t = torch.as_tensor(z, dtype=torch.float64)
    with torch.no_grad():
        for m in mods:
            t = copy.deepcopy(m).to(torch.float64)(t)
    return t.numpy()


def saturation(tail: list[nn.Module], width: int, reach: float, flat: float) -> float:
    """The half-width of the grid: ``reach``, or less where the activation is flat (within ``flat``) beyond it.

    A table index clamps at the grid's ends, so a saturating head (tanh of the action box) needs its
    grid only where it still changes: the steps are then finer where it matters (near zero torque).
    """
    z = np.linspace(-reach, reach, 8001)
    v = _elementwise(tail, np.repeat(z[:, None], width, axis=1))
    span = 0.0
    for side, edge in ((z > 0, v[-1]), (z < 0, v[0])):
        moving = side & (np.abs(v - edge).max(axis=1) > flat)
        if moving.any():
            span = max(span, float(np.abs(z[moving]).max()) + (z[1] - z[0]))
    return min(reach, max(span, reach / LUT_HALF))


def build_int_model(module: nn.Module, calibration: np.ndarray) -> IntModel:
    """Calibrate and quantize ``module`` (a Sequential MLP) on ``calibration`` observations [n, obs_dim].

    The activation scales cover a percentile of |activation| on the calibration states (the rest
    saturates at +-127): each of :data:`CLIP_PERCENTILES` is tried, and the one whose integer model's
    actions are closest to the float model's on those states (mean absolute difference) is kept.
    Covering every value (100) spends most codes on rare peaks; on the pruned reference controller
    the 99th percentile halves the mean action error of the 100th.
    """
    x = np.asarray(calibration, np.float64)
    if x.ndim != 2 or len(x) == 0 or not np.all(np.isfinite(x)):
        raise ExportError("integer export: calibration needs finite observations [n, obs_dim], n >= 1")
    pairs = _split(module)
    with torch.no_grad():
        target = module(torch.as_tensor(x, dtype=torch.float32)).double().numpy()  # the float model itself
    best: tuple[float, IntModel] | None = None
    for pct in CLIP_PERCENTILES:
        candidate = _build(pairs, x, pct)
        err = float(np.abs(candidate.act(x.astype(np.float32)) - target).mean())
        if best is None or err < best[0]:
            best = (err, candidate)
    assert best is not None
    return best[1]


def _build(pairs: list[tuple[nn.Module, list[nn.Module]]], x: np.ndarray, pct: float) -> IntModel:
    """The integer model with activation scales at the ``pct`` percentile of |activation| on ``x``."""
    peak_in = np.maximum(np.abs(x).max(axis=0), 1e-6)
    in_r = QMAX / peak_in
    in_mm = [fixed_multiplier(float(r)) for r in in_r]
    prev_scale = 1.0 / np.array([m * 2.0**-n for m, n in in_mm])  # the input codes' scale per feature
    layers: list[IntLayer] = []
    act = x
    out_q = OUT_Q_MAX
    for k, (linear, tail) in enumerate(pairs):
        last = k == len(pairs) - 1
        w, b = _float_weight(linear)
        pre = act @ w.T + b
        post = _elementwise(tail, pre)
        wf = w * prev_scale[None, :]  # weights on the codes of the previous activation
        peak = np.abs(wf).max(axis=1)
        s_w = np.where(peak > 0, peak / QMAX, 1.0)
        wq = np.clip(_round_even(wf / s_w[:, None]), -QMAX, QMAX).astype(np.int8)
        bq = np.clip(_round_even(b / s_w), -(2**31) + 1, 2**31 - 1).astype(np.int32)
        reach = max(float(np.abs(pre).max()) * MARGIN, 1e-6)
        if last:
            top = float(
                np.abs(_elementwise(tail, np.linspace(-reach, reach, 4001)[:, None].repeat(w.shape[0], 1))).max()
            )
            out_q = min(OUT_Q_MAX, 23 - max(0, math.ceil(math.log2(top + 1.0))))
            flat = 2.0**-out_q  # one step of the output's fixed point
        else:
            flat = max(float(np.percentile(np.abs(post), pct)), 1e-6) / QMAX / 2  # half an activation code
        step = saturation(tail, w.shape[0], reach, flat) / LUT_HALF
        mm = [fixed_multiplier(float(s) / step) for s in s_w]
        multipliers, shifts = np.array([m for m, _ in mm], np.int32), np.array([n for _, n in mm], np.int32)
        grid = np.arange(-LUT_HALF, LUT_HALF + 1, dtype=np.float64) * step
        values = _elementwise(tail, np.repeat(grid[:, None], w.shape[0], axis=1))  # [2L+1, out]
        if not last:
            if values.size and not np.allclose(values, values[:, :1]):
                raise ExportError(
                    "integer export: a hidden activation differs per feature; one table per layer needs it elementwise and shared"
                )
            s_a = max(float(np.percentile(np.abs(post), pct)), 1e-6) / QMAX
            table = np.clip(_round_even(values[:, 0] / s_a), -QMAX, QMAX).astype(np.int8)
            layers.append(IntLayer(wq, bq, multipliers, shifts, table, step, s_a))
            # calibrate the next layer on what the codes carry
            act = np.clip(_round_even(post / s_a), -QMAX, QMAX) * s_a
            prev_scale = np.full(w.shape[0], s_a)
        else:
            table = _round_even(values.T * 2.0**out_q).astype(np.int32)  # [out, 2L+1]
            layers.append(IntLayer(wq, bq, multipliers, shifts, table, step, 2.0**-out_q))
    return IntModel(
        np.array([m for m, _ in in_mm], np.int32),
        np.array([n for _, n in in_mm], np.int32),
        layers,
        out_q,
        LUT_HALF,
        pct,
    )
