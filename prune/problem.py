"""The budgeted coefficient problem every search method shares: candidates built, judged, cached and counted.

Every candidate is built for real (units kept -> :func:`prune.surgery.shrink`) and judged by the
caller's objective and by the constraints of :mod:`prune.constraints` (budget band, finite
objective, floor, stability). Candidates are cached by units kept, since the objective is piecewise
constant in c; ``evaluations`` counts objective calls (a cached point costs none). An objective may
return one score per episode (fixed episodes): then a search keeps its start (the uniform point)
unless a candidate beats it by more than two paired standard errors (:meth:`Problem.selected`),
since among thousands of candidates the best mean is partly luck of the fixed episodes.

An objective may also offer a batch form, ``objective.batch(models) -> [score per model]`` (same
scores, in the same order, as calling it on each model): :meth:`Problem.evaluate_many` is the one
seam every search fans out through (grid chunks, gd's probe pairs and starting points, CMA-ES
generations, TPE batches) and hands the uncached candidates to it at once, e.g. to a plant that
simulates many controllers together or to workers in other processes (the models are handed over
as :func:`prune.portable.portable` makes them: they pickle). The results are judged in the order
given, one by one, exactly as without ``batch``: the cache, the evaluation counter, the
``max_evaluations`` cut-off, the guard and every result are the same either way.

A search may end before its budget when no candidate can do better (:meth:`Problem.stop_reason`):
a feasible candidate at the objective's ``ceiling`` (within :data:`CEILING_TOLERANCE`), or within
``stop_within`` of the unpruned model's objective (the caller's noise margin, e.g. its standard
error). The candidate that stops the search is judged and cached as any other; candidates a batch
evaluated after it are dropped unjudged, so a batched search stops where the one-by-one search does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from prune.budget import BudgetCounter, ByteCounter, check_keep, kept_from_coefficients
from prune.constraints import STABILITY_TOLERANCE, Constraint, Rules, failed, why
from prune.errors import PruneError
from prune.groups import Groups
from prune.jsonable import jsonable
from prune.modes import set_mode
from prune.portable import portable
from prune.quantize import quantize_modules
from prune.surgery import keep_indices, reconstruct, shrink

Objective = Callable[[nn.Module], "float | Sequence[float] | np.ndarray"]  # a number, or one score per episode
RadiusCheck = Callable[[nn.Module], float]  # spectral radius of the closed loop with this model
SIGNIFICANCE = 2.0  # standard errors a candidate must beat the search's start by (per-episode objectives only)
BEST_POINTS = 3  # feasible candidates a result lists as starting points for the next, smaller budget
CEILING_TOLERANCE = 1e-6  # relative: a candidate within 1e-6 * max(1, |ceiling|) of the ceiling has reached it
STOP_REASONS = (
    "ceiling",
    "within_noise",
    "max_evaluations",
    "converged",
)  # why a search stopped (SearchResult.stopped)


class SearchStopped(Exception):
    """Raised by :meth:`Problem.judge` when a candidate ends the search (caught by the search runner; not an error)."""


def objective_value(raw) -> tuple[float, np.ndarray | None]:
    """An objective's mean and, if it gave one score per episode, those scores."""
    arr = np.asarray(raw, dtype=float)
    if arr.ndim == 0:
        return float(arr), None
    if arr.ndim != 1 or arr.size == 0:
        raise PruneError(
            f"objective must return a number or a 1-D sequence of per-episode scores, got shape {arr.shape}"
        )
    return float(arr.mean()), arr


def batch_form(objective: Objective) -> Callable[[Sequence[nn.Module]], Sequence] | None:
    """The objective's ``batch(models)`` if it offers one (see module doc), else None."""
    batch = getattr(objective, "batch", None)
    return batch if callable(batch) else None


@dataclass
class Candidate:
    """One evaluated point: units kept per group, budget reached, objective, stability, verdict."""

    kept: dict[str, int]
    keep_fraction: float
    objective: float
    radius: float | None
    feasible: bool
    why_infeasible: str = ""
    samples: np.ndarray | None = field(default=None, repr=False)  # per-episode scores, when the objective gives them
    constraints: dict[str, Constraint] = field(default_factory=dict, repr=False)
    weight_bytes: int | None = None  # the candidate's weight bytes at its precision, when the problem counts bytes


@dataclass
class Start:
    """A point a search started from: where it came from (uniform, previous, random) and where it lies."""

    origin: str
    coefficients: dict[str, float]  # per component, after projection onto the budget
    kept: dict[str, int]


@dataclass
class SearchResult:
    """The best feasible candidate a method found, and what finding it cost."""

    method: str
    keep: float
    tolerance: float
    component_coefficients: dict[str, float]
    kept: dict[str, int]
    keep_fraction: float
    objective: float
    radius: float | None
    feasible: bool
    evaluations: int
    seconds: float
    history: list[float] = field(default_factory=list)  # best feasible objective after each evaluation
    metric_trials: dict[str, float] = field(default_factory=dict)  # metric='auto': uniform-point objective per metric
    best_seen: float = float(
        "nan"
    )  # highest feasible objective met; ``objective`` is the selected one (see Problem.selected)
    stability: str = "strict"  # the stability mode judged under (see prune.constraints)
    radius_before: float | None = None  # the unpruned controller's spectral radius, when a radius check is given
    constraints: dict[str, Constraint] = field(default_factory=dict)  # each constraint on the returned candidate
    why_infeasible: str = ""  # empty when feasible; else each failed constraint with its numbers
    failures: dict[str, int] = field(default_factory=dict)  # candidates that failed each constraint
    starts: list[Start] = field(default_factory=list)  # the points the search started from, in order
    best_points: list[dict[str, float]] = field(
        default_factory=list
    )  # best feasible candidates' coefficients per component
    stopped: str = "converged"  # why the search ended, one of STOP_REASONS (converged: the method ran to its own end)

    def coefficients(self, groups: Groups) -> dict[str, float]:
        """Fraction of units removed per group (what the budget really took from each)."""
        return {g.name: 1.0 - self.kept[g.name] / g.size for g in groups.groups}

    def to_dict(self) -> dict:
        """All fields as JSON-ready values (non-finite numbers as None)."""
        return jsonable(asdict(self))


class Problem:
    """A budgeted coefficient problem: builds, judges and caches candidates."""

    def __init__(
        self,
        model: nn.Module,
        groups: Groups,
        scores: Mapping[str, torch.Tensor],
        objective: Objective,
        keep: float,
        tolerance: float = 0.01,
        floor: float | None = None,
        radius_check: RadiusCheck | None = None,
        progress: tqdm | None = None,
        reconstruct_states: torch.Tensor | None = None,
        stability: str = "strict",
        stability_tolerance: float = STABILITY_TOLERANCE,
        radius_before: float | None = None,
        ceiling: float | None = None,
        stop_within: float | None = None,
        reference: float | None = None,
        quantized: Sequence[str] = (),
        bytes_counter: ByteCounter | None = None,
        flash_budget: int | None = None,
        budget_in_bytes: bool = False,
    ) -> None:
        if not groups.groups:
            raise PruneError("the model has no prunable groups (see Groups.excluded / Groups.protected)")
        if tolerance < 0:
            raise PruneError(f"tolerance must be >= 0, got {tolerance}")
        self.model, self.groups, self.scores, self.objective = model, groups, scores, objective
        self.keep, self.tolerance, self.floor, self.radius_check = check_keep(keep), tolerance, floor, radius_check
        if radius_check is not None and radius_before is None:
            radius_before = float(radius_check(model))  # the margin a failure is explained against
        if (flash_budget is not None or budget_in_bytes) and bytes_counter is None:
            raise PruneError("a flash budget or a budget in bytes needs a bytes_counter (prune.budget.ByteCounter)")
        self.rules = Rules(
            self.keep,
            tolerance,
            floor,
            stability,
            stability_tolerance,
            radius_before,
            flash_budget,
            "prunable weight bytes" if budget_in_bytes else "prunable parameters",
        )
        # the budget band's measure: parameters (the default) or weight bytes at the candidates' precision
        self.counter: BudgetCounter = (
            bytes_counter if budget_in_bytes and bytes_counter is not None else BudgetCounter(groups)
        )
        self.bytes_counter = bytes_counter
        self.quantized = tuple(
            quantized
        )  # Linears every candidate has in int8 (prune.quantize), after shrink and re-fit
        self.components = list(groups.components)
        self.cache: dict[tuple[int, ...], Candidate] = {}  # in evaluation order: also the evaluation log
        self.evaluations = 0
        self.best: Candidate | None = None
        self.history: list[float] = []
        self.starts: list[Start] = []
        self.progress = progress
        self.reconstruct_states = reconstruct_states  # re-fit layers that lost inputs on these states
        if ceiling is not None and not math.isfinite(ceiling):
            raise PruneError(f"ceiling must be a finite number, got {ceiling}")
        if stop_within is not None:
            if not (math.isfinite(stop_within) and stop_within >= 0):
                raise PruneError(f"stop_within must be a finite margin >= 0, got {stop_within}")
            if reference is None or not math.isfinite(reference):
                raise PruneError(
                    f"stop_within needs the unpruned model's finite objective as reference, got {reference}"
                )
        self.ceiling, self.stop_within, self.reference = ceiling, stop_within, reference
        self.stopped: str | None = None  # set when a candidate ended the search (see stop_reason)

    # -- coefficients <-> units --
    def kept_of(self, c: np.ndarray) -> dict[str, int]:
        return kept_from_coefficients(self.groups, dict(zip(self.components, np.clip(c, 0.0, 1.0).tolist())))

    def fraction(self, c: np.ndarray) -> float:
        return self.counter.fraction(self.kept_of(c))

    def within_budget(self, fraction: float) -> bool:
        # The budget is a cap: never above keep, at most `tolerance` below it.
        return self.keep - self.tolerance - 1e-12 <= fraction <= self.keep + 1e-12

    def project(self, c: np.ndarray) -> np.ndarray:
        """Shift all coefficients by one common t (then clip) to the largest fraction <= keep."""
        c = np.asarray(c, dtype=float)
        lo, hi = -1.0, 1.0
        if self.fraction(np.clip(c + hi, 0, 1)) > self.keep:
            smallest = self.fraction(np.ones_like(c))
            raise PruneError(
                f"budget keep={self.keep} is below the smallest model these groups allow "
                f"({smallest:.4f} of the prunable parameters, one unit per group)"
            )
        if self.fraction(np.clip(c + lo, 0, 1)) <= self.keep:
            return np.clip(c + lo, 0, 1)
        while hi - lo > 1e-9:  # units are discrete: 1e-9 in the shift is far below one unit of any group
            mid = 0.5 * (lo + hi)
            if self.fraction(np.clip(c + mid, 0, 1)) <= self.keep:
                hi = mid
            else:
                lo = mid
        return np.clip(c + hi, 0, 1)

    def uniform_point(self) -> np.ndarray:
        """The same coefficient for every component, as large a model as the budget allows."""
        return self.project(np.zeros(len(self.components)))

    def point_of(self, coefficients: Mapping[str, float]) -> np.ndarray:
        """Coefficients per component (e.g. another budget's best point) as a vector, projected onto this budget."""
        missing = [c for c in self.components if c not in coefficients]
        if missing:
            raise PruneError(
                f"starting point has no coefficient for component(s) {', '.join(missing)}; given: {', '.join(coefficients)}"
            )
        return self.project(np.clip(np.array([float(coefficients[c]) for c in self.components]), 0.0, 1.0))

    def note_start(self, origin: str, c: np.ndarray) -> np.ndarray:
        """Record that a search starts from ``c`` (already on the budget) and return it."""
        self.starts.append(
            Start(origin, dict(zip(self.components, np.asarray(c, dtype=float).tolist())), self.kept_of(c))
        )
        return c

    # -- judging --
    def key(self, kept: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(kept[g.name] for g in self.groups.groups)

    def build(self, kept: Mapping[str, int]) -> nn.Module:
        """The candidate model for ``kept`` units per group (re-fitted if the problem re-fits), in eval mode."""
        keep = keep_indices(self.scores, dict(kept))
        small = shrink(self.model, self.groups, keep)
        if self.reconstruct_states is not None:
            reconstruct(self.model, small, self.groups, keep, self.reconstruct_states)
        if self.quantized:
            quantize_modules(small, self.quantized, self.groups, inplace=True)
        set_mode(small, False)
        return small

    def judge(self, kept: Mapping[str, int], small: nn.Module, raw) -> Candidate:
        """Count one evaluation of ``small`` (objective gave ``raw``), judge it, cache it."""
        value, samples = objective_value(raw)
        self.evaluations += 1
        fraction = self.counter.fraction(kept)
        radius = float(self.radius_check(small)) if self.radius_check is not None else None
        weight_bytes = self.bytes_counter.weight_bytes(kept) if self.bytes_counter is not None else None
        constraints = self.rules.judge(fraction, value, radius, weight_bytes)
        verdict = why(constraints)
        cand = Candidate(dict(kept), fraction, value, radius, not verdict, verdict, samples, constraints, weight_bytes)
        self.cache[self.key(kept)] = cand
        if cand.feasible and (self.best is None or cand.objective > self.best.objective):
            self.best = cand
        self.history.append(self.best.objective if self.best else float("nan"))
        if self.progress is not None:
            self.progress.update(1)
            if self.best is not None:
                self.progress.set_postfix(best=f"{self.best.objective:.2f}")
        if cand.feasible and self.stopped is None and (reason := self.stop_reason(cand.objective)):
            self.stopped = reason
            raise SearchStopped(reason)
        return cand

    def stop_reason(self, objective: float) -> str | None:
        """Why a feasible candidate with this objective ends the search ('ceiling', 'within_noise'), or None."""
        if self.ceiling is not None and objective >= self.ceiling - CEILING_TOLERANCE * max(1.0, abs(self.ceiling)):
            return "ceiling"
        if (
            self.stop_within is not None
            and self.reference is not None
            and objective >= self.reference - self.stop_within
        ):
            return "within_noise"
        return None

    def evaluate_kept(self, kept: dict[str, int]) -> Candidate:
        """Judge one point (cached: no evaluation), through the same seam as a population (a batch of one)."""
        cand = self.evaluate_many([kept])[0]
        assert cand is not None  # no max_evaluations cut-off was asked
        return cand

    def evaluate_many(
        self, kepts: Sequence[dict[str, int]], max_evaluations: int | None = None
    ) -> list[Candidate | None]:
        """Judge a population in order: uncached points go to the objective's batch form at once, if it has one.

        Points past ``max_evaluations`` (counting evaluations already spent) are left out and come
        back as None; duplicates and cached points cost nothing. The batch form gets the candidates
        as :func:`prune.portable.portable` makes them (they pickle); its scores are judged in order,
        as the one-by-one path judges them, so a candidate that stops the search
        (:class:`SearchStopped`) leaves the rest of the batch unjudged and uncounted.
        """
        new: dict[tuple[int, ...], dict[str, int]] = {}
        for kept in kepts:
            key = self.key(kept)
            if key not in self.cache and key not in new:
                if max_evaluations is not None and self.evaluations + len(new) >= max_evaluations:
                    continue
                new[key] = kept
        batch = batch_form(self.objective)
        if new and batch is not None:
            models = [self.build(k) for k in new.values()]
            with torch.no_grad():
                raws = list(batch([portable(m) for m in models]))
            if len(raws) != len(models):
                raise PruneError(f"objective.batch returned {len(raws)} results for {len(models)} models")
            for kept, small, raw in zip(new.values(), models, raws):
                self.judge(kept, small, raw)
        else:
            for kept in new.values():
                small = self.build(kept)
                with torch.no_grad():
                    raw = self.objective(small)
                self.judge(kept, small, raw)
        return [self.cache.get(self.key(k)) for k in kepts]

    def penalised(self, cand: Candidate) -> float:
        """A candidate's objective with constraint violations penalised (what a search climbs)."""
        v = cand.objective if math.isfinite(cand.objective) else -1e12
        return v - self.rules.penalty(cand.objective, cand.constraints)

    def value(self, c: np.ndarray) -> float:
        """Objective with constraint violations penalised (what gradient ascent climbs)."""
        return self.penalised(self.evaluate_kept(self.kept_of(c)))

    def selected(self) -> Candidate | None:
        """The candidate to return: the best feasible one, guarded against the winner's curse.

        With per-episode scores, a candidate replaces the search's start (its first candidate: the
        uniform point for gd and the grid) only if its paired improvement over the start is larger
        than SIGNIFICANCE standard errors; among those the largest lower bound wins. A search over
        many candidates otherwise picks up differences the fixed search episodes alone produce,
        which do not carry over to other episodes. Without per-episode scores: the best mean.
        """
        start = next(iter(self.cache.values()), None)
        if self.best is None or start is None or not start.feasible or start.samples is None:
            return self.best
        chosen, bound = start, 0.0
        for cand in self.cache.values():
            if (
                not cand.feasible
                or cand.samples is None
                or len(cand.samples) != len(start.samples)
                or len(start.samples) < 2
            ):
                continue
            d = cand.samples - start.samples
            lower = float(d.mean() - SIGNIFICANCE * d.std(ddof=1) / math.sqrt(len(d)))
            if lower > bound:
                chosen, bound = cand, lower
        return chosen

    def component_coefficients(self, kept: Mapping[str, int]) -> dict[str, float]:
        """Fraction of units removed per component for ``kept`` units per group."""
        coeffs = {comp: 0.0 for comp in self.components}
        for comp, names in self.groups.components.items():
            sizes = [self.groups[n].size for n in names]
            coeffs[comp] = 1.0 - sum(kept[n] for n in names) / sum(sizes)
        return coeffs

    def explain(self, best: Candidate) -> str:
        """Why nothing was feasible: the returned candidate's failed constraints and failure counts over all candidates."""
        counts = self.failure_counts()
        tally = ", ".join(f"{name} {n}/{len(self.cache)}" for name, n in counts.items() if n)
        return (
            f"no feasible candidate among {len(self.cache)} evaluated; the best one found (objective {best.objective:.4g}) "
            f"fails {why(best.constraints)}; candidates failing each constraint: {tally}"
        )

    def failure_counts(self) -> dict[str, int]:
        """How many cached candidates fail each constraint."""
        counts = {name: 0 for name in self.rules.names()}
        for cand in self.cache.values():
            for c in failed(cand.constraints):
                counts[c.name] += 1
        return counts

    def result(self, method: str, seconds: float, c: np.ndarray | None = None) -> SearchResult:
        best = self.selected()
        if best is None:  # nothing feasible: report the highest objective met, honestly marked infeasible
            if not self.cache:
                raise PruneError(
                    f"{method}: no candidate within the budget [{self.keep - self.tolerance:.4f}, {self.keep}] was evaluated"
                )
            best = max(
                self.cache.values(), key=lambda cand: cand.objective if math.isfinite(cand.objective) else -math.inf
            )
        ranked = sorted((cand for cand in self.cache.values() if cand.feasible), key=lambda cand: -cand.objective)
        points = [self.component_coefficients(cand.kept) for cand in ([best] if best.feasible else []) + ranked]
        unique = [p for i, p in enumerate(points) if p not in points[:i]][:BEST_POINTS]
        return SearchResult(
            method,
            self.keep,
            self.tolerance,
            self.component_coefficients(best.kept),
            best.kept,
            best.keep_fraction,
            best.objective,
            best.radius,
            best.feasible,
            self.evaluations,
            seconds,
            list(self.history),
            best_seen=self.best.objective if self.best is not None else float("nan"),
            stability=self.rules.stability,
            radius_before=self.rules.radius_before,
            constraints=dict(best.constraints),
            why_infeasible="" if best.feasible else self.explain(best),
            failures=self.failure_counts(),
            starts=list(self.starts),
            best_points=unique,
        )
