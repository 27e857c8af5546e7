"""Per-inference latency of the device stub next to plain C, the machine's floors, onnxruntime and TVM-from-Python.

    python -m tools.bench.stub [--controller PATH] [--pruned PATH ... | --keep 0.25,0.1] [--n 3000] [--seed 0]

One run, one machine, the same observations for every engine: the unpruned controller and the pruned
ones are exported (ONNX + TVM for the default ``x86_64`` target, which is this machine's CPU, the
portable ``x86_64-sse2`` baseline and ARM targets), then timed one observation at a time (batch 1, as
a controller runs): the stub natively, the plain-C loop with four outputs per pass (``gcc -O3
-march=native -ffast-math``, :mod:`tools.bench.floors`), onnxruntime, TVM's Python VM and torch; beside
them the compute floor (multiply-adds at the measured FMA rate of one core) and the weight-streaming
floor (the weights' bytes at the measured read rate of a buffer that size). The stub and plain-C rows
are timed in ``--rounds`` rounds interleaved over models and engines, together with the baseline
target's stub running TVM's Relax VM (the stub before the runtime-free plan; ``--no-vm-row`` drops it) (load from other processes hits
all alike); their figure is the median of the rounds' p50s.
Under qemu-user ARM times are emulated, so ARM is reported only as the pruned/unpruned ratio.
Before any timing, each stub's and the plain-C loop's actions are checked against torch on ``--check-n``
observations whose actions are clear of the action bounds (every target); above the export tolerance
the run stops, exit 1. Writes ``bench_stub.json`` and ``bench_stub.png`` into ``--out`` and prints tables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.fx as fx
from rich.console import Console
from rich.table import Table
from torch import nn

from export import STUB_MODEL_ENV, export_bundle, run_stub_bench, scratch_in
from prune import find_groups, prune
from targets import get_target, parse_target_list
from tools.bench.floors import COMPUTE_FLOOR, PLAIN_C, STREAM_FLOOR, floor_us, measure_floors, plain_c_bench
from tools.bench.latency import StubMismatch, check_stub, python_runtimes, time_per_call
from tools.controllers.load import load_controller, plain_mlp
from tools.controllers.native import Controller, mlp_architecture
from tools.errors import ControllerError, ToolsError
from tools.plant.evaluate import closed_loop_return

UNPRUNED = "unpruned"
# the stub as it was before issue 19: TVM's Relax VM in the hot path, SSE2 baseline target
VM_STUB = "stub {target} (Relax VM)"


@contextlib.contextmanager
def _stub_model(choice: str) -> Iterator[None]:
    """Run the stub built with ``choice`` ('tvm': the Relax VM) inside the block, the default outside it."""
    before = os.environ.get(STUB_MODEL_ENV)
    os.environ[STUB_MODEL_ENV] = choice
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(STUB_MODEL_ENV, None)
        else:
            os.environ[STUB_MODEL_ENV] = before


@dataclass
class Row:
    """One engine timing one controller."""

    model: str  # unpruned | pruned (or pruned-<name> when several)
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


def _pooled(model: str, engine: str, params: int, rounds: list[dict]) -> Row:
    """A row from several rounds' summaries (µs): median of the round p50s/means/p99s, min of mins, max of maxes."""
    return Row(
        model,
        engine,
        params,
        float(np.median([r["p50"] for r in rounds])),
        float(np.median([r["mean"] for r in rounds])),
        float(np.median([r["p99"] for r in rounds])),
        float(min(r["min"] for r in rounds)),
        float(max(r["max"] for r in rounds)),
    )


def _floor_row(model: str, engine: str, params: int, us: float) -> Row:
    return Row(model, engine, params, us, us, us, us, us)


def _plain(controller: Controller) -> tuple[nn.Module, str]:
    """The controller as Linear/activation pairs (what every row here, plain C included, runs) and its activation.

    A foreign file's graph goes through :func:`plain_mlp`; a graph that is no plain MLP (a normaliser, LayerNorm)
    is refused before any work, naming the file.
    """
    if isinstance(controller.module, fx.GraphModule):
        try:
            module, arch = plain_mlp(controller)
        except ControllerError as e:
            raise ToolsError(f"--controller/--pruned: {e}; the plain-C row measures plain MLPs only") from e
        return module.eval(), str(arch["activation"])
    return controller.module.eval(), str(controller.architecture.get("activation", "elu"))


def _pruned(model: nn.Module, obs_dim: int, keep: float, seed: int):
    """Prune the model to ``keep`` of its parameters (uniform coefficients, L1), objective: fast return."""
    groups = find_groups(model, torch.zeros(1, obs_dim))
    result = prune(
        model, groups, keep, lambda m: closed_loop_return(m, 20, seed, "fast").mean, method="uniform", seed=seed
    )
    return result.model


def _keeps(text: str) -> list[float]:
    try:
        keeps = [float(k) for k in text.split(",") if k.strip()]
    except ValueError:
        keeps = []
    if not keeps or not all(0.0 < k < 1.0 for k in keeps):
        raise ToolsError(f"--keep {text!r}: expected fractions in (0, 1), comma-separated (e.g. 0.25,0.1)")
    return keeps


def _machine() -> dict:
    """What the figures were measured on: CPU, cores, load."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu": str(get_target("x86_64").tvm.get("mcpu", "generic")), "cores": os.cpu_count(), "loadavg": load}


def main(argv: list[str] | None = None) -> int:
    """The bench; bad input (a flag, a controller it cannot measure) is one line and exit 2."""
    try:
        return _main(argv)
    except ToolsError as e:
        print(f"bench_stub: error: {e}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench.stub", description=__doc__.splitlines()[0])
    p.add_argument("--controller", type=Path, default=None, help="unpruned controller (default: the bundled reference)")
    p.add_argument(
        "--pruned",
        type=Path,
        action="append",
        default=None,
        help="pruned controller file; repeat for several (default: prune --keep of it here)",
    )
    p.add_argument(
        "--keep",
        default="0.1",
        help="fractions of parameters kept when pruning here, comma-separated (default 0.1)",
    )
    p.add_argument("--n", type=int, default=3000, help="timed inferences per engine and round (default 3000)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the stub and plain-C rows (default 3)")
    p.add_argument(
        "--baseline-target",
        default="x86_64-sse2",
        help="a second x86-64 target whose stub is timed beside the default one ('' for none; default x86_64-sse2, "
        "the portable baseline)",
    )
    p.add_argument(
        "--no-vm-row",
        action="store_true",
        help="leave out the baseline target's stub with TVM's Relax VM in the hot path (the stub before the "
        "runtime-free plan), timed by default so every run shows the speed-up over it",
    )
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
    console = Console(stderr=True, width=160)
    torch.set_num_threads(1)
    if args.n < 1 or args.rounds < 1:
        raise ToolsError("--n and --rounds must be >= 1")
    arm_targets = [t.strip() for t in args.arm_targets.split(",") if t.strip()]
    baseline = [args.baseline_target] if args.baseline_target else []
    vm_engine = VM_STUB.format(target=baseline[0]) if baseline and not args.no_vm_row else ""
    machine = _machine()
    console.print(
        f"bench_stub: seed {args.seed}, n {args.n} x {args.rounds} rounds, CPU {machine['cpu']}, "
        f"load average {machine['loadavg'][0]:.2f} on {machine['cores']} cores, ARM targets {', '.join(arm_targets)}"
    )

    unpruned = load_controller(args.controller)
    unpruned_module, activation = _plain(unpruned)
    models = {UNPRUNED: unpruned_module}
    if args.pruned:
        for path in args.pruned:
            models["pruned" if len(args.pruned) == 1 else f"pruned-{path.stem}"] = _plain(load_controller(path))[0]
    else:
        keeps = _keeps(args.keep)
        for keep in keeps:
            pruned_model = _pruned(unpruned_module, unpruned.spec.obs_dim, keep, args.seed).eval()
            models["pruned" if len(keeps) == 1 else f"pruned@{keep:g}"] = pruned_model
    spec = unpruned.spec
    obs = spec.sample_observations(args.n, args.seed)
    x86 = ["x86_64", *baseline]
    targets = parse_target_list(",".join([*x86, *arm_targets]))
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    arm: dict[str, dict[str, dict]] = {t: {} for t in arm_targets}
    arch: dict[str, dict] = {}
    checks: dict[str, dict[str, dict]] = {}
    params = {m: sum(t.numel() for t in mod.parameters()) for m, mod in models.items()}
    bundles: dict[str, Path] = {}
    with scratch_in(args.out, "bench_stub.") as tmp:  # a killed run's folder goes with the next run
        for label, module in models.items():
            arch[label] = mlp_architecture(module, activation)
            console.print(f"{label}: {arch[label]['hidden']} hidden, {params[label]} parameters: exporting")
            bundles[label] = Path(tmp) / label
            export_bundle(module, spec, targets, bundles[label], n_parity=200, seed=args.seed)
            try:
                checks[label] = {
                    t: check_stub(bundles[label], t, module, args.check_n, args.seed).to_dict()
                    for t in [*x86, *arm_targets]
                }
                if vm_engine:
                    with _stub_model("tvm"):
                        checks[label][vm_engine] = check_stub(
                            bundles[label], baseline[0], module, args.check_n, args.seed
                        ).to_dict()
            except StubMismatch as e:
                console.print(f"bench_stub: {label}: {e}")
                return 1
            worst = max(c["max_error"] for c in checks[label].values())
            inputs = min(c["inputs"] for c in checks[label].values())
            console.print(
                f"{label}: stub actions match torch on {inputs} non-saturating inputs per target "
                f"(max error {worst:.2g})"
            )
        floors = measure_floors(models)
        # stub (default and baseline target) and plain C: rounds interleaved over models and engines
        timed: dict[tuple[str, str], list[dict]] = {}
        plain_checks: dict[str, dict] = {}
        for _ in range(args.rounds):
            for label, module in models.items():
                for t in x86:
                    lat = run_stub_bench(bundles[label], t, n=args.n, warmup=200, observations=obs)["latency_us"]
                    timed.setdefault((label, "stub" if t == "x86_64" else f"stub {t}"), []).append(lat)
                if vm_engine:
                    with _stub_model("tvm"):
                        lat = run_stub_bench(bundles[label], baseline[0], n=args.n, warmup=200, observations=obs)
                    timed.setdefault((label, vm_engine), []).append(lat["latency_us"])
                try:
                    pc = plain_c_bench(module, spec, obs, args.n, 200, args.check_n, args.seed)
                except ToolsError as e:
                    console.print(f"bench_stub: {label}: {e}")
                    return 1
                plain_checks[label] = pc.check.to_dict()
                timed.setdefault((label, PLAIN_C), []).append(
                    {"p50": pc.p50_us, "mean": pc.mean_us, "p99": pc.p99_us, "min": pc.min_us, "max": pc.max_us}
                )
        for (label, engine), rounds in timed.items():
            rows.append(_pooled(label, engine, params[label], rounds))
        for label, module in models.items():
            compute, stream = floor_us(module, floors, label)
            rows.append(_floor_row(label, COMPUTE_FLOOR, params[label], compute))
            rows.append(_floor_row(label, STREAM_FLOOR, params[label], stream))
            for engine, fn in python_runtimes(bundles[label], module).items():
                rows.append(_row(label, engine, params[label], time_per_call(fn, obs)))
            for t in arm_targets:
                arm[t][label] = run_stub_bench(
                    bundles[label], t, n=args.arm_n, warmup=100, observations=obs[: args.arm_n]
                )
    machine["loadavg_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows.sort(key=lambda r: (list(models).index(r.model), r.p50_us))
    by = {(r.model, r.engine): r for r in rows}
    table = Table(
        title=f"batch-1 inference latency on x86-64 ({machine['cpu']}; stub: the device program, native), "
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
            f"{r.p50_us:.2f}",
            f"{r.mean_us:.2f}",
            f"{r.p99_us:.2f}",
            f"{r.max_us:.2f}",
            f"{r.p50_us / ref.p50_us:.2f}",
        )
    console.print(table)
    yardsticks = {m: _yardsticks(by, m, baseline, vm_engine) for m in models}
    console.print(_yardstick_table(yardsticks, baseline, vm_engine))
    pruned = [m for m in models if m != UNPRUNED]
    by_model = {
        m: {
            engine: by[(UNPRUNED, engine)].p50_us / by[(m, engine)].p50_us
            for engine in ("stub", PLAIN_C, "onnxruntime", "tvm-python", "torch")
        }
        for m in pruned
    }
    for m in pruned:
        for t in arm_targets:
            by_model[m][f"stub {t} (qemu, {arm[t][UNPRUNED]['runtime']})"] = (
                arm[t][UNPRUNED]["latency_us"]["p50"] / arm[t][m]["latency_us"]["p50"]
            )
    for m in pruned:
        speed = Table(title=f"unpruned / {m} latency (p50): how much faster pruning made each engine")
        speed.add_column("engine")
        speed.add_column("ratio", justify="right")
        for k, v in by_model[m].items():
            speed.add_row(k, f"{v:.2f}")
        console.print(speed)
    if arm_targets:
        console.print(f"{', '.join(arm_targets)} under qemu-user: emulated times, reported only as the ratios above")
    console.print(
        f"load average {machine['loadavg'][0]:.2f} before, {machine['loadavg_after'][0]:.2f} after, "
        f"on {machine['cores']} cores (timings from a shared machine: read the ratios, measured in this one run)"
    )
    result = {
        "seed": args.seed,
        "n": args.n,
        "rounds": args.rounds,
        "controller": str(unpruned.path),
        "machine": machine,
        "architectures": arch,
        "stub_check": checks,
        "plain_c_check": plain_checks,
        "rows": [asdict(r) for r in rows],
        "yardsticks": yardsticks,
        "floors": floors.to_dict(),
        "unpruned_over_pruned_p50": by_model[pruned[0]],
        "unpruned_over_pruned_p50_by_model": by_model,
        "stub_speedup_p50": {
            f"{m}/{e}": by[(m, e)].p50_us / by[(m, "stub")].p50_us
            for m in models
            for e in ("onnxruntime", "tvm-python", "torch", PLAIN_C)
        },
        "arm": {
            t: {
                "n": args.arm_n,
                "runner": arm[t][UNPRUNED]["runner"],
                "runtime": arm[t][UNPRUNED]["runtime"],
                "pruned_over_unpruned_p50": arm[t][pruned[0]]["latency_us"]["p50"]
                / arm[t][UNPRUNED]["latency_us"]["p50"],
                "pruned_over_unpruned_p50_by_model": {
                    m: arm[t][m]["latency_us"]["p50"] / arm[t][UNPRUNED]["latency_us"]["p50"] for m in pruned
                },
            }
            for t in arm_targets
        },
    }
    (args.out / "bench_stub.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(rows, list(models), args.out / "bench_stub.png")
    console.print(f"wrote {args.out / 'bench_stub.json'} and {args.out / 'bench_stub.png'}")
    print(json.dumps(result))
    return 0


def _yardsticks(by: dict[tuple[str, str], Row], model: str, baseline: list[str], vm_engine: str = "") -> dict:
    """The stub's p50 against plain C, the two floors and (if timed) the portable baseline's stub and its VM stub."""
    stub = by[(model, "stub")].p50_us
    out = {
        "stub_us": stub,
        "plain_c_us": by[(model, PLAIN_C)].p50_us,
        "stub_over_plain_c": stub / by[(model, PLAIN_C)].p50_us,
        "compute_floor_us": by[(model, COMPUTE_FLOOR)].p50_us,
        "stub_over_compute_floor": stub / by[(model, COMPUTE_FLOOR)].p50_us,
        "stream_floor_us": by[(model, STREAM_FLOOR)].p50_us,
        "stub_over_stream_floor": stub / by[(model, STREAM_FLOOR)].p50_us,
    }
    for t in baseline:
        out[f"stub_{t}_us"] = by[(model, f"stub {t}")].p50_us
        out[f"stub_{t}_over_stub"] = by[(model, f"stub {t}")].p50_us / stub
    if vm_engine:
        out["vm_stub_us"] = by[(model, vm_engine)].p50_us
        out["vm_stub_over_stub"] = by[(model, vm_engine)].p50_us / stub
    return out


def _yardstick_table(yardsticks: dict[str, dict], baseline: list[str], vm_engine: str = "") -> Table:
    table = Table(title="the stub (default x86_64 target) against plain C and the floors (p50, this run)")
    cols = ["model", "stub us", "plain C us", "stub / plain C", "compute floor us", "stub / compute"]
    cols += ["stream floor us", "stub / stream", *(f"{t} / stub" for t in baseline)]
    cols += [f"{vm_engine} / stub"] if vm_engine else []
    for col in cols:
        table.add_column(col, justify="right")
    for m, y in yardsticks.items():
        cells = [m, f"{y['stub_us']:.2f}", f"{y['plain_c_us']:.2f}", f"{y['stub_over_plain_c']:.2f}"]
        cells += [f"{y['compute_floor_us']:.2f}", f"{y['stub_over_compute_floor']:.2f}", f"{y['stream_floor_us']:.2f}"]
        cells += [f"{y['stub_over_stream_floor']:.2f}", *(f"{y[f'stub_{t}_over_stub']:.2f}" for t in baseline)]
        cells += [f"{y['vm_stub_over_stub']:.2f}"] if vm_engine else []
        table.add_row(*cells)
    return table


def _plot(rows: list[Row], models: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = list(dict.fromkeys(r.engine for r in rows))
    x = np.arange(len(engines))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(10, 4))
    for i, model in enumerate(models):
        vals = [next((r.p50_us for r in rows if r.model == model and r.engine == e), np.nan) for e in engines]
        ax.bar(x + (i - (len(models) - 1) / 2) * width, vals, width, label=model)
    ax.set_xticks(x, engines, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("p50 latency per inference (us), batch 1")
    ax.set_yscale("log")
    ax.set_title("controller inference on x86-64: stub vs plain C, floors, onnxruntime, TVM-from-Python")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
