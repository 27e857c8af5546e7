"""The constraints a pruned candidate must meet, each judged with its numbers so a failure explains itself.

A candidate is *feasible* when every constraint holds:

- ``budget``: its fraction of the prunable parameters lies in the band [keep - tolerance, keep]
  (the budget is a cap);
- ``finite``: its objective is a finite number;
- ``floor``: its objective is at least ``floor`` (only when a floor is given);
- ``flash``: the model's weight bytes are at most ``flash_budget`` (only when a flash budget is
  given; see :mod:`prune.precision`);
- ``stability``: the spectral radius of the closed loop linearised at its equilibrium (only when a
  radius check is given), judged under a *stability mode*:

  - ``strict`` (the default): radius < 1, i.e. the equilibrium stays locally asymptotically stable;
  - ``relative``: radius < 1, or radius <= the unpruned controller's radius + ``stability_tolerance``
    (not less stable than the unpruned controller by more than the tolerance; the bound reported is
    max(1, unpruned + tolerance));
  - ``off``: the radius is measured and reported, never binding.

Why ``strict`` is the default: it is the only mode whose verdict is a guarantee (the linearisation
of a pruned controller that passes has a quadratic Lyapunov function), it is what prune() always
did, and a controller headed for a robot should not lose that guarantee silently. ``relative`` is
for controllers whose own margin is tiny (an actor with radius 0.989 leaves a pruned copy almost no
room): it trades the guarantee for "no worse than what you deploy today, up to the tolerance",
which the caller must ask for. ``STABILITY_TOLERANCE`` (0.01 in radius) is the default tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from prune.errors import PruneError
from prune.jsonable import jsonable

STABILITY_MODES = ("strict", "relative", "off")
STABILITY_TOLERANCE = 0.01  # radius a 'relative' candidate may lose against the unpruned controller
CONSTRAINT_NAMES = ("budget", "finite", "floor", "stability", "flash")


@dataclass
class Constraint:
    """One constraint judged on one candidate: holds or not, the value measured, the bound, in words."""

    name: str
    ok: bool
    value: float | None
    bound: float | list[float] | None  # budget: the band [low, high]; stability: the largest radius allowed
    detail: str

    def to_dict(self) -> dict:
        return jsonable(asdict(self))


@dataclass(frozen=True)
class Rules:
    """The constraints of one budgeted problem; :meth:`judge` applies them to a candidate's numbers."""

    keep: float
    tolerance: float = 0.01
    floor: float | None = None
    stability: str = "strict"
    stability_tolerance: float = STABILITY_TOLERANCE
    radius_before: float | None = None  # the unpruned controller's spectral radius (relative mode needs it)
    flash_budget: int | None = None  # the largest weight bytes allowed (None: no flash constraint)
    measure: str = "prunable parameters"  # what the budget band counts ("prunable weight bytes" for a budget in bytes)

    def __post_init__(self) -> None:
        if self.stability not in STABILITY_MODES:
            raise PruneError(f"stability mode must be one of {', '.join(STABILITY_MODES)}, got {self.stability!r}")
        if not self.stability_tolerance >= 0:
            raise PruneError(f"stability_tolerance must be >= 0, got {self.stability_tolerance}")

    @property
    def band(self) -> tuple[float, float]:
        """The budget band [keep - tolerance, keep] of kept fractions."""
        return self.keep - self.tolerance, self.keep

    def stability_bound(self) -> float | None:
        """The largest spectral radius the mode allows (strict: below 1; off: None)."""
        if self.stability == "off":
            return None
        if self.stability == "relative" and self.radius_before is not None:
            return max(1.0, self.radius_before + self.stability_tolerance)
        return 1.0

    def stable_enough(self, radius: float) -> bool:
        """Whether ``radius`` passes the stability mode (NaN never does, unless the mode is off)."""
        if self.stability == "off":
            return True
        if radius < 1.0:
            return True
        return (
            self.stability == "relative"
            and self.radius_before is not None
            and radius <= self.radius_before + self.stability_tolerance
        )

    def names(self) -> tuple[str, ...]:
        """The constraints these rules can judge (``flash`` only with a flash budget)."""
        return tuple(n for n in CONSTRAINT_NAMES if n != "flash" or self.flash_budget is not None)

    def judge(
        self, fraction: float, objective: float, radius: float | None, weight_bytes: int | None = None
    ) -> dict[str, Constraint]:
        """Every applicable constraint on a candidate that keeps ``fraction``, scores ``objective`` and stores ``weight_bytes``."""
        low, high = self.band
        ok = low - 1e-12 <= fraction <= high + 1e-12
        out = {
            "budget": Constraint(
                "budget",
                ok,
                fraction,
                [low, high],
                f"keeps {fraction:.4f} of {self.measure}, budget [{low:.4f}, {high}]",
            )
        }
        finite = math.isfinite(objective)
        out["finite"] = Constraint("finite", finite, objective, None, f"objective is {objective}")
        if self.floor is not None:
            out["floor"] = Constraint(
                "floor",
                finite and objective >= self.floor,
                objective,
                self.floor,
                f"objective {objective:.3f} {'below' if not objective >= self.floor else 'at or above'} the floor {self.floor}",
            )
        if radius is not None:
            out["stability"] = Constraint(
                "stability", self.stable_enough(radius), radius, self.stability_bound(), self.stability_detail(radius)
            )
        if self.flash_budget is not None and weight_bytes is not None:
            fits = weight_bytes <= self.flash_budget
            out["flash"] = Constraint(
                "flash",
                fits,
                weight_bytes,
                self.flash_budget,
                f"weights take {weight_bytes} bytes, flash_budget {self.flash_budget} bytes",
            )
        return out

    def stability_detail(self, radius: float) -> str:
        """The radius against its bound, with the margins before and after pruning."""
        bound = self.stability_bound()
        rule = {
            "strict": "must be < 1",
            "off": "not binding",
            "relative": (
                f"must be < 1 or <= unpruned + {self.stability_tolerance}"
                if self.radius_before is not None
                else "must be < 1 (unpruned radius unknown)"
            ),
        }[self.stability]
        before = (
            f"unpruned radius {self.radius_before:.4f} (margin {1.0 - self.radius_before:.4f})"
            if self.radius_before is not None
            else "unpruned radius not measured"
        )
        shown = f", bound {bound:.4f}" if bound is not None and self.stability == "relative" else ""
        return (
            f"closed loop spectral radius {radius:.4f} (margin {1.0 - radius:.4f}; {self.stability}: {rule}{shown}); "
            f"{before}"
        )

    def penalty(self, objective: float, constraints: Mapping[str, Constraint]) -> float:
        """What a failed floor or stability constraint subtracts from the objective a search climbs."""
        v = objective if math.isfinite(objective) else -1e12
        penalty = 0.0
        if self.floor is not None and v < self.floor:
            penalty += 10.0 * (self.floor - v)
        stab = constraints.get("stability")
        if stab is not None and not stab.ok and stab.value is not None and not math.isnan(stab.value):
            bound = self.stability_bound()
            penalty += 1e3 * (stab.value - (1.0 if bound is None else bound) + 0.01) + abs(v)
        return penalty


def failed(constraints: Mapping[str, Constraint]) -> list[Constraint]:
    """The constraints that do not hold, in the order of :data:`CONSTRAINT_NAMES`."""
    return [c for name in CONSTRAINT_NAMES if (c := constraints.get(name)) is not None and not c.ok]


def why(constraints: Mapping[str, Constraint]) -> str:
    """The failed constraints in words (empty when all hold)."""
    return "; ".join(f"{c.name}: {c.detail}" for c in failed(constraints))
