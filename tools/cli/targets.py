"""``prune-and-export targets``: the named targets, their TVM target dicts, toolchains and runners."""

from __future__ import annotations

import argparse
import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

HELP = "list the named targets (TVM target, cross compiler, how programs run); add your own with a TOML file"


def configure(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, console: Console) -> dict:
    # Deferred: --help and a mistyped flag build every parser; they need neither tables nor targets.
    from rich.table import Table

    from targets import USER_DIR_ENV, TargetError, all_targets, runner_for, user_target_dirs

    rows = []
    for t in all_targets().values():
        try:
            runner = runner_for(t).describe()
        except TargetError:
            runner = "-"  # e.g. a microcontroller: no Linux runner
        rows.append({**t.to_dict(), "cc_found": shutil.which(t.cc) is not None, "run_with": runner})

    table = Table(title="targets (--json for the full TVM target dicts)")
    for col in ("name", "kind", "TVM target (triple cpu attrs)", "cc", "runs with", "description"):
        table.add_column(col, no_wrap=col in ("name", "kind"))
    for r in rows:
        tvm = r["tvm"]
        short = " ".join([tvm.get("mtriple", "?"), tvm.get("mcpu", ""), *tvm.get("mattr", [])]).replace("  ", " ")
        cc = r["cc"] + ("" if r["cc_found"] else " [red](missing)[/]")
        table.add_row(r["name"], r["kind"], short, cc, r["run_with"], r["description"])
    console.print(table)
    console.print(
        f"add a target: one TOML file in {user_target_dirs()[-1]} or in a folder listed in "
        f"${USER_DIR_ENV} (format: targets/README.md)"
    )
    return {"targets": rows, "user_dirs": [str(d) for d in user_target_dirs()]}
