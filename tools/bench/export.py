"""Per-call latency at batch 1 of one controller through every backend, side by side in one run.

    python -m tools.bench.export [--controller REF.pt] [--pruned PRUNED.pt] [--out bench_export.json]

Backends: torch eager, onnxruntime, TVM with the default pipeline (plain ``tvm.compile``), TVM fused
(``relax.get_pipeline("zero")``), TVM fused + fast exp/tanh + our kernel schedule (what bundles ship). Everything runs
single-threaded on the native target, on the calling thread. Rounds are interleaved across backends
and models so machine load hits them all alike; the reported figure is the median over rounds of the
mean per-call CPU time of that thread (wall time is reported too: on a shared machine it also counts
time the thread spent waiting for a core).
The compute floor is the model's multiply-adds over one core's FMA peak (2 FMA units x SIMD lanes x
clock); the weights also have to stream from cache, so real kernels sit above it.
Without ``--pruned``, the "pruned" model is a 3-64-64-1 MLP of the same kind (what a pruned
256-256 controller becomes at about 75% of units removed), with seeded random weights.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export import build, export_onnx, ort_session
from targets import host_cpu_flags, native_target
from tools.controllers.load import load_controller
from tools.controllers.native import build_mlp, default_controller_path, pendulum_spec

BACKENDS = ("torch", "onnxruntime", "tvm-default", "tvm-fused", "tvm-scheduled")
# tvm-default: plain tvm.compile; tvm-fused: relax "zero" pipeline (fused, weights folded);
# tvm-scheduled: fast math + "zero" + the hand kernel schedule (what bundles ship)


@dataclass
class BenchRow:
    """Latency of one model through one backend."""

    model: str
    hidden: list[int]
    backend: str
    us_per_call: float  # median over rounds of the mean per-call CPU time of the calling thread
    us_min_round: float
    wall_us_per_call: float  # the same in wall-clock time (inflated when other processes share the cores)
    kernels: int | None
    max_abs_err_vs_torch: float


def _macs(module: nn.Module) -> int:
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


def _cpu_mhz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1])
    except OSError:
        pass
    return float("nan")


def _callables(module: nn.Module, spec, obs: np.ndarray, workdir: Path) -> dict[str, tuple]:
    """backend -> (zero-argument call, kernel count, output of one call)."""
    import tvm
    from tvm import relax

    out: dict[str, tuple] = {}
    x_t = torch.from_numpy(obs)

    def torch_call():
        with torch.no_grad():
            return module(x_t)

    out["torch"] = (torch_call, None, torch_call().numpy())
    model, _ = export_onnx(module, spec, n_parity=1000)
    sess = ort_session(model)
    feed = {spec.input_name: obs}
    out["onnxruntime"] = (lambda: sess.run(None, feed), None, sess.run(None, feed)[0])
    target = native_target()
    for backend, pipeline in (("tvm-default", "default"), ("tvm-fused", "fused"), ("tvm-scheduled", "scheduled")):
        ex, kernels, _, _ = build(model, spec, target, pipeline)
        lib = workdir / f"{backend}-{len(list(workdir.iterdir()))}.so"
        ex.export_library(str(lib))
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(lib)), tvm.cpu())
        f, x = vm["main"], tvm.runtime.tensor(obs)
        out[backend] = ((lambda f=f, x=x: f(x)), len(kernels), f(x).numpy())
    return out


def _time_block(call, n: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per call; every backend computes on the calling thread (one thread each)."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(n):
        call()
    return (time.thread_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


def bench(models: dict[str, nn.Module], spec, rounds: int, calls: int, seed: int) -> list[BenchRow]:
    """Interleaved rounds over every (model, backend); one row per pair."""
    obs = spec.sample_observations(1, seed)
    with tempfile.TemporaryDirectory() as d:
        table = {name: _callables(m, spec, obs, Path(d)) for name, m in models.items()}
        for backends in table.values():  # warm-up: caches, lazy init, frequency ramp
            for call, _, _ in backends.values():
                _time_block(call, max(100, calls // 10))
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {(m, b): [] for m in table for b in table[m]}
        for _ in range(rounds):
            for m, backends in table.items():
                for b, (call, _, _) in backends.items():
                    samples[(m, b)].append(_time_block(call, calls))
    rows = []
    for (m, b), times in samples.items():
        ref = table[m]["torch"][2]
        err = float(np.max(np.abs(np.asarray(table[m][b][2]) - ref)))
        hidden = [layer.out_features for layer in models[m].modules() if isinstance(layer, nn.Linear)][:-1]
        cpu = [c for c, _ in times]
        rows.append(
            BenchRow(
                m,
                hidden,
                b,
                statistics.median(cpu),
                min(cpu),
                statistics.median(w for _, w in times),
                table[m][b][1],
                err,
            )
        )
    return rows


def _plot(rows: list[BenchRow], floors: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in rows))
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        vals = [next(r.us_per_call for r in rows if r.model == m and r.backend == b) for b in BACKENDS]
        xs = np.arange(len(BACKENDS)) + i * width
        ax.bar(xs, vals, width, label=f"{m} {next(r.hidden for r in rows if r.model == m)}")
        ax.axhline(floors[m], color=f"C{i}", linestyle=":", linewidth=1)
    ax.set_xticks(np.arange(len(BACKENDS)) + width * (len(models) - 1) / 2, BACKENDS)
    ax.set_yscale("log")
    ax.set_ylabel("µs per call (batch 1, 1 thread, log)")
    ax.set_title("controller latency by backend (dotted: compute floor)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    from rich.console import Console
    from rich.table import Table

    p = argparse.ArgumentParser(prog="python -m tools.bench.export", description=__doc__.splitlines()[0])
    p.add_argument("--controller", type=Path, default=None, help="unpruned controller (default: the bundled reference)")
    p.add_argument("--pruned", type=Path, default=None, help="pruned controller (default: a 3-64-64-1 MLP, seeded)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=2000, help="calls per round and backend")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench_export.json"))
    args = p.parse_args(argv)
    console = Console(highlight=False, width=160)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    ref_path = args.controller or default_controller_path()
    if ref_path.exists():
        ref = load_controller(ref_path)
        spec, unpruned, ref_name = ref.spec, ref.module, str(ref_path)
        activation = ref.architecture.get("activation", "elu")
    else:  # the reference controller is not trained yet: same shape, seeded random weights
        spec, activation = pendulum_spec(), "elu"
        unpruned, ref_name = build_mlp(spec, [256, 256], activation).eval(), "random 3-256-256-1 ELU (seeded)"
    if args.pruned:
        pruned, pruned_name = load_controller(args.pruned).module, str(args.pruned)
    else:
        pruned, pruned_name = build_mlp(spec, [64, 64], activation).eval(), f"random 3-64-64-1 {activation} (seeded)"
    models = {"unpruned": unpruned.eval(), "pruned": pruned.eval()}
    console.print(
        f"seed {args.seed}; unpruned: {ref_name}; pruned: {pruned_name}; "
        f"{args.rounds} rounds x {args.calls} calls, interleaved"
    )

    rows = bench(models, spec, args.rounds, args.calls, args.seed)
    mhz = _cpu_mhz()
    lanes = 16 if "avx512f" in host_cpu_flags() else 8 if "avx2" in host_cpu_flags() else 4
    peak_macs_per_us = mhz * 2 * lanes  # 2 FMA pipes x lanes x cycles per µs
    floors = {m: _macs(mod) / peak_macs_per_us for m, mod in models.items()}
    by = {(r.model, r.backend): r for r in rows}

    table = Table(title="latency per call, batch 1, one thread (CPU µs, median of rounds); max|err| vs torch")
    for col in ("model", "backend", "kernels", "µs/call", "wall µs", "vs onnxruntime", "vs tvm-sched", "max|err|"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(
            f"{r.model} {r.hidden}",
            r.backend,
            "-" if r.kernels is None else str(r.kernels),
            f"{r.us_per_call:.2f}",
            f"{r.wall_us_per_call:.2f}",
            f"{by[(r.model, 'onnxruntime')].us_per_call / r.us_per_call:.2f}x",
            f"{r.us_per_call / by[(r.model, 'tvm-scheduled')].us_per_call:.2f}x",
            f"{r.max_abs_err_vs_torch:.1e}",
        )
    console.print(table)
    ratios = {
        "ort_over_tvm_scheduled_unpruned": by[("unpruned", "onnxruntime")].us_per_call
        / by[("unpruned", "tvm-scheduled")].us_per_call,
        "ort_over_tvm_scheduled_pruned": by[("pruned", "onnxruntime")].us_per_call
        / by[("pruned", "tvm-scheduled")].us_per_call,
        "tvm_default_over_scheduled_unpruned": by[("unpruned", "tvm-default")].us_per_call
        / by[("unpruned", "tvm-scheduled")].us_per_call,
        "torch_over_tvm_scheduled_unpruned": by[("unpruned", "torch")].us_per_call
        / by[("unpruned", "tvm-scheduled")].us_per_call,
        "unpruned_over_pruned_tvm_scheduled": by[("unpruned", "tvm-scheduled")].us_per_call
        / by[("pruned", "tvm-scheduled")].us_per_call,
        "tvm_scheduled_over_floor_unpruned": by[("unpruned", "tvm-scheduled")].us_per_call / floors["unpruned"],
    }
    weight_bytes = {m: 4 * sum(p.numel() for p in mod.parameters()) for m, mod in models.items()}
    for m, mod in models.items():
        console.print(
            f"compute floor {m}: {_macs(mod)} multiply-adds / ({mhz:.0f} MHz x 2 FMA x {lanes} lanes) "
            f"= {floors[m]:.2f} µs; {weight_bytes[m] / 1024:.0f} KiB of weights read per call"
        )
    for k, v in ratios.items():
        console.print(f"{k}: {v:.2f}")
    result = {
        "seed": args.seed,
        "models": {"unpruned": ref_name, "pruned": pruned_name},
        "rows": [asdict(r) for r in rows],
        "ratios": ratios,
        "compute_floor_us": floors,
        "macs": {m: _macs(mod) for m, mod in models.items()},
        "weight_bytes": weight_bytes,
        "cpu_mhz": mhz,
        "fma_lanes": lanes,
        "rounds": args.rounds,
        "calls": args.calls,
    }
    args.out.write_text(json.dumps(result, indent=2))
    png = args.out.with_suffix(".png")
    _plot(rows, floors, png)
    console.print(f"wrote {args.out} and {png}")
    return result


if __name__ == "__main__":
    main()
