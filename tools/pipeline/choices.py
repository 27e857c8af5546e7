"""The choices the pipeline offers: pruning methods and metrics, bench budgets, HIL modes.

Plain Python, no torch: the command line lists them in --help and checks flags against them before
any heavy import.
"""

from __future__ import annotations

METHODS = ("gd", "grid", "uniform-l1", "uniform-l2", "random", "global", "cmaes", "tpe")
METRICS = ("auto", "l1", "l2", "random", "activation", "contribution")
# method -> (search method, importance metric it fixes, or None when the metric argument decides)
METHOD_PLAN = {
    "gd": ("gd", None),
    "grid": ("grid", None),
    "global": ("global", None),
    "uniform-l1": ("uniform", "l1"),
    "uniform-l2": ("uniform", "l2"),
    "random": ("uniform", "random"),
    "cmaes": ("cmaes", None),
    "tpe": ("tpe", None),  # library optimizers (cma, optuna) on the same problem
}
# The default --method of prune, run and bench: TPE, the winner of the search bench (docs/search_bench.md: best on
# every hard row, +0.24 to +105 over gd; gd ahead on two easy rows by 0.01-0.04). gd, the paper's method, stays.
DEFAULT_METHOD = "tpe"
DEFAULT_METRIC = "auto"  # the metric whose uniform point scores best on the objective (prune.api.choose_metric)
SWEEP = (0.5, 0.25, 0.1, 0.05)  # budgets of bench --sweep (fractions of the prunable parameters kept)
HIL_MODES = ("lockstep", "free")
MAX_RATE_HZ = 1000.0  # hil free mode: the fastest loop offered (host timer, pipe round trip and plant step per tick)
STABILITY_MODES = (
    "strict",
    "relative",
    "off",
)  # prune.STABILITY_MODES, here so --help needs no torch (a test keeps them equal)
STABILITY_TOLERANCE = 0.01  # prune.STABILITY_TOLERANCE, likewise
EXECUTORS = ("local", "ray")  # tools.scale.EXECUTORS, likewise (--executor)
