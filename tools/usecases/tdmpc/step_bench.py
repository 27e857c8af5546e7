"""Benchmark of the TD-MPC planner step (one MPPI iteration, batch 1, one thread): TVM against onnxruntime and torch.

Every runtime is checked before it is timed: onnxruntime against torch, and each TVM library (per
target, with the batched-product schedule of ``export/batched_schedule.py`` and without it, the
``fused`` pipeline) against onnxruntime and torch, on ``--check`` seeded planner inputs (z from encoded
Pendulum observations, mean in [-1, 1], std in [min, max], standard normal noise). The outputs are a
weighted mean of actions in [-1, 1] and a std clamped to [min_std, max_std]; the share of std values
inside the clamp (not saturated) is printed, so the check is seen to compare computed values. Then the
runtimes are timed in interleaved rounds (median per round, median of rounds), so the ratios of one
run come from the same machine load. Prints a table, writes JSON.

    python -m tools.usecases.tdmpc.step_bench --out /tmp/planner_step.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from export import ExportError
from targets import get_target, native_target
from tools.bench.latency import median_call_us
from tools.usecases.tdmpc.agent import load_agent
from tools.usecases.tdmpc.export import (
    PARITY_TOLERANCE,
    STEP_INPUTS,
    PlannerStep,
    compile_step_pipeline,
    export_step_onnx,
    step_inputs,
)

DEFAULT_TARGETS = ("x86_64", "x86_64-avx2", "native")
PIPELINES = ("scheduled", "fused")  # with the schedules (batch-1 and batched products), and TVM's default lowering


@dataclass
class Row:
    """One timed runtime: its median µs per planner step, its ratio to onnxruntime, and its checked error."""

    runtime: str
    target: str
    pipeline: str
    median_us: float
    round_medians_us: list[float]
    ratio_to_onnxruntime: float
    max_abs_err_vs_onnxruntime: float | None
    max_abs_err_vs_torch: float | None
    scheduled_kernels: int | None = None


def _max_err(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> float:
    return float(
        max(
            np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))
            for p, q in zip(a, b)
            for x, y in zip(p, q)
        )
    )


def _resolve_target(name: str):
    return native_target() if name == "native" else get_target(name)


def run(args: argparse.Namespace) -> dict:
    """Check every runtime on ``args.check`` inputs, time them in interleaved rounds, return the report."""
    import tvm

    torch.set_num_threads(1)
    loaded = load_agent(args.agent)
    agent, cfg = loaded.agent.eval(), loaded.planner
    step = PlannerStep(agent, cfg)
    sets = step_inputs(agent, cfg, args.check, args.seed)
    with tempfile.TemporaryDirectory(prefix="pae_step_bench.") as tmp:
        model = export_step_onnx(step, Path(tmp) / "planner_step.onnx")
        from export import ort_session

        sess = ort_session(model)
        with torch.no_grad():
            want = [[t.numpy() for t in step(*(torch.from_numpy(s[k]) for k in STEP_INPUTS))] for s in sets]
        ort_out = [sess.run(None, s) for s in sets]
        ort_err = _max_err(ort_out, want)
        if not ort_err <= PARITY_TOLERANCE:
            raise ExportError(
                f"onnxruntime differs from torch by {ort_err:.3g} on {len(sets)} inputs (seed {args.seed})"
            )
        std = np.concatenate([o[1].reshape(-1) for o in want])
        inside = float(np.mean((std > cfg.min_std + 1e-6) & (std < cfg.max_std - 1e-6)))
        one = sets[0]
        calls: dict[str, Callable[[], object]] = {}
        meta: dict[str, tuple[str, str, float | None, float | None, int | None]] = {}
        with torch.no_grad():
            calls["torch"] = lambda: step(*(torch.from_numpy(one[k]) for k in STEP_INPUTS))
        meta["torch"] = ("host", "-", None, 0.0, None)
        calls["onnxruntime"] = lambda: sess.run(None, one)
        meta["onnxruntime"] = ("host", "-", 0.0, ort_err, None)
        for name in args.targets:
            target = _resolve_target(name)
            for pipeline in PIPELINES:
                main, scheduled = compile_step_pipeline(
                    model, one, target, Path(tmp) / f"{name}-{pipeline}.so", pipeline
                )
                assert main is not None  # an x86_64 library runs here
                got = [[g.numpy() for g in main(*(tvm.runtime.tensor(s[k]) for k in STEP_INPUTS))] for s in sets]
                e_ort, e_torch = _max_err(got, ort_out), _max_err(got, want)
                if not e_ort <= PARITY_TOLERANCE:
                    raise ExportError(
                        f"TVM {name} {pipeline} differs from onnxruntime by {e_ort:.3g} on {len(sets)} inputs"
                    )
                argv = [tvm.runtime.tensor(one[k]) for k in STEP_INPUTS]
                label = f"tvm {name} {pipeline}"
                calls[label] = functools.partial(main, *argv)
                meta[label] = (target.name, pipeline, e_ort, e_torch, len(scheduled))
        for fn in calls.values():  # warm-up
            for _ in range(20):
                fn()
        rounds: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(args.rounds):
            for label, fn in calls.items():
                rounds[label].append(median_call_us(fn, args.calls))
    medians = {k: float(np.median(v)) for k, v in rounds.items()}
    rows = [
        Row(label, m[0], m[1], medians[label], rounds[label], medians[label] / medians["onnxruntime"], m[2], m[3], m[4])
        for label, m in meta.items()
    ]
    return {
        "agent": str(loaded.path),
        "agent_sha256": loaded.sha256,
        "planner": cfg.to_dict(),
        "seed": args.seed,
        "inputs_checked": len(sets),
        "tolerance": PARITY_TOLERANCE,
        "std_not_saturated": inside,
        "rounds": args.rounds,
        "calls_per_round": args.calls,
        "machine": {"cpu": platform.processor() or platform.machine(), "loadavg": list(os.getloadavg())},
        "rows": [asdict(r) for r in rows],
    }


def print_table(report: dict) -> None:
    """The report as a table: µs per planner step and ratio to onnxruntime, with each row's checked error."""
    p = report["planner"]
    print(
        f"planner step (one MPPI iteration: {p['samples']} samples + 1 guided, horizon {p['horizon']}), batch 1, one thread; "
        f"{report['inputs_checked']} inputs checked (seed {report['seed']}, {report['std_not_saturated']:.0%} of std "
        f"values inside the clamp), {report['rounds']} interleaved rounds x {report['calls_per_round']} calls; "
        f"load average {report['machine']['loadavg'][0]:.2f}"
    )
    head = f"{'runtime':32s} {'median us':>10s} {'/ onnxruntime':>14s} {'err vs ORT':>11s} {'err vs torch':>13s} {'scheduled':>10s}"
    print(head)
    print("-" * len(head))
    for r in report["rows"]:
        e1 = "-" if r["max_abs_err_vs_onnxruntime"] is None else f"{r['max_abs_err_vs_onnxruntime']:.1e}"
        e2 = "-" if r["max_abs_err_vs_torch"] is None else f"{r['max_abs_err_vs_torch']:.1e}"
        k = "-" if r["scheduled_kernels"] is None else str(r["scheduled_kernels"])
        print(
            f"{r['runtime']:32s} {r['median_us']:10.1f} {r['ratio_to_onnxruntime']:14.2f} {e1:>11s} {e2:>13s} {k:>10s}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default=None, help="agent file (default: the shipped agent)")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help="x86_64 TVM targets, comma-separated")
    parser.add_argument("--check", type=int, default=200, help="inputs every runtime is checked on before timing")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per runtime per round")
    parser.add_argument("--seed", type=int, default=0, help="seed of the checked inputs")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    args.targets = [t for t in args.targets.split(",") if t]
    for name in args.targets:  # every target known and runnable here before any work
        try:
            target = _resolve_target(name)
        except Exception as e:  # noqa: BLE001 - TargetError and friends: name the flag
            parser.error(f"--targets: {name!r}: {e}")
        if target.arch != "x86_64":
            parser.error(f"--targets: {name!r} is not an x86_64 target; only libraries this machine runs are timed")
    for flag in ("check", "rounds", "calls"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1")
    if args.agent is not None and not Path(args.agent).is_file():
        parser.error(f"--agent: no such file {args.agent}")
    print(f"seed {args.seed}")
    report = run(args)
    print_table(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        tmp.replace(args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
