"""Budgets in parameters: soft coefficients -> units kept per group -> exact parameters and multiply-adds.

A coefficient c in [0, 1] is the fraction of a group's units removed (at least one unit stays).
A budget ``keep`` is the fraction of the *prunable* parameters kept: the parameters of every Linear
and LayerNorm some group touches. Counts are exact, computed from the shapes the surgery will build.
A budget in bytes (:class:`ByteCounter`) counts the same shapes in weight bytes under a precision:
a Linear quantized to int8 stores 1 byte per weight, 4 per scale and bias entry
(:mod:`prune.quantize`), everything else 4 bytes per parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from prune.errors import PruneError
from prune.groups import Groups
from prune.quantize import int8_bytes

BYTES_PER_PARAM = 4  # float32


@dataclass
class Footprint:
    """Size of a (pruned) model: parameters in total and of the prunable part, bytes, multiply-adds per step."""

    params: int
    prunable_params: int
    bytes: int
    macs: int

    def to_dict(self) -> dict:
        return asdict(self)


def check_keep(keep: float) -> float:
    """Validate a budget: a fraction of prunable parameters in (0, 1]."""
    if not isinstance(keep, (int, float)) or not 0.0 < float(keep) <= 1.0:
        raise PruneError(f"keep must be a fraction of the prunable parameters in (0, 1], got {keep!r}")
    return float(keep)


def units_kept(size: int, coefficient: float) -> int:
    """Units left of ``size`` after removing the fraction ``coefficient`` (rounded, at least one)."""
    if not 0.0 <= coefficient <= 1.0:
        raise PruneError(f"coefficient must be in [0, 1], got {coefficient}")
    return max(1, size - int(round(coefficient * size)))


def kept_from_coefficients(groups: Groups, coefficients: Mapping[str, float]) -> dict[str, int]:
    """Units kept per group from coefficients per component (or per group name)."""
    kept = {}
    for g in groups.groups:
        c = coefficients.get(g.name, coefficients.get(g.component))
        if c is None:
            raise PruneError(
                f"no coefficient for group '{g.name}' (component '{g.component}'); given: {', '.join(coefficients)}"
            )
        kept[g.name] = units_kept(g.size, float(c))
    return kept


def module_sizes(groups: Groups, kept: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """New feature sizes per module ({'in', 'out'} for Linear, {'norm'} for LayerNorm)."""
    sizes = {}
    for name, info in groups.modules.items():
        sizes[name] = (
            {"in": info.in_features, "out": info.out_features} if info.kind == "linear" else {"norm": info.norm_size}
        )
    for g in groups.groups:
        removed = g.size - int(kept.get(g.name, g.size))
        if removed < 0 or kept.get(g.name, g.size) < 1:
            raise PruneError(f"group '{g.name}' has {g.size} units; cannot keep {kept.get(g.name)}")
        for s in g.slices:
            axis = {"linear.in": "in", "linear.out": "out"}.get(s.kind, "norm")
            sizes[s.module][axis] -= removed
    return sizes


def _module_params(info, size: dict[str, int]) -> int:
    if info.kind == "linear":
        return size["in"] * size["out"] + (size["out"] if info.bias else 0)
    return size["norm"] * info.affine_params


def prunable_modules(groups: Groups) -> set[str]:
    """Modules some group slices."""
    return {s.module for g in groups.groups for s in g.slices}


def footprint(groups: Groups, kept: Mapping[str, int] | None = None) -> Footprint:
    """Exact parameter count, bytes and Linear multiply-adds per sample for the given units kept."""
    kept = kept or {g.name: g.size for g in groups.groups}
    sizes = module_sizes(groups, kept)
    base = module_sizes(groups, {g.name: g.size for g in groups.groups})
    touched = prunable_modules(groups)
    prunable = sum(_module_params(groups.modules[m], sizes[m]) for m in touched)
    delta = sum(
        _module_params(groups.modules[m], base[m]) - _module_params(groups.modules[m], sizes[m]) for m in touched
    )
    params = groups.total_params - delta
    macs = sum(
        s["in"] * s["out"] * groups.modules[m].rows_per_sample
        for m, s in sizes.items()
        if groups.modules[m].kind == "linear"
    )
    return Footprint(params, prunable, params * BYTES_PER_PARAM, macs)


def keep_fraction(groups: Groups, kept: Mapping[str, int]) -> float:
    """Fraction of the prunable parameters kept."""
    before = footprint(groups).prunable_params
    if before == 0:
        raise PruneError("the model has no prunable parameters")
    return footprint(groups, kept).prunable_params / before


class BudgetCounter:
    """Fast keep-fraction evaluation for searches (the same arithmetic as :func:`footprint`)."""

    def __init__(self, groups: Groups) -> None:
        self.groups = groups
        self.before = footprint(groups).prunable_params
        if self.before == 0:
            raise PruneError("the model has no prunable parameters")
        self.touched = sorted(prunable_modules(groups))

    def fraction(self, kept: Mapping[str, int]) -> float:
        """Fraction of prunable parameters kept."""
        sizes = module_sizes(self.groups, kept)
        return sum(_module_params(self.groups.modules[m], sizes[m]) for m in self.touched) / self.before

    def fraction_of(self, coefficients: Mapping[str, float]) -> float:
        """Fraction kept for coefficients per component."""
        return self.fraction(kept_from_coefficients(self.groups, coefficients))


class ByteCounter(BudgetCounter):
    """Weight bytes of a candidate whose Linears ``int8`` are quantized (same shapes as :func:`footprint`).

    ``fraction(kept)`` is the fraction of the prunable bytes kept (a budget measured in bytes, the
    same interface as :class:`BudgetCounter`); ``weight_bytes(kept)`` the whole model's weight
    bytes: the prunable modules at their precision plus everything no group touches at 4 bytes per
    parameter. For an ``nn.Module`` it equals :func:`prune.quantize.bytes_footprint` of the built candidate.
    """

    def __init__(self, groups: Groups, int8: set[str] | frozenset[str] = frozenset()) -> None:
        self.groups = groups
        self.int8 = frozenset(int8)
        self.touched = sorted(prunable_modules(groups))
        full = module_sizes(groups, {g.name: g.size for g in groups.groups})
        self.fixed = footprint(groups).bytes - sum(
            _module_params(groups.modules[m], full[m]) * BYTES_PER_PARAM for m in self.touched
        )
        self.before = self.prunable_bytes({g.name: g.size for g in groups.groups})
        if self.before == 0:
            raise PruneError("the model has no prunable parameters")

    def prunable_bytes(self, kept: Mapping[str, int]) -> int:
        """Bytes of the modules some group touches, each at its precision."""
        sizes = module_sizes(self.groups, kept)
        total = 0
        for m in self.touched:
            info, size = self.groups.modules[m], sizes[m]
            if info.kind == "linear" and m in self.int8:
                total += int8_bytes(size["in"], size["out"], info.bias)
            else:
                total += _module_params(info, size) * BYTES_PER_PARAM
        return total

    def fraction(self, kept: Mapping[str, int]) -> float:
        """Fraction of the prunable bytes kept."""
        return self.prunable_bytes(kept) / self.before

    def weight_bytes(self, kept: Mapping[str, int] | None = None) -> int:
        """The model's weight bytes with ``kept`` units per group (None: unpruned)."""
        return self.fixed + self.prunable_bytes(kept or {g.name: g.size for g in self.groups.groups})

    def smallest(self) -> int:
        """Weight bytes of the smallest model the groups allow (one unit per group)."""
        return self.weight_bytes({g.name: 1 for g in self.groups.groups})
