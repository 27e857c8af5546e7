"""Flags shared by several subcommands, defined once so they read the same everywhere."""

from __future__ import annotations

import argparse
from pathlib import Path


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def add_controller(p: argparse.ArgumentParser) -> None:
    from tools.controller_formats import FORMATS

    p.add_argument("--controller", type=Path, default=None, metavar="PATH",
                   help="controller file (default: the bundled Pendulum-v1 reference controller); also TorchScript, "
                        "torch.export .pt2, a state dict (with --factory), ONNX or a stable-baselines3 zip")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="format of --controller (default: detected from the file)")
    p.add_argument("--env", default=None, metavar="ENV_ID",
                   help="gymnasium env with Box spaces the controller is for; gives a foreign file its sizes and "
                        "bounds (default Pendulum-v1)")
    p.add_argument("--factory", default=None, metavar="package.module:function",
                   help="for a state dict: a function returning the untrained nn.Module it fits")
    p.add_argument("--clip-actions", action="store_true",
                   help="accept a foreign controller whose actions leave the env's bounds: clip them (host and device alike)")


def controller_from_args(args: argparse.Namespace):
    """The controller the flags of add_controller name (tools.controller.load_controller)."""
    from tools.controller import load_controller

    return load_controller(args.controller, getattr(args, "format", None), getattr(args, "env", None),
                           getattr(args, "factory", None), getattr(args, "clip_actions", False))


def add_seed(p: argparse.ArgumentParser, default: int = 0) -> None:
    p.add_argument("--seed", type=non_negative_int, default=default,
                   help=f"seed of every random choice; episode i starts from gymnasium's reset(seed=SEED+i) (default {default})")


def add_episodes(p: argparse.ArgumentParser, default: int = 100) -> None:
    p.add_argument("--episodes", type=positive_int, default=default, help=f"closed-loop episodes (default {default})")
