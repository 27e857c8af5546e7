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
  stability_tolerance=0.01, starts=(), population=None, radius_before=None) -> PruneResult``.
  ``objective(model) -> float | per-episode scores`` (higher is better; may offer
  ``objective.batch(models)``, see :mod:`prune.problem`); ``method`` in :data:`SEARCH_METHODS`
  (gd, grid, uniform, global, cmaes, tpe); ``radius_check(model) -> spectral radius`` turns on
  the stability constraint, judged under ``stability`` in :data:`STABILITY_MODES`
  (strict | relative | off; default strict, reason in :mod:`prune.constraints`).
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
from prune.problem import Start
from prune.search import SEARCH_METHODS, SearchResult
from prune.stability import Stability, stability
from prune.surgery import keep_indices, masked_copy, reconstruct, shrink, widths

__all__ = [
    "METRICS", "SEARCH_METHODS", "STABILITY_MODES", "STABILITY_TOLERANCE", "SUPPORTED", "Constraint", "Footprint", "FinetuneReport",
    "Group", "Groups", "PruneError", "PruneResult", "Rules", "SavedModel", "SearchResult", "Stability", "Start",
    "distill", "find_groups", "footprint", "keep_fraction", "keep_indices", "kept_from_coefficients", "load_program",
    "load_state_dict", "masked_copy", "prune", "prune_budgets", "reconstruct", "register_metric", "save_pruned", "score",
    "shrink", "sidecar_paths", "stability", "widths",
]
