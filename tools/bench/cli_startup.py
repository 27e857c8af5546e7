"""How fast the command line answers: ``--help``, ``targets`` and a mistyped flag, against ``python -c pass``.

    python -m tools.bench.cli_startup [--runs 20] [--out cli_startup.json]

Each command runs ``--runs`` times in a fresh interpreter (wall time of the whole process, after one
untimed warm-up run that fills the OS file cache); the table gives the median, the fastest run and the
ratio of the medians to ``python -c pass``. Each command is first checked to exit as expected and to
print what it should, so a fast failure cannot pass for a fast start.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass
class Probe:
    """One command line to time, with what it must do."""

    name: str
    argv: list[str]
    exit_code: int
    expect: str  # text the command prints (stdout or stderr)


@dataclass
class StartupRow:
    """Wall times of one command over the runs."""

    name: str
    command: str
    median_ms: float
    min_ms: float
    max_ms: float
    ratio_to_python: float  # median / median of `python -c pass`
    runs: int


def probes() -> list[Probe]:
    """``python -c pass`` first (the reference), then the command line's fast paths."""
    cli = [sys.executable, "-m", "tools.cli"]
    return [
        Probe("python -c pass", [sys.executable, "-c", "pass"], 0, ""),
        Probe("--help", [*cli, "--help"], 0, "usage: prune-and-export"),
        Probe("targets", [*cli, "targets"], 0, "x86_64"),
        Probe("prune --bogus", [*cli, "prune", "--bogus"], 2, "unrecognized arguments: --bogus"),
    ]


def check(probe: Probe) -> None:
    """Run once and fail loudly if the command does not do what it should."""
    proc = subprocess.run(probe.argv, capture_output=True, text=True, timeout=300)
    if proc.returncode != probe.exit_code or probe.expect not in proc.stdout + proc.stderr:
        raise SystemExit(
            f"{probe.name}: exit {proc.returncode} (expected {probe.exit_code}), "
            f"output lacks {probe.expect!r}:\n{proc.stdout}{proc.stderr}"
        )


def wall_times(argv: list[str], runs: int) -> list[float]:
    """Seconds per run of ``argv`` in a fresh process, ``runs`` times."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        times.append(time.perf_counter() - start)
    return times


def measure(runs: int) -> list[StartupRow]:
    """Check then time every probe; ratios are to the first (``python -c pass``)."""
    rows: list[StartupRow] = []
    for probe in probes():
        check(probe)  # also the warm-up run
        t = wall_times(probe.argv, runs)
        median = statistics.median(t)
        base = rows[0].median_ms / 1e3 if rows else median
        rows.append(
            StartupRow(
                probe.name,
                " ".join(probe.argv[1:]) if probe.argv[0] == sys.executable else " ".join(probe.argv),
                median * 1e3,
                min(t) * 1e3,
                max(t) * 1e3,
                median / base,
                runs,
            )
        )
    return rows


def print_table(rows: list[StartupRow], console: Console) -> None:
    """The table of medians and ratios."""
    table = Table(
        title=f"command-line start-up, wall time over {rows[0].runs} runs each (python {platform.python_version()})"
    )
    for col in ("command", "median ms", "min ms", "max ms", "x python -c pass"):
        table.add_column(col, justify="left" if col == "command" else "right")
    for r in rows:
        table.add_row(r.name, f"{r.median_ms:.0f}", f"{r.min_ms:.0f}", f"{r.max_ms:.0f}", f"{r.ratio_to_python:.2f}x")
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tools.bench.cli_startup", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20, help="timed runs per command (default 20)")
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    rows = measure(args.runs)
    print_table(rows, Console(width=160))
    result = {"python": platform.python_version(), "machine": platform.machine(), "rows": [asdict(r) for r in rows]}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
