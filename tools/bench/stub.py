"""Per-inference latency of the device stub next to onnxruntime and TVM-from-Python, unpruned vs pruned.

    python -m tools.bench.stub [--controller PATH] [--pruned PATH | --keep 0.1] [--n 3000] [--seed 0]

One run, one machine, the same observations for every engine: the unpruned controller and the pruned
one are exported (ONNX + TVM for x86_64 and an ARM target), then timed one observation at a time
(batch 1, as a controller runs) in the stub natively, in onnxruntime, in TVM's Python VM, and in torch.
Under qemu-user ARM times are emulated, so ARM is reported only as the pruned/unpruned ratio.
Before any timing, each stub's actions are checked against torch on ``--check-n`` observations whose
actions are clear of the action bounds (every target); above the export tolerance the run stops, exit 1.
Writes ``bench_stub.json`` and ``bench_stub.png`` into ``--out`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from export import export_bundle, run_stub_bench, scratch_in
from prune import find_groups, prune
from targets import parse_target_list
from tools.bench.latency import StubMismatch, check_stub, python_runtimes, time_per_call
from tools.controllers.load import load_controller
from tools.controllers.native import mlp_architecture
from tools.plant.evaluate import closed_loop_return


@dataclass
class Row:
    """One engine timing one controller."""

    model: str  # unpruned | pruned
    engine: str
    params: int
    p50_us: float
    mean_us: float
    p99_us: float
    min_us: float
    max_us: float


def _row(model: str, engine: str, params: int, t_us: np.ndarray) -> Row:
    q = np.percentile(t_us, [50, 99])
    return Row(
        model, engine, params, float(q[0]), float(t_us.mean()), float(q[1]), float(t_us.min()), float(t_us.max())
    )


def _pruned(controller, keep: float, seed: int):
    """Prune the controller to ``keep`` of its parameters (uniform coefficients, L1), objective: fast return."""
    model = controller.module
    groups = find_groups(model, torch.zeros(1, controller.spec.obs_dim))
    result = prune(
        model, groups, keep, lambda m: closed_loop_return(m, 20, seed, "fast").mean, method="uniform", seed=seed
    )
    return result.model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench.stub", description=__doc__.splitlines()[0])
    p.add_argument("--controller", type=Path, default=None, help="unpruned controller (default: the bundled reference)")
    p.add_argument(
        "--pruned", type=Path, default=None, help="pruned controller file (default: prune --keep of it here)"
    )
    p.add_argument(
        "--keep", type=float, default=0.1, help="fraction of parameters kept when pruning here (default 0.1)"
    )
    p.add_argument("--n", type=int, default=3000, help="timed inferences per engine (default 3000)")
    p.add_argument(
        "--arm-targets",
        default="cortex-a72,cortex-a7",
        help="ARM targets timed under qemu, reported as pruned/unpruned ratios (default cortex-a72,cortex-a7)",
    )
    p.add_argument("--arm-n", type=int, default=1000, help="timed inferences under qemu (default 1000)")
    p.add_argument(
        "--check-n",
        type=int,
        default=1000,
        help="non-saturating observations on which the stub's actions are checked before timing (default 1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="observations and pruning seed (default 0)")
    p.add_argument("--out", type=Path, default=Path("bench_stub_out"), help="folder for JSON, PNG and bundles")
    args = p.parse_args(argv)
    console = Console(stderr=True)
    torch.set_num_threads(1)
    arm_targets = [t.strip() for t in args.arm_targets.split(",") if t.strip()]
    console.print(f"bench_stub: seed {args.seed}, n {args.n}, ARM targets {', '.join(arm_targets)}")

    unpruned = load_controller(args.controller)
    pruned_module = load_controller(args.pruned).module if args.pruned else _pruned(unpruned, args.keep, args.seed)
    models = {"unpruned": unpruned.module, "pruned": pruned_module.eval()}
    spec = unpruned.spec
    obs = spec.sample_observations(args.n, args.seed)
    targets = parse_target_list(",".join(["x86_64", *arm_targets]))
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    arm: dict[str, dict[str, dict]] = {t: {} for t in arm_targets}
    arch: dict[str, dict] = {}
    checks: dict[str, dict[str, dict]] = {}
    with scratch_in(args.out, "bench_stub.") as tmp:  # a killed run's folder goes with the next run
        for label, module in models.items():
            params = sum(t.numel() for t in module.parameters())
            arch[label] = mlp_architecture(module, unpruned.architecture.get("activation", "elu"))
            console.print(f"{label}: {arch[label]['hidden']} hidden, {params} parameters: exporting")
            bundle = Path(tmp) / label
            export_bundle(module, spec, targets, bundle, n_parity=200, seed=args.seed)
            try:
                checks[label] = {
                    t: check_stub(bundle, t, module, args.check_n, args.seed).to_dict()
                    for t in ["x86_64", *arm_targets]
                }
            except StubMismatch as e:
                console.print(f"bench_stub: {label}: {e}")
                return 1
            worst = max(c["max_error"] for c in checks[label].values())
            inputs = min(c["inputs"] for c in checks[label].values())
            console.print(
                f"{label}: stub actions match torch on {inputs} non-saturating inputs per target "
                f"(max error {worst:.2g})"
            )
            stub = run_stub_bench(bundle, "x86_64", n=args.n, warmup=200, observations=obs)
            lat = stub["latency_us"]
            rows.append(Row(label, "stub", params, lat["p50"], lat["mean"], lat["p99"], lat["min"], lat["max"]))
            for engine, fn in python_runtimes(bundle, module).items():
                rows.append(_row(label, engine, params, time_per_call(fn, obs)))
            for t in arm_targets:
                arm[t][label] = run_stub_bench(bundle, t, n=args.arm_n, warmup=100, observations=obs[: args.arm_n])
    by = {(r.model, r.engine): r for r in rows}
    table = Table(
        title=f"batch-1 inference latency on x86-64 (stub: the C++ device program, native), "
        f"{args.n} observations, seed {args.seed}"
    )
    for col in ("model", "engine", "params", "p50 us", "mean us", "p99 us", "max us", "x stub (p50)"):
        table.add_column(col, justify="right")
    for r in rows:
        ref = by[(r.model, "stub")]
        table.add_row(
            r.model,
            r.engine,
            str(r.params),
            f"{r.p50_us:.1f}",
            f"{r.mean_us:.1f}",
            f"{r.p99_us:.1f}",
            f"{r.max_us:.1f}",
            f"{r.p50_us / ref.p50_us:.2f}",
        )
    console.print(table)
    ratios = {
        engine: by[("unpruned", engine)].p50_us / by[("pruned", engine)].p50_us
        for engine in ("stub", "onnxruntime", "tvm-python", "torch")
    }
    for t in arm_targets:
        ratios[f"stub {t} (qemu, {arm[t]['unpruned']['runtime']})"] = (
            arm[t]["unpruned"]["latency_us"]["p50"] / arm[t]["pruned"]["latency_us"]["p50"]
        )
    speed = Table(title="unpruned / pruned latency (p50): how much faster pruning made each engine")
    speed.add_column("engine")
    speed.add_column("ratio", justify="right")
    for k, v in ratios.items():
        speed.add_row(k, f"{v:.2f}")
    console.print(speed)
    console.print(f"{', '.join(arm_targets)} under qemu-user: emulated times, reported only as the ratios above")
    result = {
        "seed": args.seed,
        "n": args.n,
        "controller": str(unpruned.path),
        "architectures": arch,
        "stub_check": checks,
        "rows": [asdict(r) for r in rows],
        "unpruned_over_pruned_p50": ratios,
        "stub_speedup_p50": {
            f"{m}/{e}": by[(m, e)].p50_us / by[(m, "stub")].p50_us
            for m in models
            for e in ("onnxruntime", "tvm-python", "torch")
        },
        "arm": {
            t: {
                "n": args.arm_n,
                "runner": arm[t]["unpruned"]["runner"],
                "runtime": arm[t]["unpruned"]["runtime"],
                "pruned_over_unpruned_p50": arm[t]["pruned"]["latency_us"]["p50"]
                / arm[t]["unpruned"]["latency_us"]["p50"],
            }
            for t in arm_targets
        },
    }
    (args.out / "bench_stub.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(rows, args.out / "bench_stub.png")
    console.print(f"wrote {args.out / 'bench_stub.json'} and {args.out / 'bench_stub.png'}")
    print(json.dumps(result))
    return 0


def _plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = list(dict.fromkeys(r.engine for r in rows))
    x = np.arange(len(engines))
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, model in enumerate(("unpruned", "pruned")):
        vals = [next(r.p50_us for r in rows if r.model == model and r.engine == e) for e in engines]
        ax.bar(x + (i - 0.5) * 0.38, vals, 0.38, label=model)
    ax.set_xticks(x, engines)
    ax.set_ylabel("p50 latency per inference (us), batch 1")
    ax.set_yscale("log")
    ax.set_title("controller inference on x86-64: stub vs onnxruntime vs TVM-from-Python")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
