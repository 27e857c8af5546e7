"""``prune-and-export hil``: not built yet (see the open issues)."""

from __future__ import annotations

import argparse

from rich.console import Console

from tools.errors import ToolsError

HELP = "hil (not built yet)"


def configure(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, console: Console) -> dict:
    raise ToolsError("'hil' is not built yet")
