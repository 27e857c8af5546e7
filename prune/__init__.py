"""prune/: component-aware structured pruning of torch models with soft coefficients (pure torch).

    groups = find_groups(model, example_input)
    result = prune(model, groups, keep=0.25, objective=my_objective, method="gd")
    result.model  # a smaller dense model of the same class

After Sundaram et al. (2025), "Application-Specific Component-Aware Structured Pruning of Deep
Neural Networks in Control via Soft Coefficient Optimization".
"""

from prune.api import PruneResult, prune
from prune.budget import Footprint, footprint, keep_fraction, kept_from_coefficients
from prune.errors import PruneError
from prune.finetune import FinetuneReport, distill
from prune.groups import Group, Groups, find_groups
from prune.importance import METRICS, register_metric, score
from prune.io import SavedModel, load_program, load_state_dict, save_pruned, sidecar_paths
from prune.search import SEARCH_METHODS, SearchResult
from prune.stability import Stability, stability
from prune.surgery import keep_indices, masked_copy, reconstruct, shrink, widths

__all__ = [
    "METRICS", "SEARCH_METHODS", "Footprint", "FinetuneReport", "Group", "Groups", "PruneError", "PruneResult",
    "SavedModel", "SearchResult", "Stability", "distill", "find_groups", "footprint", "keep_fraction",
    "keep_indices", "kept_from_coefficients", "load_program", "load_state_dict", "masked_copy", "prune", "reconstruct",
    "register_metric", "save_pruned", "score", "shrink", "sidecar_paths", "stability", "widths",
]
