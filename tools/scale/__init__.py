"""tools/scale: the same work fanned out, here or on a Ray cluster, with the same results.

- :mod:`tools.scale.executor`: the seam. ``make_executor("local" | "ray", address)``; an
  :class:`Executor` maps a function over work items in order (``LocalExecutor`` in this process,
  ``RayExecutor`` on a cluster at ``--ray-address`` / ``RAY_ADDRESS`` or a local Ray instance).
- :mod:`tools.scale.objective`: ``batched(objective, executor)``, the objective whose ``batch`` prune's
  searches hand each batch of candidates to.
- :mod:`tools.scale.cells`: bench cells (method x budget x seed x target) run through an executor.
- :mod:`tools.scale.farm`: HIL episodes across a farm of boards (a TOML file), one Ray actor per
  board; a board that dies is taken out and its episode rerun on another board of its target.

Ray is optional (``prune-and-export[ray]``) and imported only when a Ray executor or a farm runs.
"""

from tools.scale.cells import Cell, run_cells, sweep
from tools.scale.errors import ScaleError
from tools.scale.executor import EXECUTORS, Executor, LocalExecutor, RayExecutor, make_executor
from tools.scale.farm import Board, Episode, Farm, FarmRun, Rerun, parse_farm, read_farm, run_on_farm
from tools.scale.objective import BatchedObjective, batched

__all__ = [
    "EXECUTORS",
    "BatchedObjective",
    "Board",
    "Cell",
    "Episode",
    "Executor",
    "Farm",
    "FarmRun",
    "LocalExecutor",
    "RayExecutor",
    "Rerun",
    "ScaleError",
    "batched",
    "make_executor",
    "parse_farm",
    "read_farm",
    "run_cells",
    "run_on_farm",
    "sweep",
]
