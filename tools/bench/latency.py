"""Batch-1 latency of a controller per control step: torch eager, onnxruntime, TVM from Python, the device stub.

Shared by ``prune-and-export bench`` and ``python -m tools.bench.stub``. Every runtime is timed one
observation at a time (a controller acts on one state per step), single-threaded, after a warm-up.
Rounds are interleaved across models so that load from other processes on a shared machine hits
every model alike; the spread between round medians says how stable the figures are.
Under qemu-user the stub's times are emulated: they are kept only as ratios to the unpruned model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from export import (
    PARITY_TOLERANCE,
    ControllerSpec,
    Manifest,
    ort_actions,
    ort_session,
    read_manifest,
    run_stub_batch,
    run_stub_bench,
)
from tools.errors import ToolsError

PYTHON_RUNTIMES = ("torch", "onnxruntime", "tvm-python")
Call = Callable[[np.ndarray], object]


@dataclass
class LatencyStats:
    """Per-call latency of one model in one runtime (µs), pooled over rounds."""

    n: int  # timed calls in total
    rounds: int
    median_us: float
    p99_us: float
    max_us: float
    spread: float  # interquartile range of the rounds' medians / median: how much the rounds disagree

    def to_dict(self) -> dict:
        return asdict(self)


def relative_spread(round_medians: list[float], median: float) -> float:
    """Interquartile range of the per-round medians over the overall median (one disturbed round barely moves it)."""
    q1, q3 = np.percentile(round_medians, [25, 75])
    return float((q3 - q1) / median) if median > 0 else 0.0


def stats_from_rounds(rounds: list[np.ndarray]) -> LatencyStats:
    """Median, p99 and max of all per-call samples, and the spread between the rounds' medians."""
    pooled = np.concatenate(rounds)
    median = float(np.median(pooled))
    return LatencyStats(
        int(pooled.size),
        len(rounds),
        median,
        float(np.percentile(pooled, 99)),
        float(pooled.max()),
        relative_spread([float(np.median(r)) for r in rounds], median),
    )


def time_per_call(fn: Call, obs: np.ndarray, warmup: int = 100) -> np.ndarray:
    """Wall time of ``fn(o)`` for each observation row, in µs, after ``warmup`` untimed calls."""
    for i in range(warmup):
        fn(obs[i % len(obs)])
    t = np.empty(len(obs))
    for i, o in enumerate(obs):
        t0 = time.perf_counter()
        fn(o)
        t[i] = time.perf_counter() - t0
    return t * 1e6


def median_call_us(fn: Callable[[], object], calls: int, warmup: int = 0) -> float:
    """Median wall time of ``fn()`` over ``calls`` timed calls, in µs, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    t = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        t[i] = time.perf_counter() - t0
    return float(np.median(t) * 1e6)


def python_runtimes(bundle: Path, module: torch.nn.Module, library: str = "x86_64.so") -> dict[str, Call]:
    """Batch-1 callables over the same controller: torch eager, onnxruntime and the bundle's TVM library (one thread)."""
    import onnxruntime as ort
    import tvm
    from tvm import relax

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(Path(bundle) / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    main = relax.VirtualMachine(tvm.runtime.load_module(str(Path(bundle) / library)), tvm.cpu())["main"]
    # A control loop from Python keeps one input buffer that TVM sees without a copy (DLPack needs it
    # 64-byte aligned) and reads the action the same way: tvm.runtime.tensor(obs) + .numpy() would
    # add about 45 us of conversions per step to a 11 us model.
    n = int(sess.get_inputs()[0].shape[-1])
    raw = np.zeros(n * 4 + 64, np.uint8)
    offset = (-raw.ctypes.data) % 64
    obs_buf = raw[offset : offset + n * 4].view(np.float32).reshape(1, n)
    obs_tvm = tvm.runtime.from_dlpack(obs_buf)

    def tvm_python(o: np.ndarray):
        obs_buf[0] = o
        return np.from_dlpack(main(obs_tvm))

    def torch_eager(o: np.ndarray):
        with torch.no_grad():
            return module(torch.from_numpy(o[None, :]))

    return {
        "torch": torch_eager,
        "onnxruntime": lambda o: sess.run(None, {name: o[None, :]}),
        "tvm-python": tvm_python,
    }


def measure_python(
    calls_by_model: dict[str, dict[str, Call]],
    obs: np.ndarray,
    rounds: int,
    warmup: int,
    tick: Callable[[], None] = lambda: None,
) -> dict[tuple[str, str], LatencyStats]:
    """(model, runtime) -> latency, rounds interleaved over every model and runtime."""
    samples: dict[tuple[str, str], list[np.ndarray]] = {(m, r): [] for m, rs in calls_by_model.items() for r in rs}
    for i in range(rounds):
        for m, runtimes in calls_by_model.items():
            for r, fn in runtimes.items():
                samples[(m, r)].append(time_per_call(fn, obs, warmup if i == 0 else warmup // 10))
        tick()
    return {key: stats_from_rounds(rs) for key, rs in samples.items()}


class StubMismatch(ToolsError):
    """The stub's actions disagreed with the reference beyond the export tolerance: its timings would mean nothing."""


@dataclass
class StubCheck:
    """The stub's actions checked against a reference before it is timed (recorded next to its latency)."""

    target: str
    reference: str  # torch (the module exported) or onnxruntime (the bundle's model.onnx)
    inputs: int  # observations checked, all with actions clear of the action bounds
    max_error: float  # largest |stub - reference| over those inputs and every action dimension
    tolerance: float  # the smallest allowed error: PARITY_TOLERANCE x the action range

    def to_dict(self) -> dict:
        return asdict(self)


def non_saturating(
    spec: ControllerSpec, reference: Callable[[np.ndarray], np.ndarray], n: int, seed: int, margin: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` sampled observations whose reference actions stay ``margin`` x range inside the bounds.

    A saturated action (clipped, or squashed flat) hides an error in the network before it: such inputs
    check nothing, so they are left out.
    """
    pool = spec.sample_observations(max(20 * n, 1000), seed + 1).astype(np.float32)
    actions = np.asarray(reference(pool), np.float64).reshape(len(pool), -1)
    low, high = np.asarray(spec.act_low, np.float64), np.asarray(spec.act_high, np.float64)
    pad = np.where(np.isfinite(high - low), margin * (high - low), 0.0)
    inside = np.all((actions > low + pad) & (actions < high - pad), axis=1)
    return pool[inside][:n], actions[inside][:n]


def _export_thresholds(manifest: Manifest, spec: ControllerSpec) -> np.ndarray:
    """The per-action errors the bundle's own parity gate allowed at export (the TD-MPC planner step ships with a
    looser one than a controller); the default gate's for a bundle that predates the record."""
    recorded = (manifest.onnx.get("parity_gate") or {}).get("tolerance", {}).get("abs_per_action")
    if recorded:
        return np.asarray(recorded, np.float64)
    span = np.asarray(spec.act_high, np.float64) - np.asarray(spec.act_low, np.float64)
    return PARITY_TOLERANCE * np.where(np.isfinite(span) & (span > 0), span, 1.0)


def check_stub(
    bundle: Path,
    target: str,
    module: torch.nn.Module | None = None,
    n: int = 1000,
    seed: int = 0,
    public_key: Path | None = None,
) -> StubCheck:
    """The stub's actions on ``n`` non-saturating inputs vs torch (``module``) or the bundle's ONNX; raises above tolerance.

    Run before timing: a stub that computes something else would be timed just as happily.
    """
    manifest = read_manifest(bundle)
    spec = manifest.controller_spec
    if module is not None:

        def reference(o: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(o)).numpy()

        name = "torch"
    else:
        sess = ort_session(str(bundle / "model.onnx"))
        batch_one = sess.get_inputs()[0].shape[0] == 1

        def reference(o: np.ndarray) -> np.ndarray:
            return ort_actions(sess, spec, o, batch_one)

        name = "onnxruntime"
    obs, expected = non_saturating(spec, reference, n, seed)
    if len(obs) == 0:
        raise StubMismatch(f"stub check for {target!r}: no sampled observation gives an action clear of the bounds")
    got = np.asarray(run_stub_batch(bundle, target, obs, public_key=public_key), np.float64).reshape(expected.shape)
    allowed = _export_thresholds(manifest, spec)
    err = np.abs(got - expected)
    check = StubCheck(target, name, len(obs), float(err.max()), float(allowed.min()))
    if not np.all(err <= allowed):
        row, dim = np.unravel_index(int(np.argmax(err / allowed)), err.shape)
        raise StubMismatch(
            f"stub check for {target!r} ({bundle}): max |stub - {name}| {check.max_error:.3g} on "
            f"{check.inputs} non-saturating inputs (row {row}, action {dim}: stub {got[row, dim]:.6g}, "
            f"{name} {expected[row, dim]:.6g}) exceeds the export tolerance {allowed[dim]:.3g}; "
            "not timing it"
        )
    return check


@dataclass
class StubBench:
    """The stub's own bench on one target: latency pooled over rounds, peak RSS and sizes as it reports them."""

    latency: LatencyStats
    runner: str
    runtime: str  # tvm-relax-vm, or the runtime-free kernel plan (as the stub reports; any target)
    peak_rss_kb: int  # the stub process (under qemu-user: the emulator process, guest included)
    runtime_library_bytes: int  # libtvm_runtime + libtvm_ffi as loaded on the device (0 without a runtime)
    check: StubCheck | None = None  # the stub's actions vs onnxruntime, checked before timing


def measure_stub(
    bundles: dict[str, Path],
    target: str,
    obs: np.ndarray,
    rounds: int,
    warmup: int,
    tick: Callable[[], None] = lambda: None,
    public_key: Path | None = None,
    check_n: int = 1000,
) -> dict[str, StubBench]:
    """model -> the stub's ``bench`` mode for ``target`` (native, qemu-user or ssh), rounds interleaved over models.

    With ``public_key`` the stub runs a bundle only if it is signed with its private half.

    The stub reports each round's min/p50/p99/max; pooled, the median is the median of round medians,
    p99 the median of round p99s, max the largest max. Before timing, each model's stub actions are
    checked against onnxruntime on its bundle (:func:`check_stub`, ``check_n`` inputs); a mismatch raises.
    """
    checks = {m: check_stub(bundle, target, n=check_n, public_key=public_key) for m, bundle in bundles.items()}
    raw: dict[str, list[dict]] = {m: [] for m in bundles}
    for _ in range(rounds):
        for m, bundle in bundles.items():
            raw[m].append(
                run_stub_bench(bundle, target, n=len(obs), warmup=warmup, observations=obs, public_key=public_key)
            )
        tick()
    out = {}
    for m, runs in raw.items():
        p50 = [r["latency_us"]["p50"] for r in runs]
        median = float(np.median(p50))
        lat = LatencyStats(
            sum(int(r["n"]) for r in runs),
            len(runs),
            median,
            float(np.median([r["latency_us"]["p99"] for r in runs])),
            float(max(r["latency_us"]["max"] for r in runs)),
            relative_spread(p50, median),
        )
        out[m] = StubBench(
            lat,
            runs[0]["runner"],
            runs[0]["runtime"],
            max(int(r["peak_rss_kb"]) for r in runs),
            int(runs[0]["library_bytes"]),
            checks[m],
        )
    return out
