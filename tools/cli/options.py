"""Flags shared by several subcommands, defined once so they read the same everywhere (argparse only, no torch)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from targets import TargetError, parse_ssh_url
from tools.controllers.source import FORMATS, ControllerSource
from tools.errors import ToolsError

if TYPE_CHECKING:
    from tools.controllers.native import Controller


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """argparse type: a fraction in (0, 1]."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text}")
    return value


def fractions(text: str) -> list[float]:
    """argparse type: one fraction in (0, 1] or a comma-separated list of distinct ones."""
    values = [fraction(part.strip()) for part in text.split(",")]
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"repeated budget in {text}")
    return values


def finite_float(text: str) -> float:
    """argparse type: a finite number (not nan or inf)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def runner_name(text: str) -> str:
    """argparse type: auto, native, qemu or ssh://user@host[:port][?...] (validated by targets' own ssh URL parser)."""
    if text in ("native", "qemu", "auto"):
        return text
    if text.startswith("ssh://"):
        try:
            parse_ssh_url(text)
        except TargetError as e:
            raise argparse.ArgumentTypeError(str(e)) from e
        return text
    raise argparse.ArgumentTypeError(f"expected auto, native, qemu or ssh://user@host[:port], got {text!r}")


def add_controller(p: argparse.ArgumentParser) -> None:
    """--controller and the flags that say how to read it (--format, --env, --factory, --clip-actions, --obs-norm)."""
    p.add_argument(
        "--controller",
        type=Path,
        default=None,
        metavar="PATH",
        help="controller file (default: the bundled Pendulum-v1 reference controller); also TorchScript, "
        "torch.export .pt2, a state dict (with --factory), ONNX or a stable-baselines3 zip",
    )
    p.add_argument(
        "--format", choices=FORMATS, default=None, help="format of --controller (default: detected from the file)"
    )
    p.add_argument(
        "--env",
        default=None,
        metavar="ENV_ID",
        help="gymnasium env with Box spaces the controller is for; gives a foreign file its sizes and "
        "bounds (default Pendulum-v1)",
    )
    p.add_argument(
        "--factory",
        default=None,
        metavar="package.module:function",
        help="for a state dict: a function returning the untrained nn.Module it fits",
    )
    p.add_argument(
        "--clip-actions",
        action="store_true",
        help="accept a foreign controller whose actions leave the env's bounds: clip them (host and device alike)",
    )
    p.add_argument(
        "--obs-norm",
        type=Path,
        default=None,
        metavar="FILE",
        help="observation statistics a foreign controller was trained with (VecNormalize .pkl, or .npz/.json "
        "with mean, var[, clip_obs, epsilon]); they become the graph's first ops, so the device takes "
        "raw observations (an SB3 zip's vecnormalize.pkl beside it is found without this)",
    )


def source_from_args(args: argparse.Namespace) -> ControllerSource:
    """The controller file the flags of add_controller name, and how to read it."""
    return ControllerSource(
        args.controller,
        getattr(args, "format", None),
        getattr(args, "env", None),
        getattr(args, "factory", None),
        getattr(args, "clip_actions", False),
        getattr(args, "obs_norm", None),
    )


def controller_from_args(args: argparse.Namespace) -> Controller:
    """The controller the flags of add_controller name, loaded (call it from a command's run)."""
    # Deferred: loading imports torch, which --help and a mistyped flag must not pay for.
    from tools.controllers.load import load_source

    controller = load_source(source_from_args(args))
    for note in controller.architecture.get(
        "notes", []
    ):  # e.g. a PPO zip running on raw observations: said, one line each
        print(f"note: {note}", file=sys.stderr)
    return controller


def add_seed(p: argparse.ArgumentParser, default: int = 0) -> None:
    """--seed."""
    p.add_argument(
        "--seed",
        type=non_negative_int,
        default=default,
        help=f"seed of every random choice; episode i starts from gymnasium's reset(seed=SEED+i) (default {default})",
    )


def add_episodes(p: argparse.ArgumentParser, default: int = 100) -> None:
    """--episodes."""
    p.add_argument("--episodes", type=positive_int, default=default, help=f"closed-loop episodes (default {default})")


# --- precision flags (--quantize, --flash-budget): prune, run and bench ---------------------------------------

QUANTIZE_CHOICES = ("off", "int8", "auto")  # prune.PRECISIONS, spelled here so --help needs no torch
INTEGER = "integer"  # tools.pipeline.integer_objective.INTEGER: the search judges the full-integer twin
BYTE_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}


def byte_size(text: str) -> int:
    """argparse type: a positive number of bytes, optionally with a k/K (1024) or M (1024^2) suffix and a trailing B."""
    raw = text.strip()
    body = raw.removesuffix("B").removesuffix("b") if raw[-1:] in ("B", "b") else raw
    unit = body[-1:].lower() if body[-1:].isalpha() else ""
    number = body[:-1] if unit else body
    if unit not in BYTE_UNITS or not (number.isascii() and number.isdigit()) or int(number) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of bytes such as 65536, 64k or 1M, got {text!r}")
    return int(number) * BYTE_UNITS[unit]


def add_quantize(p: argparse.ArgumentParser, bytes_only: bool = True, integer: bool = False) -> None:
    """--quantize and --flash-budget: the weights' precision as part of the search, under a memory budget in bytes.

    ``bytes_only``: the command prunes to the flash budget alone when no --keep is given (prune); else the
    budget is one more constraint on each --keep budget (bench, run). ``integer``: offer ``--quantize integer``.
    """
    p.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES + ((INTEGER,) if integer else ()),
        default="off",
        help="weight precision: off (float32, the default), int8 (weight-only int8, per-output-channel scales, "
        "for every component after the search; the objective and constraints are judged again on the int8 "
        "model), auto (each component float or int8, chosen by the same objective under --flash-budget: "
        "components ranked by objective lost per byte saved, each prefix of that ranking searched)"
        + (
            ", integer (the search maximises the return of each candidate's full-integer twin, calibrated as "
            "'export --targets cortex-m3' calibrates it: the return the FPU-less Cortex-M3 gets; not with "
            "--flash-budget)"
            if integer
            else ""
        ),
    )
    p.add_argument(
        "--flash-budget",
        type=byte_size,
        default=None,
        metavar="BYTES",
        help="cap on the controller's weight bytes (e.g. 65536, 64k, 1M; k = 1024): 'the best controller that "
        "fits' (needed by --quantize auto); "
        + (
            "without --keep the budget is in bytes only"
            if bytes_only
            else "one more constraint every pruned model of each --keep budget must meet"
        ),
    )


def check_quantize(quantize: str, flash_budget: int | None) -> None:
    """Refuse --quantize auto without --flash-budget (before any work)."""
    if quantize == "auto" and flash_budget is None:
        raise ToolsError(
            "--quantize auto chooses float or int8 per component under a memory budget: give --flash-budget (e.g. 64k)"
        )
