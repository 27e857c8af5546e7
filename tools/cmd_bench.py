"""``prune-and-export bench``: not built yet (see the open issues)."""

from __future__ import annotations

import argparse

from rich.console import Console

from tools.errors import ToolsError

HELP = "bench (not built yet)"


def configure(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, console: Console) -> dict:
    raise ToolsError("'bench' is not built yet")
