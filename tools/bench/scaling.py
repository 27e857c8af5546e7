"""Scaling benchmark: the same search and the same bench sweep, in-process against Ray with 1 and 2 worker processes.

Reads top to bottom. Part one is a grid search (resolution 0.25) over the four hidden layers of
``tools/assets/pendulum_mlp4.pt``, every batch of candidates handed to the executor
(:func:`tools.scale.batched`); part two is a small bench sweep (methods x budgets on the reference
controller), one cell per task (:func:`tools.scale.run_cells`). Each part runs first in this process
(``local``), then on a local Ray instance with 1 and with 2 worker processes. The results must be
equal (the search's JSON, the cells' JSON) before any time is compared. Ray's start-up and a warm-up
task per worker (imports) are timed apart: the ratios are the searches' own wall times.

    python -m tools.bench.scaling --out bench_scaling.json

On a 2-core machine the driver shares the cores with the workers; a loaded machine lowers the
ratios (the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from prune import find_groups, prune
from tools.controllers.load import load_controller
from tools.controllers.native import default_controller_path
from tools.plant.episodes import SEARCH_SEED
from tools.plant.objectives import return_objective
from tools.scale import Cell, Executor, LocalExecutor, RayExecutor, batched, run_cells, sweep


@dataclass
class ScalingConfig:
    controller4: str = str(resources.files("tools") / "assets" / "pendulum_mlp4.pt")
    """controller with four hidden layers whose grid search is timed"""
    resolution: float = 0.25
    """grid resolution (0.25: five levels per component)"""
    keep: float = 0.25
    """fraction of prunable parameters kept"""
    episodes: int = 64
    """fast-plant episodes per candidate evaluation (seeds 2000..)"""
    controller: str = str(default_controller_path())
    """reference controller of the bench sweep"""
    sweep_methods: tuple[str, ...] = ("uniform", "global", "gd")
    """search methods of the sweep's cells"""
    sweep_keeps: tuple[float, ...] = (0.5, 0.25)
    """budgets of the sweep's cells"""
    sweep_evaluations: int = 20
    """gd's evaluations per sweep cell"""
    workers: tuple[int, ...] = (1, 2)
    """Ray worker processes to compare with in-process"""
    seed: int = 0
    """search seed (the same for every executor)"""


@dataclass
class Timing:
    """One part on one executor: wall time, start-up apart, and the ratio to in-process."""

    part: str
    executor: str  # local | ray-1 | ray-2 ...
    workers: int
    seconds: float
    startup_seconds: float
    evaluations: int
    speedup: float = 1.0  # local seconds / these seconds
    evaluations_per_second_per_core: float = 0.0


@dataclass
class ScalingReport:
    config: dict
    timings: list[Timing] = field(default_factory=list)
    equal: dict[str, bool] = field(default_factory=dict)  # part -> every executor gave the local result
    load_average: float | None = None
    cores: int = 0


def summary_json(result) -> str:
    """A PruneResult's JSON without its timing: what must be equal across executors."""
    return json.dumps({k: v for k, v in result.to_dict().items() if k != "seconds"}, sort_keys=True)


def grid_search(cfg: ScalingConfig, executor: Executor | None) -> tuple[str, int]:
    """The timed search: grid over the 4-layer controller; returns its JSON and its evaluations."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)
    controller = load_controller(cfg.controller4)
    model = controller.module.eval()
    example = torch.as_tensor(controller.spec.sample_observations(8, cfg.seed))
    groups = find_groups(model, example)
    objective = return_objective(cfg.episodes, SEARCH_SEED)
    searched = objective if executor is None else batched(objective, executor)
    result = prune(model, groups, cfg.keep, searched, method="grid", resolution=cfg.resolution, seed=cfg.seed)
    return summary_json(result), result.search.evaluations


def sweep_cell(cell: Cell) -> tuple[str, int]:
    """One bench cell: prune the reference controller with the cell's method, budget and seed (runs on a worker)."""
    torch.manual_seed(cell.seed)
    torch.set_num_threads(1)
    controller = load_controller(cell.options["controller"])
    model = controller.module.eval()
    example = torch.as_tensor(controller.spec.sample_observations(8, cell.seed))
    groups = find_groups(model, example)
    objective = return_objective(cell.options["episodes"], SEARCH_SEED)
    result = prune(
        model,
        groups,
        cell.keep,
        objective,
        method=cell.method,
        seed=cell.seed,
        max_evaluations=cell.options["evaluations"],
    )
    return summary_json(result), result.search.evaluations


def bench_sweep(cfg: ScalingConfig, executor: Executor | None) -> tuple[str, int]:
    """The timed sweep: every method x budget as one cell; returns the cells' JSON and their evaluations."""
    cells = sweep(
        cfg.sweep_methods,
        cfg.sweep_keeps,
        [cfg.seed],
        controller=cfg.controller,
        episodes=cfg.episodes,
        evaluations=cfg.sweep_evaluations,
    )
    out = run_cells(sweep_cell, cells, executor or LocalExecutor())
    return json.dumps([text for text, _ in out]), sum(n for _, n in out)


def warm_up(_: int) -> int:
    """A worker's first task: unpickling it imports this module (torch, prune, the plant), the cost kept out of the timings."""
    return os.getpid()


Part = Callable[
    [ScalingConfig, Executor | None], tuple[str, int]
]  # (cfg, executor or None: here) -> (result JSON, evaluations)
PARTS: dict[str, Part] = {"grid": grid_search, "sweep": bench_sweep}


def measure(cfg: ScalingConfig, console: Console, parts: dict[str, Part] | None = None) -> ScalingReport:
    """Every part (default :data:`PARTS`) locally, then on Ray with each worker count; equality checked, ratios computed.

    A part's numbers must not depend on process-wide settings other than the torch thread count
    (which travels with each candidate): set anything else (e.g. flush-denormal) inside its objective.
    """
    parts = PARTS if parts is None else parts
    report = ScalingReport(asdict(cfg), load_average=os.getloadavg()[0], cores=os.cpu_count() or 1)
    reference: dict[str, tuple[str, float]] = {}
    for part, run in parts.items():
        console.print(f"{part}: local ...")
        t0 = time.perf_counter()
        text, evaluations = run(cfg, None)
        seconds = time.perf_counter() - t0
        reference[part] = (text, seconds)
        report.timings.append(Timing(part, "local", 1, seconds, 0.0, evaluations, 1.0, evaluations / seconds))
        report.equal[part] = True
    for workers in cfg.workers:
        t0 = time.perf_counter()
        executor = RayExecutor(num_workers=workers)
        pids = set(executor.map(warm_up, list(range(4 * workers))))
        startup = time.perf_counter() - t0
        console.print(f"ray with {workers} worker(s) up in {startup:.1f} s ({len(pids)} worker process(es) warmed)")
        try:
            for part, run in parts.items():
                t0 = time.perf_counter()
                text, evaluations = run(cfg, executor)
                seconds = time.perf_counter() - t0
                same = text == reference[part][0]
                report.equal[part] = report.equal[part] and same
                if not same:
                    console.print(f"[red]{part} on ray-{workers} differs from local[/]")
                report.timings.append(
                    Timing(
                        part,
                        f"ray-{workers}",
                        workers,
                        seconds,
                        startup,
                        evaluations,
                        reference[part][1] / seconds,
                        evaluations / seconds / workers,
                    )
                )
        finally:
            executor.close()
    return report


def print_table(report: ScalingReport, console: Console) -> None:
    """Wall time and ratio to in-process, per part and executor."""
    table = Table(title=f"scaling ({report.cores} cores, load average {report.load_average:.2f} at start)")
    for col in ("part", "executor", "evaluations", "seconds", "speedup", "eval/s/core", "equal"):
        table.add_column(col, justify="right")
    for t in report.timings:
        table.add_row(
            t.part,
            t.executor,
            str(t.evaluations),
            f"{t.seconds:.2f}",
            f"{t.speedup:.2f}x",
            f"{t.evaluations_per_second_per_core:.2f}",
            "yes" if report.equal[t.part] else "NO",
        )
    console.print(table)


def main(argv: list[str] | None = None) -> ScalingReport:
    """Parse the flags (one per ScalingConfig field), measure, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = ScalingConfig()
    parser.add_argument("--resolution", type=float, default=defaults.resolution)
    parser.add_argument("--keep", type=float, default=defaults.keep)
    parser.add_argument("--episodes", type=int, default=defaults.episodes)
    parser.add_argument(
        "--workers", default=",".join(map(str, defaults.workers)), help="Ray worker counts, comma separated"
    )
    parser.add_argument("--sweep-evaluations", type=int, default=defaults.sweep_evaluations)
    parser.add_argument("--out", type=Path, default=Path("bench_scaling.json"))
    args = parser.parse_args(argv)
    cfg = ScalingConfig(
        resolution=args.resolution,
        keep=args.keep,
        episodes=args.episodes,
        workers=tuple(int(w) for w in args.workers.split(",")),
        sweep_evaluations=args.sweep_evaluations,
    )
    console = Console()
    report = measure(cfg, console)
    print_table(report, console)
    data: dict[str, Any] = asdict(report)
    args.out.write_text(json.dumps(data, indent=2))
    console.print(f"wrote {args.out}")
    if not all(report.equal.values()):
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
