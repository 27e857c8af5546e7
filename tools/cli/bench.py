"""``prune-and-export bench``: what pruning bought on the board (latency, memory) and what it cost the controller (reward).

    prune-and-export bench --controller tdmpc --out DIR   (the TD-MPC agent: tools/bench_tdmpc.py)
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
import shutil
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from export import move_into_place  # one atomic folder swap for bundles and reports
from tools.bench.harness import BenchConfig, check_target, run_bench
from tools.cli.prune import METHODS, fraction
from tools.controllers.load import native_copy
from tools.errors import ToolsError
from tools.cli.options import add_controller, add_episodes, add_seed
from tools.bench.report import print_tables, write_json, write_markdown
from tools.bench.report_plots import write_plots

HELP = "latency, memory and closed-loop reward of the controller before and after pruning, side by side"
QUICK_EPISODES = 3
DEFAULT_METHODS = "gd,uniform-l1"
SWEEP = (0.5, 0.25, 0.1, 0.05)  # budgets of --sweep (fractions of the prunable parameters kept)
MODELS = ("mlp-controller", "autoencoder")  # what is benchmarked: the pendulum controller, or the digits autoencoder


def configure(p: argparse.ArgumentParser) -> None:
    add_controller(p)
    p.add_argument("--keep", type=fraction, nargs="+", default=None, metavar="F",
                   help="budgets: fractions of the prunable parameters kept, one pruned model each (default 0.25)")
    p.add_argument("--sweep", action="store_true", help=f"add the budgets {', '.join(map(str, SWEEP))} to --keep")
    p.add_argument("--methods", default=None, metavar="M1,M2",
                   help=f"pruning methods compared at each budget, of {', '.join(METHODS)} (default {DEFAULT_METHODS}: "
                        "the soft-coefficient search against the uniform L1 baseline; the autoencoder and tdmpc "
                        "benches compare all their methods by default)")
    p.add_argument("--targets", nargs="+", default=["x86_64"], metavar="T",
                   help="targets whose stub is timed and run in the loop, comma- or space-separated (default x86_64; "
                        "ARM targets run under qemu-user and their latency is shown only as a ratio to unpruned; "
                        "microcontroller targets (cortex-m4, cortex-m4-256k, cortex-m7) get their firmware's flash "
                        "and RAM against the part's budget, and run in the loop under qemu-system-arm where they fit)")
    add_episodes(p)
    p.set_defaults(episodes=None)  # None: 100, or QUICK_EPISODES with --quick
    add_seed(p)
    p.add_argument("--quick", action="store_true",
                   help=f"few calls, a short search and {QUICK_EPISODES} episodes unless --episodes says otherwise: for tests")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="report folder to create: report.json, report.md, PNG plots, pruned controllers, bundles")
    p.add_argument("--force", action="store_true", help="replace an existing report folder")
    p.add_argument("--model", choices=MODELS, default=MODELS[0],
                   help="mlp-controller (default): the controller of --controller; autoencoder: the dense autoencoder of "
                        "handwritten digits, judged by PSNR on held-out images (tools/bench_autoencoder.py; every method by default)")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="--model autoencoder: folder with MNIST IDX files (train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz]); "
                        "an autoencoder is trained on them first (default: scikit-learn's 8x8 digits and the shipped autoencoder)")
    p.add_argument("--min-psnr", type=float, default=None, metavar="DB",
                   help="--model autoencoder: reconstruction bound on validation PSNR (default: unpruned validation PSNR - 1 dB)")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Validate the flags at the door (unknown names and bad values are one-line errors) and build the config."""
    from targets import parse_target_list

    text = args.methods or DEFAULT_METHODS
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise ToolsError(f"--methods {text!r}: unknown method(s) {', '.join(unknown) or '(none given)'}; "
                         f"known: {', '.join(METHODS)}")
    keeps = list(dict.fromkeys([*(args.keep or ([] if args.sweep else [0.25])), *(SWEEP if args.sweep else ())]))
    if any(k == 1.0 for k in keeps):
        raise ToolsError("--keep 1 keeps every parameter: that is the unpruned model, which the bench always includes")
    targets = parse_target_list(",".join(args.targets))
    for t in targets:
        check_target(t)
    return BenchConfig(controller=args.controller, keeps=sorted(keeps, reverse=True), methods=methods, targets=[t.name for t in targets],
                       episodes=args.episodes or (QUICK_EPISODES if args.quick else 100), seed=args.seed, quick=args.quick)


def _temp_dir_for(out: Path, force: bool) -> Path:
    """A private temp folder beside ``out``, after checking that ``out`` can be created there."""
    if out.exists() and not out.is_dir():
        raise ToolsError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ToolsError(f"--out {out}: folder exists and is not empty (pass --force to replace it)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise ToolsError(f"--out {out}: cannot write there ({e.strerror or e})") from e


def run(args: argparse.Namespace, console: Console) -> dict:
    if getattr(args, "model", MODELS[0]) == "autoencoder":
        from tools.usecases.autoencoder.bench import run_from_cli

        return run_from_cli(args, console)
    if args.controller is not None and str(args.controller) == "tdmpc":  # the TD-MPC agent: its own bench (tools/bench_tdmpc.py)
        from tools.usecases.tdmpc.bench import run_cli

        return run_cli(args, console)
    if getattr(args, "data", None) is not None or getattr(args, "min_psnr", None) is not None:
        raise ToolsError("--data and --min-psnr apply to --model autoencoder only")
    if getattr(args, "env", None) not in (None, "Pendulum-v1"):
        raise ToolsError(f"--env {args.env}: bench measures reward on Pendulum-v1 only; use eval, prune, export and hil for other envs")
    config = config_from_args(args)
    out = Path(args.out)
    tmp = _temp_dir_for(out, args.force)
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a report is meant to be read by others
        source = config.controller
        native = native_copy(args, tmp / "controller.pt")  # a foreign file: its canonical MLP, as a controller file
        config.controller = native or source
        report = run_bench(config, tmp, console, command=" ".join(shlex.quote(a) for a in ["prune-and-export", *sys.argv[1:]]))
        if native:
            report.config.update(controller=str(out / "controller.pt"), source_controller=str(source))
        report.files = {**write_plots(report, tmp), "json": "report.json", "markdown": "report.md"}
        write_json(report, tmp / "report.json")
        write_markdown(report, tmp / "report.md")
        move_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    print_tables(report, console)
    console.print(f"report: {out / 'report.md'}, {out / 'report.json'}; plots: "
                  + ", ".join(str(out / f) for f in report.files.values() if f.endswith(".png")))
    return {"ok": True, "out": str(out), **report.to_dict()}
