"""``prune-and-export``: the command line. Each subcommand is one module ``tools/cli/<name>.py``.

A subcommand module has ``HELP`` (one line), ``configure(parser)`` adding its flags, and
``run(args, console) -> dict`` doing the work: it calls one library function of tools/pipeline/ (or
tools/bench/), human output goes to ``console``, the returned dict is what ``--json`` prints (exactly
one JSON object on stdout, non-finite numbers as null). Errors of the project's error families become one line on stderr and exit
code 2; nothing prints a traceback at a user.

Building the parser imports only argparse and light modules: ``--help``, ``targets`` and a mistyped
flag answer at once. torch, TVM, gymnasium and onnx are imported by the ``run`` of the command that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tools.cli.json_output import dumps
from tools.errors import ToolsError

SUBCOMMANDS = ("run", "eval", "prune", "export", "targets", "bench", "hil", "keygen")
DEFAULT = "run"


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"prune-and-export: error: {message} (see '{self.prog} --help')\n")


def _error_types() -> tuple[type[BaseException], ...]:
    """The project's error families: user-facing failures, reported in one line."""
    # Deferred: prune and export import torch and TVM; only a command that failed needs their error types.
    from export import ExportError
    from prune import PruneError
    from targets import TargetError

    return (ToolsError, FileNotFoundError, ValueError, PruneError, ExportError, TargetError)


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="prune-and-export",
        description="Prune a neural-network controller structurally and ship it to edge boards. "
        f"Without a subcommand, runs '{DEFAULT}' on the bundled pendulum controller.",
    )
    sub = parser.add_subparsers(dest="command", parser_class=_ArgumentParser)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"tools.cli.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument(
            "--json", action="store_true", help="print exactly one JSON object on stdout (tables go to stderr)"
        )
        module.configure(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS + ("-h", "--help"):
        argv = [DEFAULT, *argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    stream = sys.stderr if args.json else sys.stdout
    from rich.console import Console  # deferred: --help and usage errors exit in parse_args without it

    # Piped into a file or CI log, rich would wrap tables at 80 columns; give them room instead.
    width = None if stream.isatty() else 160
    console = Console(stderr=args.json, highlight=False, soft_wrap=True, width=width)
    module = importlib.import_module(f"tools.cli.{args.command}")
    try:
        result = module.run(args, console)
    except _error_types() as e:
        print(f"prune-and-export {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"prune-and-export {args.command}: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(dumps(result))
    return 0 if result.get("ok", True) else 1
