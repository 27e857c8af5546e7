"""Per-call latency at batch 1 of one controller through every backend, side by side in one run.

    python -m tools.bench.export [--controller REF.pt] [--pruned PRUNED.pt] [--out bench_export.json]

Backends: torch eager, onnxruntime, TVM with the default pipeline (plain ``tvm.compile``), TVM fused
(``relax.get_pipeline("zero")``), TVM fused + fast exp/tanh + our kernel schedule (what bundles ship). Everything runs
single-threaded on the native target, on the calling thread. Rounds are interleaved across backends
and models so machine load hits them all alike; the reported figure is the median over rounds of the
mean per-call CPU time of that thread (wall time is reported too: on a shared machine it also counts
time the thread spent waiting for a core).
Before any timing every backend's actions are checked against torch on ``--check-n`` observations
whose actions are clear of the action bounds (a saturated action hides any error); above the export
tolerance the run stops. Beside the backends: the plain-C loop with four outputs per pass (``gcc -O3
-march=native -ffast-math``, checked the same way; its time is per-call wall time from its own
process), the compute floor (multiply-adds at the FMA rate one core sustains, measured) and the
weight-streaming floor (the weights' bytes at the read rate measured for a buffer that size),
:mod:`tools.bench.floors`.
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

from export import PARITY_TOLERANCE, build, export_onnx, ort_session
from targets import native_target
from tools.bench.floors import PLAIN_C, floor_us, macs, measure_floors, plain_c_bench
from tools.bench.latency import non_saturating
from tools.controllers.load import load_controller
from tools.controllers.native import build_mlp, default_controller_path, pendulum_spec
from tools.errors import ToolsError

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
    max_abs_err_vs_torch: float  # over ``checked_inputs`` non-saturating observations, before timing
    checked_inputs: int = 0


def _cpu_mhz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1])
    except OSError:
        pass
    return float("nan")


def _callables(module: nn.Module, spec, obs: np.ndarray, workdir: Path) -> dict[str, tuple]:
    """backend -> (zero-argument call on ``obs``, kernel count, batch-1 call on any observation row)."""
    import tvm
    from tvm import relax

    out: dict[str, tuple] = {}
    x_t = torch.from_numpy(obs)

    def torch_call():
        with torch.no_grad():
            return module(x_t)

    def torch_one(o: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(o[None, :])).numpy()

    out["torch"] = (torch_call, None, torch_one)
    model, _ = export_onnx(module, spec, n_parity=1000)
    sess = ort_session(model)
    feed = {spec.input_name: obs}
    out["onnxruntime"] = (
        lambda: sess.run(None, feed),
        None,
        lambda o: sess.run(None, {spec.input_name: o[None, :]})[0],
    )
    target = native_target()
    for backend, pipeline in (("tvm-default", "default"), ("tvm-fused", "fused"), ("tvm-scheduled", "scheduled")):
        ex, kernels, _, _ = build(model, spec, target, pipeline)
        lib = workdir / f"{backend}-{len(list(workdir.iterdir()))}.so"
        ex.export_library(str(lib))
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(lib)), tvm.cpu())
        f, x = vm["main"], tvm.runtime.tensor(obs)
        out[backend] = (
            (lambda f=f, x=x: f(x)),
            len(kernels),
            lambda o, f=f: f(tvm.runtime.tensor(o[None, :])).numpy(),
        )
    return out


def check_backends(table: dict[str, tuple], module: nn.Module, spec, n: int, seed: int) -> dict[str, tuple[float, int]]:
    """backend -> (max |backend - torch|, inputs) on ``n`` non-saturating observations; ToolsError above tolerance."""

    def reference(o: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(o)).numpy()

    obs, expected = non_saturating(spec, reference, n, seed)
    span = np.asarray(spec.act_high, np.float64) - np.asarray(spec.act_low, np.float64)
    allowed = float(np.min(PARITY_TOLERANCE * np.where(np.isfinite(span) & (span > 0), span, 1.0)))
    out = {}
    for backend, (_, _, one) in table.items():
        got = np.stack([np.asarray(one(o), np.float64).reshape(-1) for o in obs])
        err = float(np.max(np.abs(got - expected.reshape(got.shape))))
        if err > allowed:
            raise ToolsError(
                f"{backend}: max |{backend} - torch| {err:.3g} on {len(obs)} non-saturating inputs "
                f"exceeds {allowed:.3g}; not timing it"
            )
        out[backend] = (err, len(obs))
    return out


def _time_block(call, n: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per call; every backend computes on the calling thread (one thread each)."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(n):
        call()
    return (time.thread_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


def bench(
    models: dict[str, nn.Module], spec, rounds: int, calls: int, seed: int, check_n: int = 1000
) -> list[BenchRow]:
    """Every (model, backend) checked against torch (:func:`check_backends`), then interleaved rounds; one row per pair."""
    obs = spec.sample_observations(1, seed)
    with tempfile.TemporaryDirectory() as d:
        table = {name: _callables(m, spec, obs, Path(d)) for name, m in models.items()}
        checked = {name: check_backends(table[name], m, spec, check_n, seed) for name, m in models.items()}
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
        err, inputs = checked[m][b]
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
                inputs,
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
    p.add_argument(
        "--check-n", type=int, default=1000, help="non-saturating observations each backend is checked on first"
    )
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

    rows = bench(models, spec, args.rounds, args.calls, args.seed, args.check_n)
    obs = spec.sample_observations(args.calls, args.seed)
    for m, mod in models.items():  # the plain-C loop: checked against torch, then timed in its own process
        hidden = next(r.hidden for r in rows if r.model == m)
        pc = plain_c_bench(mod, spec, obs, args.calls, max(100, args.calls // 10), args.check_n, args.seed)
        rows.append(
            BenchRow(m, hidden, PLAIN_C, pc.mean_us, pc.min_us, pc.mean_us, None, pc.check.max_error, pc.check.inputs)
        )
    measured = measure_floors(models)
    floors = {m: floor_us(mod, measured, m)[0] for m, mod in models.items()}
    stream_floors = {m: floor_us(mod, measured, m)[1] for m, mod in models.items()}
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
        "tvm_scheduled_over_stream_floor_unpruned": by[("unpruned", "tvm-scheduled")].us_per_call
        / stream_floors["unpruned"],
        "tvm_scheduled_over_plain_c_unpruned": by[("unpruned", "tvm-scheduled")].us_per_call
        / by[("unpruned", PLAIN_C)].us_per_call,
        "tvm_scheduled_over_plain_c_pruned": by[("pruned", "tvm-scheduled")].us_per_call
        / by[("pruned", PLAIN_C)].us_per_call,
    }
    weight_bytes = {m: 4 * sum(p.numel() for p in mod.parameters()) for m, mod in models.items()}
    for m, mod in models.items():
        console.print(
            f"floors {m}: compute {macs(mod)} multiply-adds / {measured.macs_per_ns:.1f} per ns (measured, "
            f"{measured.fma_lanes} lanes) = {floors[m]:.2f} µs; weights {weight_bytes[m] / 1024:.0f} KiB / "
            f"{measured.stream_bytes_per_ns[m]:.0f} B/ns (measured) = {stream_floors[m]:.2f} µs"
        )
    for k, v in ratios.items():
        console.print(f"{k}: {v:.2f}")
    result = {
        "seed": args.seed,
        "models": {"unpruned": ref_name, "pruned": pruned_name},
        "rows": [asdict(r) for r in rows],
        "ratios": ratios,
        "compute_floor_us": floors,
        "stream_floor_us": stream_floors,
        "floors": measured.to_dict(),
        "macs": {m: macs(mod) for m, mod in models.items()},
        "weight_bytes": weight_bytes,
        "cpu_mhz": _cpu_mhz(),
        "fma_lanes": measured.fma_lanes,
        "check_n": args.check_n,
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
