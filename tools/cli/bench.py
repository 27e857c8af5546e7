"""``prune-and-export bench``: what pruning bought on the board (latency, memory) and what it cost the controller (reward).

    prune-and-export bench --controller tdmpc --out DIR   (the TD-MPC agent: tools/usecases/tdmpc/bench.py)
    prune-and-export bench --out DIR [--keep 0.25 ...] [--sweep] [--methods gd,uniform-l1] [--targets x86_64,cortex-a72,cortex-m4]
                           [--episodes 100] [--seed 0] [--quick] [--json]

The unpruned controller and one pruned controller per method and budget, side by side in one run;
DIR gets report.json, report.md, return_vs_params.png, latency.png (Linux targets), mcu_memory.png
(microcontroller targets), the pruned controllers (models/) and their bundles (bundles/<model>/ for
the Linux targets, bundles/<model>-<target>/ per microcontroller target whose firmware fits). The
folder is built under a temp name and renamed into place, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tools.cli.options import (
    add_controller,
    add_episodes,
    add_quantize,
    add_seed,
    check_quantize,
    controller_from_args,
    finite_float,
    fraction,
    source_from_args,
)
from tools.cli.outputs import check_output
from tools.cli.robustness import add_robustness, check_robustness_flags, robustness_from_args
from tools.cli.scale_flags import add_executor, check_executor_flags, executor_from_args
from tools.cli.signing import check_key_pair
from tools.errors import ToolsError
from tools.pipeline.choices import DEFAULT_METHOD, METHODS, SWEEP

if TYPE_CHECKING:
    from rich.console import Console

    from tools.bench.harness import BenchConfig
    from tools.controllers.native import Controller
    from tools.scale import Executor
    from tools.usecases.autoencoder.results import AEBenchConfig
    from tools.usecases.tdmpc.bench import TdmpcBenchConfig

HELP = "latency, memory and closed-loop reward of the controller before and after pruning, side by side"
QUICK_EPISODES = 3
DEFAULT_METHODS = f"{DEFAULT_METHOD},uniform-l1"
MODELS = ("mlp-controller", "autoencoder")  # what is benchmarked: a controller (any Box env), or the digits autoencoder
TDMPC = "tdmpc"  # the value of --controller that selects the TD-MPC agent's bench
# (flag, dest, value when not given) of the flags only the controller bench takes
CONTROLLER_BENCH_ONLY = (
    ("--scenarios", "scenarios", None),
    ("--robust-objective", "robust_objective", None),
    ("--quantize", "quantize", "off"),
    ("--flash-budget", "flash_budget", None),
)


def configure(p: argparse.ArgumentParser) -> None:
    add_controller(p)
    p.add_argument(
        "--keep",
        type=fraction,
        nargs="+",
        default=None,
        metavar="F",
        help="budgets: fractions of the prunable parameters kept, one pruned model each (default 0.25)",
    )
    p.add_argument("--sweep", action="store_true", help=f"add the budgets {', '.join(map(str, SWEEP))} to --keep")
    p.add_argument(
        "--methods",
        default=None,
        metavar="M1,M2",
        help=f"pruning methods compared at each budget, of {', '.join(METHODS)} (default {DEFAULT_METHODS}: "
        "the soft-coefficient search against the uniform L1 baseline; the autoencoder and tdmpc "
        "benches compare all their methods by default)",
    )
    p.add_argument(
        "--targets",
        nargs="+",
        default=["x86_64"],
        metavar="T",
        help="targets whose stub is timed and run in the loop, comma- or space-separated (default x86_64; "
        "ARM targets run under qemu-user and their latency is shown only as a ratio to unpruned; "
        "microcontroller targets (cortex-m4, cortex-m4-256k, cortex-m7) get their firmware's flash "
        "and RAM against the part's budget, and run in the loop under qemu-system-arm where they fit)",
    )
    add_episodes(p)
    p.set_defaults(episodes=None)  # None: 100, or QUICK_EPISODES with --quick
    add_seed(p)
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"few calls, a short search and {QUICK_EPISODES} episodes unless --episodes says otherwise: for tests",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="report folder to create: report.json, report.md, PNG plots, pruned controllers, bundles",
    )
    p.add_argument("--force", action="store_true", help="replace an existing report folder")
    p.add_argument(
        "--model",
        choices=MODELS,
        default=MODELS[0],
        help="mlp-controller (default): the controller of --controller; autoencoder: the dense autoencoder of "
        "handwritten digits, judged by PSNR on held-out images (tools/usecases/autoencoder/bench.py; every method by default)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="--model autoencoder: folder with MNIST IDX files (train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz]); "
        "an autoencoder is trained on them first (default: scikit-learn's 8x8 digits and the shipped autoencoder)",
    )
    p.add_argument(
        "--min-psnr",
        type=finite_float,
        default=None,
        metavar="DB",
        help="--model autoencoder: reconstruction bound on validation PSNR (default: unpruned validation PSNR - 1 dB)",
    )
    add_signing(p)
    add_robustness(p)  # robustness (issue 17): the controller bench only
    add_executor(  # scale (issue 18): every bench
        p,
        "the bench's cells run (one search per method, its budgets as one continuation; --model autoencoder: "
        "per mode too, and each bisection for the bound) and, for the controller bench, the Linux targets' compiles",
    )
    # precision of the pruned models' weights (prune.precision)
    add_quantize(p, bytes_only=False)


def add_signing(p: argparse.ArgumentParser) -> None:
    """--sign and --public-key of a command that makes its own bundles and runs them (bench, run)."""
    p.add_argument(
        "--sign",
        type=Path,
        default=None,
        metavar="KEY",
        help="sign every bundle the bench makes with this private key (from 'prune-and-export keygen')",
    )
    p.add_argument(
        "--public-key",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --sign, its public half: each bundle's signature is checked, and every stub and firmware "
        "run is given the key, so the device checks it too before it loads anything",
    )


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Validate the flags at the door (unknown names and bad values are one-line errors) and build the config."""
    # Deferred: the bench harness imports torch, ONNX and TVM, which --help must not pay for.
    from targets import parse_target_list
    from tools.bench.harness import BenchConfig, check_target

    text = args.methods or DEFAULT_METHODS
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise ToolsError(
            f"--methods {text!r}: unknown method(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(METHODS)}"
        )
    keeps = list(dict.fromkeys([*(args.keep or ([] if args.sweep else [0.25])), *(SWEEP if args.sweep else ())]))
    if any(k == 1.0 for k in keeps):
        raise ToolsError("--keep 1 keeps every parameter: that is the unpruned model, which the bench always includes")
    targets = parse_target_list(",".join(args.targets))
    for t in targets:
        check_target(t)
    check_robustness_flags(args)
    check_executor_flags(args)
    check_quantize(getattr(args, "quantize", "off"), getattr(args, "flash_budget", None))
    return BenchConfig(
        controller=args.controller,
        keeps=sorted(keeps, reverse=True),
        methods=methods,
        targets=[t.name for t in targets],
        episodes=args.episodes or (QUICK_EPISODES if args.quick else 100),
        seed=args.seed,
        quick=args.quick,
        sign=getattr(args, "sign", None),
        public_key=getattr(args, "public_key", None),
        scenarios=getattr(args, "scenarios", None),
        robust_objective=getattr(args, "robust_objective", None),
        executor=getattr(args, "executor", "local"),
        ray_address=getattr(args, "ray_address", None),
        quantize=getattr(args, "quantize", "off"),
        flash_budget=getattr(args, "flash_budget", None),
    )


def tdmpc_config(args: argparse.Namespace) -> TdmpcBenchConfig:
    """The bench's flags mapped onto this bench (methods of this bench, budgets, episodes, seed, targets, --quick)."""
    # Deferred: the TD-MPC bench imports torch, ONNX and TVM.
    from targets import parse_target_list
    from tools.usecases.tdmpc.bench import BUDGETS, DEFAULT_METHODS, METHODS, QUICK, TdmpcBenchConfig

    if args.methods is None:  # not given: the agent's bench compares its five methods
        methods = list(DEFAULT_METHODS)
    else:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in METHODS]
        if not methods or unknown:
            raise ToolsError(
                f"--methods {args.methods!r}: unknown for --controller {TDMPC}: {', '.join(unknown) or '(none given)'}; "
                f"known: {', '.join(METHODS)}"
            )
    keeps = list(dict.fromkeys([*(args.keep or []), *(SWEEP if args.sweep else ())])) or list(BUDGETS)
    if any(k == 1.0 for k in keeps):
        raise ToolsError("--keep 1 keeps every parameter: that is the unpruned agent, which the bench always includes")
    targets = parse_target_list(",".join(args.targets))
    not_linux = [t.name for t in targets if t.kind != "linux"]
    if not_linux:
        raise ToolsError(f"--targets {', '.join(not_linux)}: the TD-MPC planner step is built for Linux targets only")
    sizes = QUICK if args.quick else {}
    return TdmpcBenchConfig(
        budgets=tuple(sorted(keeps, reverse=True)),
        methods=tuple(methods),
        seed=args.seed,
        targets=tuple(t.name for t in targets),
        judge_episodes=args.episodes or sizes.get("judge_episodes", TdmpcBenchConfig.judge_episodes),
        search_episodes=sizes.get("search_episodes", TdmpcBenchConfig.search_episodes),
        max_evaluations=sizes.get("max_evaluations", TdmpcBenchConfig.max_evaluations),
        state_episodes=sizes.get("state_episodes", TdmpcBenchConfig.state_episodes),
        device_rounds=sizes.get("device_rounds", TdmpcBenchConfig.device_rounds),
        device_calls=sizes.get("device_calls", TdmpcBenchConfig.device_calls),
        export_keep=0.25 if 0.25 in keeps else sorted(keeps)[len(keeps) // 2],
    )


def autoencoder_config(args: argparse.Namespace) -> AEBenchConfig:
    """``prune-and-export bench --model autoencoder``: the bench's flags mapped onto this bench (others refused)."""
    # Deferred: the autoencoder bench imports torch and scikit-learn.
    from tools.usecases.autoencoder.bench import quick
    from tools.usecases.autoencoder.results import BUDGETS, METHODS, AEBenchConfig

    if args.controller is not None:
        raise ToolsError(
            "--controller names a controller file; --model autoencoder uses the shipped autoencoder (or --data)"
        )
    if args.episodes is not None:
        raise ToolsError("--episodes counts closed-loop episodes; --model autoencoder is judged on held-out images")
    if [t for t in ",".join(args.targets).split(",") if t.strip()] != ["x86_64"]:
        raise ToolsError(
            "--targets: --model autoencoder is timed on this machine (torch, onnxruntime) only; leave --targets out"
        )
    # not given: the autoencoder compares every method
    methods = list(METHODS) if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise ToolsError(
            f"--methods {args.methods!r}: unknown method(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(METHODS)}"
        )
    keeps = list(dict.fromkeys([*(args.keep or ([] if args.sweep else list(BUDGETS))), *(SWEEP if args.sweep else ())]))
    if any(k == 1.0 for k in keeps):
        raise ToolsError("--keep 1 keeps every parameter: that is the unpruned model, which the bench always includes")
    cfg = AEBenchConfig(
        data=str(args.data) if args.data else None,
        keeps=tuple(sorted(keeps, reverse=True)),
        methods=tuple(methods),
        seed=args.seed,
        min_psnr=args.min_psnr,
    )
    return quick(cfg) if args.quick else cfg


def check_before_work(args: argparse.Namespace) -> Controller | None:
    """The report folder and, for the controller bench, the flags and the controller itself, checked before any work.

    Returns the controller it loaded (None for the autoencoder and TD-MPC benches), so a caller need not load it again.
    """
    check_output(Path(args.out), "--out", folder=True, force=args.force)
    sign, public_key = getattr(args, "sign", None), getattr(args, "public_key", None)
    if getattr(args, "model", MODELS[0]) == "autoencoder" or (
        args.controller is not None and str(args.controller) == TDMPC
    ):
        if sign is not None or public_key is not None:
            raise ToolsError(
                "--sign and --public-key apply to the controller bench (its stubs and firmware), "
                "not to --model autoencoder or --controller tdmpc"
            )
        given = [f for f, dest, off in CONTROLLER_BENCH_ONLY if getattr(args, dest, off) != off]
        if given:
            raise ToolsError(
                f"{', '.join(given)}: the controller bench only, not --model autoencoder or --controller tdmpc"
            )
        check_executor_flags(args)
        return None
    check_key_pair(sign, public_key)
    if getattr(args, "data", None) is not None or getattr(args, "min_psnr", None) is not None:
        raise ToolsError("--data and --min-psnr apply to --model autoencoder only")
    config_from_args(args)
    # refused here, not after the bench has started: bad file, NaN, env mismatch
    controller = controller_from_args(args)
    robustness_from_args(args, controller.spec.env_id)  # scenario names of the controller's env
    return controller


@contextmanager
def cells_executor(args: argparse.Namespace) -> Iterator[Executor | None]:
    """The executor of --executor for the TD-MPC and autoencoder benches' cells (None: local), closed afterwards."""
    executor = executor_from_args(args)
    try:
        yield executor
    finally:
        if executor is not None:
            executor.close()


def run(args: argparse.Namespace, console: Console, checked: bool = False) -> dict:
    """The bench the flags ask for; ``checked``: the caller ran :func:`check_before_work` (run's last step)."""
    command = " ".join(shlex.quote(a) for a in ["prune-and-export", *sys.argv[1:]])
    if not checked:
        check_before_work(args)
    if getattr(args, "model", MODELS[0]) == "autoencoder":
        from tools.usecases.autoencoder.bench import run_into as autoencoder_into  # deferred: torch

        ae_config = autoencoder_config(args)
        with cells_executor(args) as executor:
            ae_report = autoencoder_into(ae_config, Path(args.out), args.force, console, command, executor)
        return {"ok": True, "out": str(args.out), **ae_report.to_dict()}
    if (
        args.controller is not None and str(args.controller) == TDMPC
    ):  # the TD-MPC agent: its own bench (tools/usecases/tdmpc/bench.py)
        from tools.usecases.tdmpc.bench import json_safe, print_tables  # deferred: torch, ONNX, TVM
        from tools.usecases.tdmpc.bench import run_into as tdmpc_into

        out = Path(args.out)
        td_config = tdmpc_config(args)
        with cells_executor(args) as executor:
            tdmpc_report, files = tdmpc_into(td_config, out, args.force, console, executor)
        print_tables(console, tdmpc_report)
        console.print(f"report: {out / files['markdown']}, {out / files['json']}; plot: {out / files['plot']}")
        return {"ok": True, "out": str(out), "controller": TDMPC, **json_safe(tdmpc_report.to_dict())}
    if getattr(args, "data", None) is not None or getattr(args, "min_psnr", None) is not None:
        raise ToolsError("--data and --min-psnr apply to --model autoencoder only")
    # Deferred: the bench imports torch, ONNX and TVM.
    from tools.bench.harness import bench_to_folder
    from tools.bench.report import print_tables as print_bench_tables

    config = config_from_args(args)
    out = Path(args.out)
    report = bench_to_folder(config, out, args.force, source_from_args(args), console, command)
    print_bench_tables(report, console)
    console.print(
        f"report: {out / 'report.md'}, {out / 'report.json'}; plots: "
        + ", ".join(str(out / f) for f in report.files.values() if f.endswith(".png"))
    )
    return {"ok": True, "out": str(out), **report.to_dict()}
