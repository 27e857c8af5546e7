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
    p.add_argument("--controller", type=Path, default=None, metavar="PATH",
                   help="controller file (default: the bundled Pendulum-v1 reference controller)")


def add_seed(p: argparse.ArgumentParser, default: int = 0) -> None:
    p.add_argument("--seed", type=non_negative_int, default=default,
                   help=f"seed of every random choice; episode i starts from gymnasium's reset(seed=SEED+i) (default {default})")


def add_episodes(p: argparse.ArgumentParser, default: int = 100) -> None:
    p.add_argument("--episodes", type=positive_int, default=default, help=f"closed-loop episodes (default {default})")
