"""--scenarios and --robust-objective: robustness in the search objective and in the judge (issue 17), one definition.

Off by default: without ``--scenarios`` every command searches and judges the nominal plant exactly as
before. With it, ``prune``/``bench``/``run`` search the aggregate (``--robust-objective``, default
mean) over the scenarios, and ``eval``/``prune``/``bench``/``run`` report nominal and robust figures
side by side.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tools.errors import ToolsError
from tools.plant.aggregate import AGGREGATES, Aggregate

if TYPE_CHECKING:
    from tools.plant.robust import Robustness


def aggregate(text: str) -> str:
    """argparse type of --robust-objective: mean, worst or cvar:ALPHA with ALPHA in (0, 1] (numpy only, no torch)."""
    try:
        return str(Aggregate.parse(text))
    except ToolsError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def add_robustness(p: argparse.ArgumentParser, search: bool = True) -> None:
    """--scenarios and --robust-objective (``search`` False: the judge only, as eval has no search)."""
    p.add_argument(
        "--scenarios",
        default=None,
        metavar="SET|NAME[,NAME]",
        help="judge (and search, where there is one) under plant scenarios off nominal: the set 'robust' (Pendulum-v1: "
        "reset_wide, push, push_large, heavy, long, friction, sensor_noise, delay; a MuJoCo env: reset_wide, push, "
        "heavy, friction, sensor_noise, delay) or a comma list of its names; nominal and robust figures are "
        "reported side by side (default: none, the nominal plant only)",
    )
    what = "the search optimises, and the judge reports," if search else "the judge reports"
    p.add_argument(
        "--robust-objective",
        type=aggregate,
        default=None,
        metavar="|".join(AGGREGATES),
        help=f"with --scenarios: what {what} over the scenarios' mean returns: mean, worst (the worst scenario) or "
        "cvar:ALPHA (the mean of the worst ALPHA fraction of them, 0 < ALPHA <= 1) (default mean)",
    )


def check_robustness_flags(args: argparse.Namespace) -> None:
    """Refuse --robust-objective without --scenarios (before any work)."""
    if getattr(args, "robust_objective", None) is not None and getattr(args, "scenarios", None) is None:
        raise ToolsError(f"--robust-objective {args.robust_objective}: needs --scenarios (a set or scenario names)")


def robustness_from_args(args: argparse.Namespace, env_id: str) -> Robustness | None:
    """The scenarios and aggregate the flags ask for on ``env_id``'s plant (None: nominal only); bad names name the flag."""
    check_robustness_flags(args)
    text = getattr(args, "scenarios", None)
    if text is None:
        return None
    from tools.plant.robust import Robustness  # deferred: the scenarios import torch and gymnasium
    from tools.plant.scenarios import select_scenarios

    try:
        scenarios = select_scenarios(text, env_id)
    except ToolsError as e:
        raise ToolsError(f"--scenarios {text}: {e}") from e
    return Robustness(scenarios, Aggregate.parse(args.robust_objective or "mean"))
