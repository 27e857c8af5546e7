"""``prune-and-export run`` (the default): the whole pipeline on a controller, the bundled one by default.

``prune-and-export run config.toml`` takes its settings from a TOML file (see tools/cli/run_config.py);
flags override the file, and the resolved settings are written to ``<out>/run-config.toml``.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tools.cli import bench as cmd_bench
from tools.cli.options import add_controller, add_episodes, add_quantize, add_seed, controller_from_args
from tools.cli.robustness import add_robustness
from tools.cli.run_config import Resolved, bench_namespace, defer_defaults, read_config, resolve, to_toml
from tools.pipeline.choices import DEFAULT_METHOD

if TYPE_CHECKING:
    from rich.console import Console

HELP = (
    f"run the whole pipeline (load, evaluate, prune with {DEFAULT_METHOD}, export x86_64, bench report) on a controller; "
    "the default subcommand"
)
CONFIG_NAME = "run-config.toml"
_DEFAULTS: dict = {}  # the flags' defaults, hidden from argparse so that flags given can override a config file


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config",
        nargs="?",
        type=Path,
        default=None,
        metavar="CONFIG.toml",
        help="settings file: top-level keys are these flags, [bench] holds flags of 'bench'; flags override it",
    )
    add_controller(p)
    add_episodes(p)
    add_seed(p)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="bench report folder to create (default runs/<UTC timestamp>)",
    )
    p.add_argument("--quick", action="store_true", help="bench with few calls and a short search (for tests)")
    cmd_bench.add_signing(p)
    # robustness (issue 17): the bench step searches and judges under scenarios too
    add_robustness(p)
    # precision of the pruned model's weights, passed to bench (prune.precision)
    add_quantize(p, bytes_only=False, integer=True)
    _DEFAULTS.update(defer_defaults(p))


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    run_parser, bench_parser = argparse.ArgumentParser(), argparse.ArgumentParser()
    configure(run_parser)
    cmd_bench.configure(bench_parser)
    return run_parser, bench_parser


def run(args: argparse.Namespace, console: Console) -> dict:
    # Deferred: the closed loop imports torch and gymnasium (and tables need rich), which --help must not pay for.
    from rich.table import Table

    from tools.pipeline.evaluate import evaluate_controller

    run_parser, bench_parser = _parsers()
    config = read_config(args.config, run_parser, bench_parser) if args.config else None
    given = {k: v for k, v in vars(args).items() if k in _DEFAULTS}
    resolved = resolve(given, dict(_DEFAULTS), config)
    resolved.run["out"] = resolved.run["out"] or Path("runs") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    opts = argparse.Namespace(**resolved.run)
    bench_args = _bench_args(opts, resolved.bench, bench_parser)
    _check_integer_targets(bench_args)
    # report folder, bench flags, controller and its env: before the evaluation; the controller is loaded (and its
    # notes said) once, here
    controller = cmd_bench.check_before_work(bench_args) or controller_from_args(opts)
    module = controller.module
    params = sum(p.numel() for p in module.parameters())
    console.print(
        f"[bold]prune-and-export[/bold]: controller {controller.path}"
        + (f" (config {args.config})" if args.config else "")
    )
    console.print(f"  sha256 {controller.sha256[:16]}  architecture {controller.architecture}  parameters {params}")
    console.print(
        f"  task {controller.spec.env_id}: obs {controller.spec.obs_dim}, action {controller.spec.act_dim} "
        f"in [{controller.spec.act_low}, {controller.spec.act_high}]; seed {opts.seed}"
    )
    results = {}
    table = Table(
        title=f"closed-loop return, {opts.episodes} episodes, seeds {opts.seed}..{opts.seed + opts.episodes - 1}"
    )
    for col in ("judge", "mean", "std", "min", "seconds"):
        table.add_column(col, justify="right")
    for judge in ("fast", "gym"):
        evaluation = evaluate_controller(controller, opts.episodes, opts.seed, judge)
        stats, seconds = evaluation.stats, evaluation.seconds
        results[judge] = evaluation.to_dict()
        table.add_row(judge, f"{stats.mean:.1f}", f"{stats.std:.1f}", f"{stats.min:.1f}", f"{seconds:.2f}")
    console.print(table)
    bench = cmd_bench.run(bench_args, console, checked=True)
    config_path = _write_config(resolved, Path(opts.out))
    console.print(f"resolved config: {config_path}")
    return {
        "controller": str(controller.path),
        "sha256": controller.sha256,
        "architecture": controller.architecture,
        "params": params,
        "seed": opts.seed,
        "episodes": opts.episodes,
        "evaluation": results,
        "bench": bench,
        "config": str(config_path),
    }


def _bench_args(opts: argparse.Namespace, bench: dict, bench_parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The flags of the last step, ``prune-and-export bench`` (the default method at the default budget on x86_64 unless
    [bench] says otherwise)."""
    values = {
        "out": opts.out,
        "episodes": opts.episodes,
        "seed": opts.seed,
        "targets": ["x86_64"],
        "methods": DEFAULT_METHOD,
        "controller": opts.controller,
        "format": opts.format,
        "env": opts.env,
        "factory": opts.factory,
        "clip_actions": opts.clip_actions,
        "obs_norm": opts.obs_norm,
        "quick": opts.quick,
        "sign": opts.sign,
        "public_key": opts.public_key,
        "scenarios": opts.scenarios,
        "robust_objective": opts.robust_objective,
        "quantize": opts.quantize,
        "flash_budget": opts.flash_budget,
    }
    values.update(bench)  # the file's [bench] table over the defaults
    return bench_namespace(values, bench_parser)


def _check_integer_targets(bench_args: argparse.Namespace) -> None:
    """--quantize integer searches the full-integer twin: every target the bench step exports for must run it."""
    if bench_args.quantize != "integer":
        return
    from export import integer_only  # deferred: export imports torch
    from targets import parse_target_list
    from tools.errors import ToolsError
    from tools.pipeline.integer_objective import check_integer

    check_integer(bench_args.quantize, bench_args.flash_budget, bool(bench_args.scenarios))
    names = bench_args.targets if isinstance(bench_args.targets, list) else [bench_args.targets]
    floating = [t.name for t in parse_target_list(",".join(names)) if not integer_only(t)]
    if floating:
        raise ToolsError(
            f"--quantize integer searches the model an integer-only target runs (cortex-m3), but the bench step "
            f'exports for {", ".join(floating)}, which run float: set [bench] targets = ["cortex-m3"] or use --quantize off|int8|auto'
        )


def _write_config(resolved: Resolved, out: Path) -> Path:
    """The settings this run used, beside its report (temp file, then rename)."""
    path = out / CONFIG_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(to_toml(resolved))
    tmp.replace(path)
    return path
