"""The choices the pipeline offers: pruning methods and metrics, bench budgets, HIL modes.

Plain Python, no torch: the command line lists them in --help and checks flags against them before
any heavy import.
"""

from __future__ import annotations

METHODS = ("gd", "grid", "uniform-l1", "uniform-l2", "random", "global")
METRICS = ("auto", "l1", "l2", "random", "activation", "contribution")
# method -> (search method, importance metric it fixes, or None when the metric argument decides)
METHOD_PLAN = {
    "gd": ("gd", None), "grid": ("grid", None), "global": ("global", None),
    "uniform-l1": ("uniform", "l1"), "uniform-l2": ("uniform", "l2"), "random": ("uniform", "random"),
}
DEFAULT_METRIC = "auto"  # the metric whose uniform point scores best on the objective (prune.api.choose_metric)
SWEEP = (0.5, 0.25, 0.1, 0.05)  # budgets of bench --sweep (fractions of the prunable parameters kept)
HIL_MODES = ("lockstep", "free")
