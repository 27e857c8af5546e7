"""``prune-and-export hil``: the controller's gymnasium env (Pendulum-v1 by default) on the host, the bundle's controller in the device stub."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tools.cli.options import (
    add_controller,
    add_episodes,
    add_seed,
    finite_float,
    non_negative_int,
    positive_float,
    runner_name,
    source_from_args,
)
from tools.cli.outputs import check_output
from tools.cli.signing import check_public_key
from tools.errors import ToolsError
from tools.pipeline.choices import HIL_MODES, MAX_RATE_HZ

if TYPE_CHECKING:
    from rich.console import Console

HELP = (
    "hardware in the loop: the gymnasium env (Pendulum-v1 unless --env) on the host, the controller in the device stub"
)


PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def rate_hz(text: str) -> float:
    """argparse type of --rate-hz: a finite rate in (0, MAX_RATE_HZ], what the free-running loop can keep."""
    value = positive_float(text)
    if value > MAX_RATE_HZ:
        raise argparse.ArgumentTypeError(f"{text} Hz is faster than the host loop keeps (at most {MAX_RATE_HZ:g} Hz)")
    return value


def safe_action(text: str) -> str:
    """argparse type of --safe-action: comma-separated finite numbers (kept as text for the device's flag)."""
    for part in text.split(","):
        finite_float(part.strip())
    return text


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, required=True, metavar="DIR", help="bundle folder made by 'export'")
    p.add_argument("--target", required=True, help="target whose library and stub run (e.g. x86_64, cortex-a72)")
    add_controller(p)
    add_episodes(p, default=10)
    add_seed(p)
    p.add_argument(
        "--mode",
        choices=HIL_MODES,
        default="lockstep",
        help="lockstep: plant and controller wait for each other (must match the host); "
        "free: wall-clock ticks, a late action is a miss and the last action is held",
    )
    p.add_argument(
        "--rate-hz",
        type=rate_hz,
        default=None,
        help=f"free mode: loop rate, at most {MAX_RATE_HZ:g} (default the plant's 20 Hz); the rate kept is "
        "measured and reported (achieved_rate_hz, rate_kept)",
    )
    p.add_argument(
        "--deadline-ms",
        type=positive_float,
        default=None,
        help="free mode: round-trip deadline per tick (default one period)",
    )
    p.add_argument(
        "--device-deadline-us",
        type=non_negative_int,
        default=0,
        help="deadline of one inference on the device; an overrun gets an error frame and the safe action",
    )
    p.add_argument(
        "--safe-action",
        type=safe_action,
        default=None,
        metavar="V[,V...]",
        help="action the device sends with an error frame (default zeros)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PNG",
        help="draw per-episode returns (device vs host) and on-device inference time into this PNG (or .pdf, .svg)",
    )
    p.add_argument(
        "--runner",
        type=runner_name,
        default=None,
        help="override the target's runner: native, qemu or ssh://user@host[:port]",
    )
    p.add_argument(
        "--public-key",
        type=Path,
        default=None,
        metavar="FILE",
        help="run only a bundle signed with this key's private half (from 'prune-and-export keygen'): the "
        "signature is checked here first, then by the device before it loads anything",
    )
    p.add_argument(
        "--farm",
        type=Path,
        default=None,
        metavar="TOML",
        help="spread the episodes over the boards of --target listed in this farm file ([[board]] name, target, "
        "runner), each a Ray actor; a board that dies is taken out and its episode rerun on another",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="--farm: the Ray cluster whose nodes hold the boards (else RAY_ADDRESS, else a Ray instance started here)",
    )
    p.add_argument(
        "--compare-other-controller",
        action="store_true",
        help="allow a host controller that is not the file the bundle was exported from (sha256 differs): "
        "the run then compares the device with that other controller",
    )


def run(args: argparse.Namespace, console: Console) -> dict:
    if args.ray_address and args.farm is None:
        raise ToolsError(f"--ray-address {args.ray_address}: only with --farm")
    if args.farm is not None and args.runner is not None:
        raise ToolsError(f"--farm {args.farm} and --runner {args.runner}: each board of a farm names its own runner")
    # Deferred: the loop imports torch, gymnasium and the device session (and tables need rich), which --help must not pay for.
    from rich.progress import Progress
    from rich.table import Table

    from export import integer_only, load_int_model, verify_bundle, verify_bundle_signature
    from targets import get_target
    from tools.pipeline.hil import ACTION_FIDELITY, FIDELITY, host_controller, run_hil
    from tools.pipeline.hil_farm import run_hil_farm
    from tools.plant.policy import as_policy
    from tools.scale import read_farm

    farm = read_farm(args.farm) if args.farm is not None else None

    if args.plot is not None:
        if args.plot.suffix.lower() not in PLOT_SUFFIXES:
            raise ToolsError(f"--plot {args.plot}: expected a {', '.join(PLOT_SUFFIXES)} file")
        check_output(args.plot, "--plot")
    if not (args.bundle / "manifest.json").is_file():
        raise ToolsError(f"{args.bundle}: not a bundle (no manifest.json)")
    # Every file the device uses is checked before anything is opened or loaded: the signature over manifest.json
    # (with --public-key), then each file against its sha256; the host controller's bytes next (host_controller).
    if args.public_key is not None:
        public_hex = check_public_key(args.public_key)
        manifest = verify_bundle_signature(args.bundle, args.public_key)
    else:
        manifest, public_hex = verify_bundle(args.bundle), None
    if args.target not in manifest.artifacts:
        raise ToolsError(
            f"--target {args.target}: the bundle {args.bundle} has no library for it "
            f"(has: {', '.join(manifest.artifacts) or 'none'})"
        )
    controller = host_controller(
        args.bundle, source_from_args(args), compare_other=args.compare_other_controller, manifest=manifest
    )
    spec, device = controller.spec, manifest.controller_spec
    if (spec.obs_dim, spec.act_dim) != (device.obs_dim, device.act_dim):
        raise ToolsError(
            f"{controller.path}: takes {spec.obs_dim} observations and gives {spec.act_dim} actions, the bundle's "
            f"controller {device.obs_dim} and {device.act_dim}; they cannot share a loop"
        )
    if args.safe_action and len(args.safe_action.split(",")) != device.act_dim:
        raise ToolsError(
            f"--safe-action {args.safe_action}: {len(args.safe_action.split(','))} values, the controller has "
            f"{device.act_dim} actions"
        )
    policy = as_policy(controller.module)
    if integer_only(get_target(args.target)):  # the device runs the integer model: the host plays its exact twin
        policy = load_int_model(args.bundle, args.target).act
        console.print(
            f"host twin: the bundle's full-integer model for {args.target} (the device's integers, on the host)"
        )
    device_args: list[str] = []
    if args.device_deadline_us:
        device_args += ["--deadline-us", str(args.device_deadline_us)]
    if args.safe_action:
        device_args += ["--safe-action", args.safe_action]
    console.print(
        f"hil: bundle {args.bundle}, target {args.target}, mode {args.mode}, {args.episodes} episodes "
        f"from seed {args.seed}; host controller {controller.path} (sha256 {controller.sha256[:12]})"
    )
    start = time.perf_counter()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"{args.target} {args.mode}", total=args.episodes)
        farm_run = None
        run = (args.bundle, args.target, policy, args.episodes, args.seed, args.mode)
        options = {
            "rate_hz": args.rate_hz,
            "deadline_ms": args.deadline_ms,
            "device_args": tuple(device_args),
            "env_id": controller.spec.env_id,
            "public_key": args.public_key,
        }
        if farm is None:
            report = run_hil(*run, runner=args.runner, progress=lambda i, ep: bar.advance(task), **options)
        else:
            report, farm_run = run_hil_farm(
                farm, *run, address=args.ray_address, progress=lambda i, board: bar.advance(task), **options
            )
    seconds = time.perf_counter() - start
    result = report.to_dict()
    table = Table(
        title=f"HIL {args.target} ({report.runner}), {args.mode}"
        + (f" at {report.rate_hz:g} Hz, deadline {report.deadline_ms:g} ms" if args.mode == "free" else "")
    )
    for col in (
        "seed",
        "return dev",
        "return host",
        "|diff|",
        "infer us mean/p99/max",
        "rtt us mean/p99",
        "period ms mean/sd/max",
        "miss",
        "crc",
        "resync",
        "max|da|",
    ):
        table.add_column(col, justify="right")
    for e in report.episodes:
        lat, rtt, per = e.latency_us, e.rtt_us, e.period_ms
        table.add_row(
            str(e.seed),
            f"{e.ret:.3f}",
            f"{e.host_return:.3f}",
            f"{e.return_diff:.0e}",
            f"{lat['mean']:.0f}/{lat['p99']:.0f}/{lat['max']:.0f}",
            f"{rtt['mean']:.0f}/{rtt['p99']:.0f}",
            f"{per['mean']:.1f}/{per['std']:.1f}/{per['max']:.1f}",
            str(e.deadline_misses),
            str(e.crc_errors),
            str(e.resyncs),
            f"{e.max_abs_action_diff:.0e}",
        )
    console.print(table)
    if "qemu-system" in report.runner:
        console.print(
            "note: qemu-system-arm models no timing: inference 'us' are thousands of executed "
            "instructions (-icount), not cycles or device time"
        )
    elif "qemu" in report.runner:
        console.print("note: under qemu-user the inference times are emulated, not device times")
    if args.mode == "lockstep":
        verdict = "[green]matches[/green]" if report.fidelity_ok else "[red]DOES NOT match[/red]"
        console.print(
            f"lockstep fidelity: device {verdict} the host within {FIDELITY:g} per episode "
            f"(largest difference {report.max_return_diff:.2e}) and {ACTION_FIDELITY:g} per action "
            f"(largest difference {report.max_action_diff:.2e})"
        )
    elif report.achieved_rate_hz is not None and not report.rate_kept:
        console.print(
            f"[yellow]the loop did not keep {report.rate_hz:g} Hz[/]: it ran at {report.achieved_rate_hz:.1f} Hz "
            "(mean period); lower --rate-hz"
        )
    if args.plot:
        _plot(report, args.plot)
        console.print(f"plot written to {args.plot}")
        result["plot"] = str(args.plot)
    if public_hex is not None:
        console.print(f"signature: the bundle is signed with public key {public_hex} (checked here and on the device)")
    if farm_run is not None:
        for r in farm_run.reruns:
            console.print(
                f"[yellow]board {r.failed_board} died[/] ({r.reason}); its episode (seed {r.seed}) ran again on {r.rerun_on}"
            )
        result["farm"] = {"file": str(args.farm), **farm_run.to_dict()}
    result.update(
        seconds=seconds,
        bundle=str(args.bundle),
        controller=str(controller.path),
        controller_sha256=controller.sha256,
        public_key_hex=public_hex,
    )
    return result


def _plot(report, path: Path) -> None:
    """Returns on device vs host per seed, and the on-device inference time per episode (mean, p99, max)."""
    # Deferred: matplotlib is needed only with --plot.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = [e.seed for e in report.episodes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(seeds, report.host_returns, "o", label="host (torch in gymnasium)", markersize=8, mfc="none")
    left.plot(seeds, report.returns, "x", label=f"device ({report.target})")
    left.set_xlabel("episode seed")
    left.set_ylabel("closed-loop return")
    left.set_title(f"{report.mode}: largest |difference| {report.max_return_diff:.1e}")
    left.legend()
    for key, style in (("mean", "-o"), ("p99", "--"), ("max", ":")):
        right.plot(seeds, [e.latency_us[key] for e in report.episodes], style, label=key)
    right.set_xlabel("episode seed")
    right.set_ylabel("on-device inference time (us)")
    right.set_title(report.runner, fontsize=9)
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")  # written whole, then renamed into place
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    plt.close(fig)
