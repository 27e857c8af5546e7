"""``prune-and-export targets``: not built yet (see the open issues)."""

from __future__ import annotations

import argparse

from rich.console import Console

from tools.errors import ToolsError

HELP = "targets (not built yet)"


def configure(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, console: Console) -> dict:
    raise ToolsError("'targets' is not built yet")
