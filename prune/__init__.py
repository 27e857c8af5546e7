"""prune/: component-aware structured pruning of torch models with soft coefficients (pure torch).

    groups = find_groups(model, example_input)
    result = prune(model, groups, keep=0.25, objective=my_objective, method="gd")
    result.model  # a smaller dense model of the same class

After Sundaram et al. (2025), "Application-Specific Component-Aware Structured Pruning of Deep
Neural Networks in Control via Soft Coefficient Optimization".

The API, in short (every function has type hints and a docstring):

- ``find_groups(model, example_input, components=None, ...) -> Groups``: what can be pruned. ``model``
  is an ``nn.Module`` (traced with ``torch.fx.symbolic_trace``) or a ``torch.fx.GraphModule`` read
  as it is: a symbolic trace, ``torch.export.export(...).module()`` (ATen ops, core ATen too) or
  onnx2torch's output (its own modules). The ops followed are listed in :mod:`prune.ops`
  (``SUPPORTED``); residual sums and per-feature constants couple dimensions into one group
  (``Group.producers``, ``Group.couplings``); anything else is left out (``Groups.excluded``) or,
  with ``strict=True``, refused naming the node, its op and the supported set. ``shrink`` keeps a
  GraphModule a GraphModule (smaller submodules or sliced graph tensors, graph recompiled).
- ``prune(model, groups, keep, objective, method="gd", metric="l1", states=None, seed=0,
  tolerance=0.01, floor=None, radius_check=None, resolution=0.1, max_evaluations=60,
  gradient="spsa", reconstruct=False, finetune=None, progress=False, stability="strict",
  stability_tolerance=0.01, starts=(), population=None, radius_before=None, ceiling=None,
  stop_within=None, precision="off", flash_budget=None) -> PruneResult``.
  ``objective(model) -> float | per-episode scores`` (higher is better; may offer
  ``objective.batch(models)``, the contract below); ``method`` in :data:`SEARCH_METHODS`
  (gd, grid, uniform, global, cmaes, tpe); ``radius_check(model) -> spectral radius`` turns on
  the stability constraint, judged under ``stability`` in :data:`STABILITY_MODES`
  (strict | relative | off; default strict, reason in :mod:`prune.constraints`).
  Early stop: a feasible candidate whose objective reaches ``ceiling`` (the best there is, e.g. an
  env's maximum return; within a relative 1e-6) or comes within ``stop_within`` of the unpruned
  model's objective (a noise margin, e.g. its standard error) ends the search;
  ``result.search.stopped`` / ``to_dict()["stopped"]`` is one of :data:`STOP_REASONS`:
  ceiling | within_noise | max_evaluations (a budgeted method, gd/cmaes/tpe, spent them all) |
  converged (the method ended on its own). Both None (default): no early stop, results as before.
- Weight-only int8 (:mod:`prune.quantize`, the contract an exporter and a device reproduce, in its
  module doc): ``Int8Linear`` (``weight_q`` int8 [out, in], ``scale`` float32 [out], ``bias``
  float32; ``y = F.linear(x, weight_q.to(float32)) * scale + bias``), ``quantize(model,
  components=None, groups=None) -> model`` (a copy; every nn.Linear, or the Linears of the named
  components), ``quantize_weight``, ``dequantized_error``, ``bytes_footprint(model)`` (4 B per float
  parameter, 1 B per code, 4 B per scale). ``prune(..., precision="int8"|"auto", flash_budget=bytes)``
  searches the precision too (:mod:`prune.precision`; ``keep=None``: a budget in bytes only);
  ``result.precision`` ({component: "float"|"int8"}), ``result.weight_bytes`` and
  ``to_dict()["precision" | "weight_bytes" | "flash_budget" | "precision_search"]`` say what was
  chosen and why (keys present only when precision or a flash budget was asked).
- ``prune_budgets(model, groups, keeps, objective, method="gd", ...same options...) -> list[PruneResult]``:
  budgets solved largest first, each starting from the previous budget's best points
  (:mod:`prune.continuation`).
- ``PruneResult``: ``.model``, ``.search`` (a :class:`SearchResult`: kept units, objective,
  evaluations, ``history``, ``constraints``, ``why_infeasible``, ``failures``, ``starts``,
  ``best_points``), ``.feasible`` / ``.constraints`` (of the returned model, after the fine-tune
  decision), ``.finetune_kept``, ``.why_infeasible``, ``.require_feasible()`` (raises a
  :class:`PruneError` naming each failed constraint with its numbers), ``.to_dict()`` (JSON-ready,
  non-finite numbers as None; keys include ``feasible``, ``constraints: {name: {ok, value, bound,
  detail}}``, ``why_infeasible``, ``finetune_kept``, ``stability_mode``, ``radius_before``,
  ``radius_after``, ``constraint_failures``, ``starts``).
- ``Constraint`` (one judged constraint: name, ok, value, bound, detail) and ``Rules`` (the
  constraints of one problem) from :mod:`prune.constraints`.

The batch contract (the one fan-out seam of every search, :meth:`prune.problem.Problem.evaluate_many`):
an objective may carry ``objective.batch(models: list[nn.Module]) -> Sequence[score]``.

- It returns one score per model, **in the order given**, each exactly what ``objective(model)``
  returns for that model (a number or the per-episode scores), deterministically: the search
  judges the scores in order, one by one, as without ``batch``, so the candidates, the cache, the
  evaluation counter, the ``max_evaluations`` cut-off, the winner's-curse guard, the early stop
  and the whole ``PruneResult`` are the same with or without it for the same seed.
- It is handed the uncached candidates of one fan-out: grid points (chunks of
  ``prune.search.GRID_CHUNK``), gd's starting points, a run's start with its first gradient's
  probes, each gradient's probes (SPSA's + and - pair, fd's 2K points), a CMA-ES generation, a
  TPE batch (``population``). Sizes vary from 1 up; it is called under ``torch.no_grad()`` with
  candidates in eval mode.
- It may evaluate the models anywhere, e.g. in other processes (a Ray-backed wrapper lives in
  tools/): the models are sent as they are, and they pickle (``pickle`` and ``cloudpickle``):
  an ``nn.Module`` or a traced / onnx2torch GraphModule as built, a torch.export module as a plain
  GraphModule of the same graph (:func:`portable`, which the caller may also apply to the
  unpruned model). Scores it computes for candidates after one that stops the search are dropped.
"""

from prune.api import PruneResult, prune
from prune.budget import Footprint, footprint, keep_fraction, kept_from_coefficients
from prune.constraints import STABILITY_MODES, STABILITY_TOLERANCE, Constraint, Rules
from prune.continuation import prune_budgets
from prune.errors import PruneError
from prune.finetune import FinetuneReport, distill
from prune.groups import Group, Groups, find_groups
from prune.importance import METRICS, register_metric, score
from prune.io import SavedModel, load_program, load_state_dict, save_pruned, sidecar_paths
from prune.ops import SUPPORTED
from prune.portable import portable
from prune.precision import PRECISIONS, PrecisionReport
from prune.problem import STOP_REASONS, Start
from prune.quantize import Int8Linear, bytes_footprint, component_linears, dequantized_error, quantize, quantize_weight
from prune.search import SEARCH_METHODS, SearchResult
from prune.stability import Stability, stability
from prune.surgery import keep_indices, masked_copy, reconstruct, shrink, widths

__all__ = [
    "METRICS",
    "PRECISIONS",
    "SEARCH_METHODS",
    "STABILITY_MODES",
    "STABILITY_TOLERANCE",
    "STOP_REASONS",
    "SUPPORTED",
    "Constraint",
    "Footprint",
    "FinetuneReport",
    "Group",
    "Groups",
    "Int8Linear",
    "PrecisionReport",
    "PruneError",
    "PruneResult",
    "Rules",
    "SavedModel",
    "SearchResult",
    "Stability",
    "Start",
    "bytes_footprint",
    "component_linears",
    "dequantized_error",
    "distill",
    "find_groups",
    "footprint",
    "keep_fraction",
    "keep_indices",
    "kept_from_coefficients",
    "load_program",
    "load_state_dict",
    "masked_copy",
    "portable",
    "prune",
    "prune_budgets",
    "quantize",
    "quantize_weight",
    "reconstruct",
    "register_metric",
    "save_pruned",
    "score",
    "shrink",
    "sidecar_paths",
    "stability",
    "widths",
]
