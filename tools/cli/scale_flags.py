"""--executor and --ray-address (issue 18): where a command's fan-out runs, defined once for prune, bench and export."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from tools.errors import ToolsError
from tools.pipeline.choices import EXECUTORS

if TYPE_CHECKING:
    from tools.scale import Executor


def add_executor(p: argparse.ArgumentParser, what: str) -> None:
    """--executor local|ray and --ray-address; ``what`` says what fans out (in the help)."""
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help=f"where {what}: local (this process, the default) or ray (a Ray "
        "cluster: --ray-address, else RAY_ADDRESS, else a Ray instance started here); same result either way",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="--executor ray: the cluster to use (auto, HOST:PORT or ray://HOST:PORT)",
    )


def check_executor_flags(args: argparse.Namespace) -> None:
    """Refuse --ray-address without --executor ray, and a cluster address nothing answers at (before any work)."""
    if getattr(args, "ray_address", None) and getattr(args, "executor", "local") != "ray":
        raise ToolsError(f"--ray-address {args.ray_address}: only with --executor ray")
    address = getattr(args, "ray_address", None) or os.environ.get("RAY_ADDRESS")
    if getattr(args, "executor", "local") == "ray" and address:
        from tools.scale.cluster import check_reachable  # deferred: tools.scale imports torch

        check_reachable(address)


def executor_from_args(args: argparse.Namespace) -> Executor | None:
    """The executor the flags name; None for local (the caller runs its work in this process, as before)."""
    check_executor_flags(args)
    if getattr(args, "executor", "local") == "local":
        return None
    from tools.scale import make_executor  # deferred: Ray is imported only when asked for

    return make_executor(args.executor, args.ray_address)
