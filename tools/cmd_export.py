"""``prune-and-export export``: not built yet (see the open issues)."""

from __future__ import annotations

import argparse

from rich.console import Console

from tools.errors import ToolsError

HELP = "export (not built yet)"


def configure(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, console: Console) -> dict:
    raise ToolsError("'export' is not built yet")
