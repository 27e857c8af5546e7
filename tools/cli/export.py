"""``prune-and-export export``: a controller -> a verified bundle (ONNX + one TVM library per target)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tools.cli.options import (
    add_controller,
    add_seed,
    controller_from_args,
    finite_float,
    non_negative_int,
    positive_float,
    positive_int,
    runner_name,
)
from tools.cli.outputs import check_output
from tools.cli.scale_flags import add_executor, check_executor_flags, executor_from_args
from tools.cli.signing import check_signing_key
from tools.errors import ToolsError

if TYPE_CHECKING:
    from rich.console import Console

HELP = "export a controller to ONNX and TVM libraries for named targets, verified, in one bundle folder"


def configure(p: argparse.ArgumentParser) -> None:
    add_controller(p)
    p.add_argument(
        "--targets",
        default="x86_64",
        metavar="T1,T2",
        help="comma-separated target names (see 'prune-and-export targets'; default x86_64)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="bundle folder to create")
    p.add_argument(
        "--dynamic-batch",
        action="store_true",
        help="ONNX input with a symbolic batch dimension (TVM libraries always take batch 1)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    p.add_argument(
        "--runner",
        type=runner_name,
        default=None,
        metavar="RUNNER",
        help="run non-host libraries with this runner for verification: qemu or ssh://user@host[:port] "
        "(default: each target's own; qemu-user for ARM on x86)",
    )
    p.add_argument(
        "--parity-samples",
        type=positive_int,
        default=1000,
        metavar="N",
        help="observations drawn from the controller's observation box for every parity check (default 1000)",
    )
    p.add_argument(
        "--parity-episodes",
        type=non_negative_int,
        default=4,
        metavar="N",
        help="the parity gate also checks every state the controller visits in N closed-loop episodes of its env "
        "(seeds 3000..; default 4; 0: the observation box alone)",
    )
    p.add_argument(
        "--parity-tolerance",
        type=positive_float,
        default=None,
        metavar="F",
        help="a library may differ from onnxruntime by F x the action range per action dimension "
        "(default 1e-5: 4e-5 on Pendulum-v1's [-2, 2])",
    )
    p.add_argument(
        "--obs-bounds",
        type=obs_bounds,
        default=None,
        metavar="LOW,HIGH",
        help="sample the parity gate's box in [LOW, HIGH] in the observation dimensions the env leaves "
        "unbounded (by default those are checked on visited states only); a negative LOW is written "
        "--obs-bounds=-1,1",
    )
    p.add_argument(
        "--no-fast-math",
        action="store_true",
        help="keep exact exp/tanh in the TVM libraries (default: TVM's fast versions, still held to the parity gate)",
    )
    p.add_argument(
        "--allow-unverified",
        action="store_true",
        help="exit 0 even if some library could not be executed here (it stays marked 'not verified')",
    )
    p.add_argument(
        "--sign",
        type=Path,
        default=None,
        metavar="KEY",
        help="sign the bundle with this private key (from 'prune-and-export keygen'): manifest.sig, and a boot "
        "record per microcontroller image; devices given the public key run nothing else",
    )
    add_seed(p)
    # scale (issue 18): the Linux targets' compiles fanned out
    add_executor(p, "the Linux targets' compiles run")
    # precision of the exported weights (prune.quantize)
    p.add_argument(
        "--quantize",
        choices=("off", "int8"),
        default="off",
        help="int8: every Linear's weights as int8 codes with one float scale per output (weight-only, "
        "no search: what 'prune --quantize int8' deploys) before export; default off (float32)",
    )


def obs_bounds(text: str) -> tuple[float, float]:
    """argparse type of --obs-bounds: LOW,HIGH, two finite numbers with LOW < HIGH."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}")
    low, high = (finite_float(p.strip()) for p in parts)
    if not low < high:
        raise argparse.ArgumentTypeError(f"expected LOW < HIGH, got {text!r}")
    return low, high


def _fmt_err(v: float | None) -> str:
    return "-" if v is None else f"{v:.2e}"


def run(args: argparse.Namespace, console: Console) -> dict:
    # Deferred: export imports torch, ONNX and TVM (and tables need rich), which --help must not pay for.
    from rich.table import Table

    from targets import parse_target_list
    from tools.pipeline.export import export_controller

    check_output(args.out, "--out", folder=True, force=args.force)
    check_executor_flags(args)
    public_hex = check_signing_key(args.sign) if args.sign is not None else None  # a bad key: refused before any work
    targets = parse_target_list(args.targets)
    ctrl = controller_from_args(args)
    if (
        args.obs_bounds is not None and not ctrl.spec.obs_unbounded
    ):  # refused before any work, as export would refuse it
        raise ToolsError(
            f"--obs-bounds: the observation space of {ctrl.spec.env_id} is bounded in every dimension; "
            "there is no unbounded dimension to give bounds for"
        )
    if getattr(args, "quantize", "off") == "int8":
        from tools.pipeline.prune import int8_controller  # deferred: torch

        ctrl = int8_controller(ctrl)
    console.print(
        f"controller {ctrl.path} (sha256 {ctrl.sha256[:12]}, {ctrl.architecture}); seed {args.seed}; "
        f"targets {', '.join(t.name for t in targets)}"
    )
    executor = executor_from_args(args)
    try:
        with console.status("exporting") as status:
            exported = export_controller(
                ctrl,
                [t.name for t in targets],
                args.out,
                dynamic_batch=args.dynamic_batch,
                parity_samples=args.parity_samples,
                fast_math=not args.no_fast_math,
                runner=args.runner,
                force=args.force,
                seed=args.seed,
                progress=lambda m: status.update(m),
                sign=args.sign,
                parity_episodes=args.parity_episodes,
                parity_tolerance=args.parity_tolerance,
                obs_bounds=args.obs_bounds,
                map_fn=map if executor is None else executor.map,
            )
    finally:
        if executor is not None:
            executor.close()
    manifest = exported.manifest

    table = Table(title=f"bundle {args.out}")
    for col in ("artifact", "bytes", "kernels", "compile s", "executed by, on n obs", "max |err|", "status"):
        table.add_column(
            col, no_wrap=not col.startswith("executed"), min_width=18 if col.startswith("executed") else None
        )
    o = manifest.onnx
    gate = o.get("parity_gate") or {}
    if gate:
        tol = gate["tolerance"]
        console.print(
            f"parity gate: {gate['visited_states']} visited states + {gate['box_samples']} box samples; "
            + (
                f"tolerance {tol['relative_to_action_range']:g} x the action range"
                if tol["relative_to_action_range"] is not None
                else "absolute tolerance"
            )
            + f" ({', '.join(f'{v:.2g}' for v in tol['abs_per_action'])} per action)"
        )
    table.add_row(
        o["file"],
        str(o["bytes"]),
        "-",
        "-",
        f"onnxruntime vs torch, {o['n_parity']}",
        _fmt_err(o["parity_max_abs_err"]),
        "verified",
    )
    reasons = []
    for name, a in manifest.artifacts.items():
        v = a["verification"]
        if v["reason"]:
            reasons.append(f"{name}: {v['status']}: {v['reason']}")
        table.add_row(
            a["file"],
            str(a["bytes"]),
            str(a["kernels"]),
            f"{a['compile_seconds']:.2f}",
            f"{v['method'].replace(' (in-process)', '')}, {v['n']}",
            _fmt_err(v["max_abs_err"]),
            v["status"],
        )
    console.print(table)
    memory = exported.mcu_memory
    for name, m in memory.items():  # the linked firmware's footprint, what a microcontroller user decides by
        console.print(
            f"{name}: flash {m['flash_bytes']} of {m['flash_budget_bytes']} bytes, "
            f"RAM {m['ram_bytes']} of {m['ram_budget_bytes']} bytes"
        )
    for name, a in manifest.artifacts.items():  # a library built for this CPU dies of SIGILL on a CPU without its flags
        flags = (a.get("compile_flags") or {}).get("cpu_flags", "").split()
        if flags:
            console.print(
                f"note: {name} is built for CPU {a['compile_flags'].get('cpu', '?')} and runs only where the CPU has its "
                f"{len(flags)} flags (manifest compile_flags.cpu_flags; the stub refuses a CPU without them); "
                "x86_64-sse2 runs on any x86-64"
            )
    for line in reasons:
        console.print(f"[yellow]{line}[/]")
    unverified = exported.unverified
    if unverified:
        console.print(
            f"[yellow]not verified: {', '.join(unverified)}[/] (the bundle is written; these libraries "
            "were not executed here, see the reasons above)"
        )
    if public_hex is not None:
        console.print(f"signed: manifest.sig made with {args.sign}; public key {public_hex}")
    return {
        "ok": not unverified or args.allow_unverified,
        "bundle": str(args.out),
        "seed": args.seed,
        "signed": public_hex is not None,
        "public_key_hex": public_hex,
        "unverified": unverified,
        "parity": exported.parity,
        "parity_gate": gate,
        "mcu_memory": memory,
        "manifest": manifest.to_dict(),
    }
