"""The search objective of ``--quantize integer``: the return of the candidate's full-integer twin, as a Cortex-M3 runs it.

For each candidate (a float model prune built), :class:`IntegerObjective` does what ``export --targets
cortex-m3`` does to the model it is given, then plays the result:

1. calibration states: the candidate's own closed loop, :data:`~tools.pipeline.export.PARITY_EPISODES`
   episodes from seed :data:`~tools.pipeline.export.VISIT_SEED` (export's visited states, same seeds);
2. :func:`export.build_int_model` on them: the integer model the firmware is generated from;
3. its exact host twin (:meth:`export.IntModel.act`, integers only) in the search's closed loop (the
   batched plant for Pendulum-v1, seeds 2000..): one return per episode, as prune takes them.

So the number the search maximises is the return the device gets on those seeds: lockstep HIL of the
exported firmware reproduces it per episode. prune sees an ordinary objective callable and knows
nothing of export. A candidate costs a closed loop in float (calibration), the integer build (six
clip percentiles tried) and a closed loop in integers: about 1.4 s for the unpruned 3-256-256-1
reference controller, less pruned; results are cached by the candidate's weights, so the unpruned
model (scored by prune, the early stop and the summary) and the returned one are built once.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from export import IntModel, build_int_model
from tools.errors import ToolsError
from tools.pipeline.export import PARITY_EPISODES, VISIT_SEED
from tools.plant.episodes import SEARCH_EPISODES, SEARCH_SEED, episode_seeds
from tools.plant.evaluate import closed_loop_return
from tools.plant.objectives import search_callables
from tools.plant.pendulum import ENV_ID
from tools.plant.rollouts import rollout_fast, rollout_vector

CACHE_SIZE = 256  # integer twins kept by weights (a few KB each pruned): prune's own cache is by units kept
INTEGER = "integer"  # the --quantize choice whose objective this is
INTEGER_TARGET = "cortex-m3"  # the integer-only target whose firmware this twin is


@dataclass
class IntegerTwin:
    """One candidate's integer model and its search returns (per episode), with the seconds they took."""

    model: IntModel
    returns: np.ndarray
    seconds: float


@dataclass
class IntegerObjective:
    """objective(model) = per-episode search returns of ``model``'s full-integer twin (calibrated as export does)."""

    env_id: str = ENV_ID
    episodes: int = SEARCH_EPISODES
    seed: int = SEARCH_SEED
    calibration_episodes: int = PARITY_EPISODES
    calibration_seed: int = VISIT_SEED
    builds: int = 0  # candidates calibrated, built and played here (cache misses)
    hits: int = 0  # calls answered from the cache
    seconds: float = 0.0  # spent in the builds and plays
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def __getstate__(self) -> dict:
        """Pickled for an executor's workers without the cache (each process keeps its own)."""
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()
        return state

    def __call__(self, model: nn.Module) -> np.ndarray:
        return self.twin(model).returns

    def twin(self, model: nn.Module) -> IntegerTwin:
        """The candidate's integer model and its search returns (cached by its weights)."""
        key = weights_key(model)
        hit = self._cache.get(key)
        if hit is not None:
            self.hits += 1
            self._cache.move_to_end(key)
            return hit
        start = time.perf_counter()
        int_model = build_int_model(model, self.calibration(model))
        returns = self.play(int_model)
        made = IntegerTwin(int_model, returns, time.perf_counter() - start)
        self.builds += 1
        self.seconds += made.seconds
        self._cache[key] = made
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return made

    def calibration(self, model: nn.Module) -> np.ndarray:
        """The states ``model`` visits in its own closed loop: export's calibration states (same episodes, seeds)."""
        _, visit_for = search_callables(self.env_id, self.calibration_episodes, self.calibration_seed)
        with torch.no_grad():
            return visit_for(self.calibration_episodes, self.calibration_seed)(model.eval()).numpy()

    def play(self, int_model: IntModel) -> np.ndarray:
        """Per-episode returns of the integer twin on the search's seeds (batched plant, or the vector env)."""
        seeds = episode_seeds(self.episodes, self.seed)
        if self.env_id == ENV_ID:
            return np.asarray(rollout_fast(int_model.act, seeds)[0], dtype=float)
        return np.asarray(rollout_vector(int_model.act, seeds, self.env_id)[0], dtype=float)

    @property
    def seconds_per_build(self) -> float | None:
        """Mean seconds one uncached candidate took here (calibration, integer build, closed loop)."""
        return self.seconds / self.builds if self.builds else None

    def to_dict(self) -> dict:
        """What the objective was, for the summary (JSON)."""
        return {
            "of": "integer twin",
            "target": INTEGER_TARGET,
            "env_id": self.env_id,
            "search_seeds": [self.seed, self.seed + self.episodes - 1],
            "calibration": {
                "what": "states the candidate visits in its own closed loop (export's parity/calibration states)",
                "episodes": self.calibration_episodes,
                "seeds": [self.calibration_seed, self.calibration_seed + self.calibration_episodes - 1],
            },
            "builds_here": self.builds,
            "cache_hits": self.hits,
            "seconds_per_build": self.seconds_per_build,
        }


def check_integer(quantize: str, flash_budget: int | None, scenarios: bool) -> None:
    """Refuse what ``--quantize integer`` cannot combine with (one line, before any work)."""
    if quantize != INTEGER:
        return
    if flash_budget is not None:
        raise ToolsError(
            "--quantize integer searches the full-integer model (every layer int8) at a --keep budget; "
            "--flash-budget belongs to --quantize off|int8|auto: drop it (the integer tables' bytes are reported)"
        )
    if scenarios:
        raise ToolsError("--quantize integer searches the integer twin on the nominal plant: drop --scenarios")


def weights_key(model: nn.Module) -> str:
    """A digest of the model's structure and every parameter and buffer: equal keys, equal integer twins."""
    h = hashlib.sha256(repr(model).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def integer_report(objective: IntegerObjective, before: nn.Module, after: nn.Module, judge_episodes: int) -> dict:
    """The summary's ``integer_twin``: both models' integer search returns, their int tables' bytes, and the judge.

    ``search_returns_after`` are the returns the search reported for the returned model (per episode,
    seeds ``search_seeds``): lockstep HIL of its ``cortex-m3`` export on those seeds gives the same.
    The judge (gymnasium, seeds 0..judge_episodes-1) plays the integer twins as the float models are judged.
    """
    twin_before, twin_after = objective.twin(before), objective.twin(after)
    report = {
        **objective.to_dict(),
        "objective_before": float(twin_before.returns.mean()),
        "objective_after": float(twin_after.returns.mean()),
        "search_returns_after": twin_after.returns.tolist(),
        "int_weight_bytes_before": twin_before.model.weight_bytes(),
        "int_weight_bytes_after": twin_after.model.weight_bytes(),
        "clip_percentile_after": twin_after.model.clip_percentile,
    }
    if judge_episodes:
        for label, twin in (("before", twin_before), ("after", twin_after)):
            report[f"return_{label}"] = closed_loop_return(
                twin.model.act, judge_episodes, 0, "gym", objective.env_id
            ).mean
    return report
